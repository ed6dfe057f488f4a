//! Numerical building blocks shared by the customer models: log-gamma, the Gauss hypergeometric function, a deterministic Nelder-Mead minimiser and ROC AUC.

use crate::core::base::sort;

/// Largest number of series terms summed by `hyp2f1` so that evaluation time is always bounded.
const HYP_MAX_TERMS: u32 = 10_000;
/// Relative tolerance at which a hypergeometric series is considered summed.
const HYP_REL_TOL: f64 = 1e-16;
/// Half-width used when `c - a - b` is (nearly) an integer; the answer is interpolated from nearby non-integer cases because the closed-form transformation is singular there.
const HYP_INT_STEP: f64 = 1e-3;

/// Natural logarithm of the gamma function for `x > 0`.
///
/// It delegates to `libm::lgamma_r`, which is pure Rust and therefore identical on every target. Returns `+inf` for `x <= 0` (outside the supported domain) and NaN for NaN.
pub fn ln_gamma(x: f64) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x <= 0.0 {
        return f64::INFINITY;
    }
    libm::lgamma_r(x).0
}

/// True when `x` is a pole of the gamma function (zero or a negative integer), where 1/Gamma(x) is zero.
fn is_gamma_pole(x: f64) -> bool {
    x <= 0.0 && libm::floor(x) == x
}

/// Log-magnitude and sign of Gamma(x) for any finite `x` that is not a pole.
fn ln_gamma_signed(x: f64) -> (f64, f64) {
    let (value, sign) = libm::lgamma_r(x);
    (value, if sign < 0 { -1.0 } else { 1.0 })
}

/// Result of summing a hypergeometric series directly.
enum Series {
    /// The tail was below the tolerance.
    Converged(f64),
    /// The term cap was reached; the partial sum is the best available value.
    Partial(f64),
    /// The series is undefined (c is a pole) or overflowed.
    Failed,
}

/// Sums the Gauss series term by term, stopping on a tail estimate so that slowly converging cases near z = 1 are reported as not converged instead of silently truncated.
fn hyp_series(a: f64, b: f64, c: f64, z: f64) -> Series {
    let mut term = 1.0_f64;
    let mut sum = 1.0_f64;
    for k in 0..HYP_MAX_TERMS {
        let kf = k as f64;
        let denom = (c + kf) * (kf + 1.0);
        if denom == 0.0 {
            return Series::Failed;
        }
        let ratio = (a + kf) * (b + kf) / denom * z;
        term *= ratio;
        sum += term;
        if !sum.is_finite() || !term.is_finite() {
            return Series::Failed;
        }
        if term == 0.0 {
            // A zero term means a or b was a non-positive integer, so the series terminated exactly.
            return Series::Converged(sum);
        }
        // The next ratio bounds how fast the remaining terms shrink, which gives a geometric estimate of the tail.
        let next = ((a + kf + 1.0) * (b + kf + 1.0) / ((c + kf + 1.0) * (kf + 2.0)) * z).abs();
        let rho = if next > z { next } else { z };
        if rho < 1.0 {
            let tail = term.abs() * rho / (1.0 - rho);
            if tail <= HYP_REL_TOL * sum.abs() {
                return Series::Converged(sum);
            }
        }
    }
    Series::Partial(sum)
}

/// Returns the log-magnitude of 1/(Gamma(u) Gamma(v)) combined with Gamma(c) Gamma(m), or None when a reciprocal gamma is zero so that the whole term vanishes.
fn gamma_ratio(c: f64, m: f64, u: f64, v: f64) -> Option<(f64, f64)> {
    if is_gamma_pole(u) || is_gamma_pole(v) {
        return None;
    }
    let (lc, sc) = ln_gamma_signed(c);
    let (lm, sm) = ln_gamma_signed(m);
    let (lu, su) = ln_gamma_signed(u);
    let (lv, sv) = ln_gamma_signed(v);
    Some((lc + lm - lu - lv, sc * sm * su * sv))
}

/// The linear transformation z -> 1 - z (Abramowitz & Stegun 15.3.6), valid when c - a - b is not an integer; both resulting series converge quickly because 1 - z is small.
fn hyp_one_minus_z(a: f64, b: f64, c: f64, z: f64) -> f64 {
    let m = c - a - b;
    let w = 1.0 - z;
    if is_gamma_pole(c) {
        return f64::NAN;
    }
    let mut total = 0.0;
    if let Some((log_coef, sign)) = gamma_ratio(c, m, c - a, c - b) {
        let series = match hyp_series(a, b, 1.0 - m, w) {
            Series::Converged(s) | Series::Partial(s) => s,
            Series::Failed => return f64::NAN,
        };
        total += sign * libm::exp(log_coef) * series;
    }
    if let Some((log_coef, sign)) = gamma_ratio(c, -m, a, b) {
        let series = match hyp_series(c - a, c - b, 1.0 + m, w) {
            Series::Converged(s) | Series::Partial(s) => s,
            Series::Failed => return f64::NAN,
        };
        // The power (1 - z)^m is folded into the exponent so that a large coefficient and a tiny power do not overflow separately.
        total += sign * libm::exp(log_coef + m * libm::log(w)) * series;
    }
    total
}

/// Gauss hypergeometric function 2F1(a, b; c; z) for 0 <= z < 1.
///
/// The defining series is summed with at most 10,000 terms and a relative tolerance of 1e-16. When it cannot converge in that budget (z close to 1) the 1 - z transformation is used instead; if c - a - b lies within 1e-3 / max(1, |ln(1 - z)|) of an integer, where that transformation is singular, the value is obtained by cubic interpolation in c from four nearby non-singular points, which keeps about 11-12 significant digits. Returns NaN outside the domain or when c is a pole.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && z.is_finite() && (0.0..1.0).contains(&z)) {
        return f64::NAN;
    }
    if z == 0.0 || a == 0.0 || b == 0.0 {
        return 1.0;
    }
    let partial = match hyp_series(a, b, c, z) {
        Series::Converged(s) => return s,
        Series::Partial(s) => s,
        Series::Failed => f64::NAN,
    };
    if z < 0.5 {
        // For small z the direct series is the best available answer even when it did not reach the tolerance.
        return partial;
    }
    let m = c - a - b;
    let nearest = libm::round(m);
    // The function varies like (1 - z)^m in m, so the interpolation step shrinks with |ln(1 - z)| to keep the interpolation error small.
    let log_w = libm::log(1.0 - z).abs();
    let step = if log_w > 1.0 { HYP_INT_STEP / log_w } else { HYP_INT_STEP };
    if (m - nearest).abs() >= step {
        return hyp_one_minus_z(a, b, c, z);
    }
    // Evaluate at c - a - b = nearest + d * step for d in {-2, -1, 1, 2} and interpolate to the requested point.
    let s = (m - nearest) / step;
    around_singularity(s, |node| hyp_one_minus_z(a, b, c + (nearest - m) + node * step, z))
}

/// The value at `s` (in steps from a point where a formula is 0/0) of the cubic through `f` at -2, -1, 1 and 2
/// steps: the smooth limit near a removable singularity, from the formula where it is well conditioned.
pub fn around_singularity(s: f64, f: impl Fn(f64) -> f64) -> f64 {
    let nodes = [-2.0, -1.0, 1.0, 2.0];
    let weights = [
        (s + 1.0) * (s - 1.0) * (s - 2.0) / -12.0,
        (s + 2.0) * (s - 1.0) * (s - 2.0) / 6.0,
        (s + 2.0) * (s + 1.0) * (s - 2.0) / -6.0,
        (s + 2.0) * (s + 1.0) * (s - 1.0) / 12.0,
    ];
    let mut total = 0.0;
    for (node, weight) in nodes.iter().zip(weights.iter()) {
        total += weight * f(*node);
    }
    total
}

/// Result of a Nelder-Mead minimisation.
#[derive(Clone, Debug, PartialEq)]
pub struct Minimum {
    /// The best point found.
    pub x: Vec<f64>,
    /// The objective at `x`.
    pub value: f64,
    /// Number of completed simplex iterations.
    pub iterations: u32,
    /// Whether the convergence test was met before `max_iter`.
    pub converged: bool,
}

/// Maps NaN to +inf and -inf to the most negative finite number so that every comparison in the simplex is well defined.
fn clean(value: f64) -> f64 {
    if value.is_nan() {
        f64::INFINITY
    } else if value == f64::NEG_INFINITY {
        f64::MIN
    } else {
        value
    }
}

/// Deterministic Nelder-Mead simplex minimiser.
///
/// The initial simplex is `start` plus `step` along each axis (a step that is zero or not finite is replaced by 1). The objective may return +inf (or NaN) for invalid points; those are simply never accepted. Converged means the spread of objective values is at most `tol * (1 + |best|)` and every vertex is within `sqrt(tol) * (1 + |x|)` of the best vertex in each coordinate. At most `max_iter` iterations are run, each costing at most `start.len() + 2` evaluations.
pub fn nelder_mead(mut f: impl FnMut(&[f64]) -> f64, start: &[f64], step: f64, max_iter: u32, tol: f64) -> Minimum {
    let n = start.len();
    if n == 0 {
        let value = clean(f(start));
        return Minimum { x: Vec::new(), value, iterations: 0, converged: true };
    }
    let step = if step.is_finite() && step != 0.0 { step } else { 1.0 };
    let x_tol = if tol > 0.0 { libm::sqrt(tol) } else { 0.0 };
    let mut points: Vec<Vec<f64>> = Vec::with_capacity(n + 1);
    let mut values: Vec<f64> = Vec::with_capacity(n + 1);
    points.push(start.to_vec());
    values.push(clean(f(start)));
    for i in 0..n {
        let mut p = start.to_vec();
        p[i] += step;
        values.push(clean(f(&p)));
        points.push(p);
    }
    let mut order: Vec<usize> = (0..=n).collect();
    let mut centroid = vec![0.0; n];
    let mut trial = vec![0.0; n];
    let mut trial2 = vec![0.0; n];
    let mut iterations = 0u32;
    let mut converged = false;
    while iterations < max_iter {
        // A stable sort on the values (ties broken by vertex index) keeps the run reproducible.
        sort::sort_by(&mut order, |&i, &j| values[i].total_cmp(&values[j]).then(i.cmp(&j)));
        let best = order[0];
        let worst = order[n];
        let second_worst = order[n - 1];
        let spread = values[worst] - values[best];
        if values[best].is_finite() && spread.is_finite() && spread <= tol * (1.0 + values[best].abs()) {
            let mut small = true;
            for p in points.iter() {
                for (v, b) in p.iter().zip(points[best].iter()) {
                    if (v - b).abs() > x_tol * (1.0 + b.abs()) {
                        small = false;
                    }
                }
            }
            if small {
                converged = true;
                break;
            }
        }
        iterations += 1;
        for c in centroid.iter_mut() {
            *c = 0.0;
        }
        for &i in order.iter().take(n) {
            for (c, v) in centroid.iter_mut().zip(points[i].iter()) {
                *c += v;
            }
        }
        for c in centroid.iter_mut() {
            *c /= n as f64;
        }
        // Reflection of the worst vertex through the centroid of the others.
        for j in 0..n {
            trial[j] = centroid[j] + (centroid[j] - points[worst][j]);
        }
        let f_reflect = clean(f(&trial));
        if f_reflect < values[best] {
            for j in 0..n {
                trial2[j] = centroid[j] + 2.0 * (centroid[j] - points[worst][j]);
            }
            let f_expand = clean(f(&trial2));
            if f_expand < f_reflect {
                points[worst].copy_from_slice(&trial2);
                values[worst] = f_expand;
            } else {
                points[worst].copy_from_slice(&trial);
                values[worst] = f_reflect;
            }
            continue;
        }
        if f_reflect < values[second_worst] {
            points[worst].copy_from_slice(&trial);
            values[worst] = f_reflect;
            continue;
        }
        // Contraction: outside when the reflection improved on the worst point, inside otherwise.
        let outside = f_reflect < values[worst];
        for j in 0..n {
            trial2[j] = if outside {
                centroid[j] + 0.5 * (trial[j] - centroid[j])
            } else {
                centroid[j] + 0.5 * (points[worst][j] - centroid[j])
            };
        }
        let f_contract = clean(f(&trial2));
        let accept = if outside { f_contract <= f_reflect } else { f_contract < values[worst] };
        if accept {
            points[worst].copy_from_slice(&trial2);
            values[worst] = f_contract;
            continue;
        }
        // Shrink every vertex halfway towards the best one.
        let best_point = points[best].clone();
        for i in 0..=n {
            if i == best {
                continue;
            }
            for j in 0..n {
                points[i][j] = best_point[j] + 0.5 * (points[i][j] - best_point[j]);
            }
            values[i] = clean(f(&points[i]));
        }
    }
    let mut best = 0;
    for i in 1..=n {
        if values[i].total_cmp(&values[best]).is_lt() {
            best = i;
        }
    }
    Minimum { x: points[best].clone(), value: values[best], iterations, converged }
}

/// Area under the ROC curve for `(score, is_positive)` pairs, counting tied scores as half.
///
/// Pairs with a NaN score are ignored because they cannot be ranked. Returns None when either class is empty after that. A copy is sorted, so the input order does not matter.
pub fn auc(scored: &[(f64, bool)]) -> Option<f64> {
    let mut sorted: Vec<(f64, bool)> = scored.iter().copied().filter(|(s, _)| !s.is_nan()).collect();
    sort::sort_by(&mut sorted, |x, y| x.0.total_cmp(&y.0));
    let positives = sorted.iter().filter(|(_, p)| *p).count() as f64;
    let negatives = sorted.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    // Mann-Whitney statistic: each positive gets the average rank of its tie group.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j].0 == sorted[i].0 {
            j += 1;
        }
        let average_rank = (i + 1 + j) as f64 / 2.0;
        let group_positives = sorted[i..j].iter().filter(|(_, p)| *p).count() as f64;
        rank_sum += average_rank * group_positives;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * (1.0 + b.abs())
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!(close(ln_gamma(1.0), 0.0, 1e-15));
        assert!(close(ln_gamma(0.5), 0.572_364_942_924_700_1, 1e-14));
        assert!(close(ln_gamma(10.0), 12.801_827_480_081_469, 1e-14));
        assert!(close(ln_gamma(100.0), 359.134_205_369_575_4, 1e-14));
        assert_eq!(ln_gamma(0.0), f64::INFINITY);
        assert!(ln_gamma(f64::NAN).is_nan());
    }

    #[test]
    fn hyp2f1_log_identity_including_near_one() {
        for &z in &[0.1, 0.5, 0.9, 0.99, 0.999, 0.999_9, 0.999_999, 0.999_999_999] {
            let expected = -libm::log(1.0 - z) / z;
            let got = hyp2f1(1.0, 1.0, 2.0, z);
            assert!(close(got, expected, 1e-9), "z={z} got={got} expected={expected}");
        }
    }

    #[test]
    fn hyp2f1_other_identities() {
        for &z in &[0.2, 0.7, 0.995, 0.999_99] {
            // 2F1(a, b; b; z) = (1 - z)^-a.
            let got = hyp2f1(1.7, 2.3, 2.3, z);
            let expected = libm::pow(1.0 - z, -1.7);
            assert!(close(got, expected, 1e-9), "z={z} got={got} expected={expected}");
            // 2F1(1/2, 1/2; 3/2; s^2) = asin(s) / s.
            let s = libm::sqrt(z);
            let got = hyp2f1(0.5, 0.5, 1.5, z);
            let expected = libm::asin(s) / s;
            assert!(close(got, expected, 1e-9), "z={z} got={got} expected={expected}");
        }
        // Gauss's theorem at z -> 1 when c - a - b > 0.
        let gauss = libm::exp(ln_gamma(2.5) + ln_gamma(1.3) - ln_gamma(2.0) - ln_gamma(1.8));
        assert!(close(hyp2f1(0.5, 0.7, 2.5, 1.0 - 1e-12), gauss, 1e-8));
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
    }

    #[test]
    fn nelder_mead_rosenbrock() {
        let m = nelder_mead(
            |p| {
                let (x, y) = (p[0], p[1]);
                (1.0 - x) * (1.0 - x) + 100.0 * (y - x * x) * (y - x * x)
            },
            &[-1.2, 1.0],
            0.5,
            5_000,
            1e-14,
        );
        assert!(m.converged);
        assert!((m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4, "{m:?}");
    }

    #[test]
    fn nelder_mead_handles_invalid_regions_and_nan() {
        let m = nelder_mead(
            |p| if p[0] < 0.0 { f64::INFINITY } else { (p[0] - 2.0) * (p[0] - 2.0) },
            &[0.5],
            1.0,
            1_000,
            1e-12,
        );
        assert!((m.x[0] - 2.0).abs() < 1e-4);
        let m = nelder_mead(|_| f64::NAN, &[0.0, 0.0], 1.0, 50, 1e-12);
        assert_eq!(m.iterations, 50);
        assert!(!m.converged);
    }

    #[test]
    fn auc_with_ties_and_empty_class() {
        assert_eq!(auc(&[(0.1, false), (0.9, true)]), Some(1.0));
        assert_eq!(auc(&[(0.5, false), (0.5, true)]), Some(0.5));
        assert_eq!(auc(&[(0.1, true), (0.2, false), (0.3, true), (0.3, false)]), Some(0.375));
        assert_eq!(auc(&[(0.1, true)]), None);
        assert_eq!(auc(&[]), None);
    }
}
