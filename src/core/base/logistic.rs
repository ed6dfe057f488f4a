//! L2-regularised logistic regression on standardised features, used to score lookalike audiences and explain each score by per-feature contributions.

use crate::core::base::clv::{Fit, FitError};

/// Smallest L2 strength actually used; it keeps the Newton system well-posed and the weights finite even for perfectly separable data.
const MIN_L2: f64 = 1e-6;
/// Linear scores are clamped to this magnitude so that probabilities stay strictly inside (0, 1).
const MAX_LOGIT: f64 = 30.0;
/// Newton stops when no parameter moves by more than this.
const STEP_TOL: f64 = 1e-9;
/// Upper bound on step halvings in the line search of one Newton iteration.
const MAX_HALVINGS: u32 = 40;

/// A fitted model: features are standardised as (value - mean) / scale, and features with scale 0 are ignored.
#[derive(Clone, Debug, PartialEq)]
pub struct Logistic {
    pub means: Vec<f64>,
    pub scales: Vec<f64>,
    pub weights: Vec<f64>,
    pub bias: f64,
}

/// Logistic function with the argument clamped so the result is never exactly 0 or 1.
fn sigmoid(z: f64) -> f64 {
    let z = z.clamp(-MAX_LOGIT, MAX_LOGIT);
    if z >= 0.0 {
        1.0 / (1.0 + libm::exp(-z))
    } else {
        let e = libm::exp(z);
        e / (1.0 + e)
    }
}

/// log(1 + exp(z)) without overflow, the building block of the log-loss.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + libm::log1p(libm::exp(-z))
    } else {
        libm::log1p(libm::exp(z))
    }
}

impl Logistic {
    /// Standardised value of feature j; non-finite input, a missing feature or a zero scale count as the mean (0) so one bad field cannot poison the score.
    fn standardized(&self, j: usize, value: f64) -> f64 {
        let (Some(&mean), Some(&scale)) = (self.means.get(j), self.scales.get(j)) else {
            return 0.0;
        };
        if scale > 0.0 && scale.is_finite() && value.is_finite() {
            let z = (value - mean) / scale;
            if z.is_finite() {
                z
            } else {
                0.0
            }
        } else {
            0.0
        }
    }

    /// weight * standardised value for each model feature, in model order; extra input features are ignored and missing ones contribute 0.
    pub fn contributions(&self, features: &[f64]) -> Vec<f64> {
        self.weights
            .iter()
            .enumerate()
            .map(|(j, w)| {
                let value = features.get(j).copied().unwrap_or(f64::NAN);
                let c = w * self.standardized(j, value);
                if c.is_finite() {
                    c
                } else {
                    0.0
                }
            })
            .collect()
    }

    /// Probability of the positive class, strictly inside (0, 1).
    pub fn score(&self, features: &[f64]) -> f64 {
        let mut z = if self.bias.is_finite() { self.bias } else { 0.0 };
        for c in self.contributions(features) {
            z += c;
        }
        sigmoid(z)
    }
}

/// Solves the symmetric positive-definite system `matrix * out = rhs` by Cholesky factorisation; returns None when the matrix is not numerically positive definite.
fn cholesky_solve(matrix: &[f64], rhs: &[f64], size: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; size * size];
    for i in 0..size {
        for j in 0..=i {
            let mut sum = matrix[i * size + j];
            for k in 0..j {
                sum -= l[i * size + k] * l[j * size + k];
            }
            if i == j {
                if sum.is_nan() || sum <= 0.0 || !sum.is_finite() {
                    return None;
                }
                l[i * size + i] = libm::sqrt(sum);
            } else {
                l[i * size + j] = sum / l[j * size + j];
            }
        }
    }
    let mut y = vec![0.0; size];
    for i in 0..size {
        let mut sum = rhs[i];
        for k in 0..i {
            sum -= l[i * size + k] * y[k];
        }
        y[i] = sum / l[i * size + i];
    }
    let mut out = vec![0.0; size];
    for i in (0..size).rev() {
        let mut sum = y[i];
        for k in (i + 1)..size {
            sum -= l[k * size + i] * out[k];
        }
        out[i] = sum / l[i * size + i];
    }
    if out.iter().all(|v| v.is_finite()) {
        Some(out)
    } else {
        None
    }
}

/// Penalised negative log-likelihood and the unpenalised log-likelihood for parameters laid out as weights followed by the bias.
fn objective(data: &[f64], labels: &[bool], dims: usize, params: &[f64], l2: f64) -> (f64, f64) {
    let mut ll = 0.0;
    for (i, &label) in labels.iter().enumerate() {
        let row = &data[i * dims..(i + 1) * dims];
        let mut z = params[dims];
        for j in 0..dims {
            z += params[j] * row[j];
        }
        // log P(y) = -softplus(-z) for positives and -softplus(z) for negatives.
        ll -= if label { softplus(-z) } else { softplus(z) };
    }
    let mut penalty = 0.0;
    for w in &params[..dims] {
        penalty += w * w;
    }
    (-ll + 0.5 * l2 * penalty, ll)
}

/// Fits a logistic regression with penalty (l2 / 2) * |w|^2 on the summed log-loss (the bias is not penalised).
///
/// Features are standardised first (population standard deviation; constant features get scale 0 and weight 0). The optimiser is Newton's method with a Cholesky solve, Levenberg damping when the Hessian is singular and step halving, bounded by `max_iter` iterations. `l2` below 1e-6 (or not finite) is raised to 1e-6. Errors: `Empty` for no rows, `Degenerate` for ragged or non-finite features or a single class, `NotConverged` when the budget runs out.
pub fn fit_logistic(rows: &[(Vec<f64>, bool)], l2: f64, max_iter: u32) -> Result<Fit<Logistic>, FitError> {
    let Some(first) = rows.first() else {
        return Err(FitError::Empty);
    };
    let dims = first.0.len();
    if rows.iter().any(|(f, _)| f.len() != dims) {
        return Err(FitError::Degenerate("rows have different numbers of features"));
    }
    if rows.iter().any(|(f, _)| f.iter().any(|v| !v.is_finite())) {
        return Err(FitError::Degenerate("a feature value is not finite"));
    }
    let positives = rows.iter().filter(|(_, y)| *y).count();
    if positives == 0 || positives == rows.len() {
        return Err(FitError::Degenerate("only one class is present"));
    }
    let l2 = if l2.is_finite() && l2 > MIN_L2 { l2 } else { MIN_L2 };
    let n = rows.len() as f64;
    // Two-pass mean and standard deviation, which stays accurate for large offsets.
    let mut means = vec![0.0; dims];
    let mut scales = vec![0.0; dims];
    for (features, _) in rows {
        for j in 0..dims {
            means[j] += features[j] / n;
        }
    }
    for (features, _) in rows {
        for j in 0..dims {
            let d = features[j] - means[j];
            scales[j] += d * d / n;
        }
    }
    for j in 0..dims {
        let sd = libm::sqrt(scales[j]);
        // A spread at rounding level relative to the mean is treated as constant so that noise is not amplified into a huge weight.
        scales[j] = if sd.is_finite() && sd > 1e-12 * (1.0 + means[j].abs()) { sd } else { 0.0 };
        if !means[j].is_finite() {
            means[j] = 0.0;
            scales[j] = 0.0;
        }
    }
    let mut data = vec![0.0; rows.len() * dims];
    let labels: Vec<bool> = rows.iter().map(|(_, y)| *y).collect();
    for (i, (features, _)) in rows.iter().enumerate() {
        for j in 0..dims {
            data[i * dims + j] = if scales[j] > 0.0 { (features[j] - means[j]) / scales[j] } else { 0.0 };
        }
    }
    let size = dims + 1;
    let mut params = vec![0.0; size];
    // Starting the bias at the base-rate log-odds makes the first Newton step small.
    let base = positives as f64 / n;
    params[dims] = libm::log(base / (1.0 - base));
    let (mut current, _) = objective(&data, &labels, dims, &params, l2);
    let mut iterations = 0u32;
    let mut converged = false;
    let mut gradient = vec![0.0; size];
    let mut hessian = vec![0.0; size * size];
    while iterations < max_iter {
        iterations += 1;
        gradient.iter_mut().for_each(|g| *g = 0.0);
        hessian.iter_mut().for_each(|h| *h = 0.0);
        for (i, &label) in labels.iter().enumerate() {
            let row = &data[i * dims..(i + 1) * dims];
            let mut z = params[dims];
            for j in 0..dims {
                z += params[j] * row[j];
            }
            let p = sigmoid(z);
            let residual = p - if label { 1.0 } else { 0.0 };
            let curvature = p * (1.0 - p);
            for j in 0..size {
                let xj = if j < dims { row[j] } else { 1.0 };
                gradient[j] += residual * xj;
                for k in 0..=j {
                    let xk = if k < dims { row[k] } else { 1.0 };
                    hessian[j * size + k] += curvature * xj * xk;
                }
            }
        }
        for j in 0..size {
            for k in 0..j {
                hessian[k * size + j] = hessian[j * size + k];
            }
            if j < dims {
                gradient[j] += l2 * params[j];
                hessian[j * size + j] += l2;
            }
        }
        // Damping is increased a bounded number of times until the system is solvable; it only changes the step, not the optimum.
        let mut damping = 0.0;
        let mut step = None;
        for _ in 0..20 {
            let mut damped = hessian.clone();
            for j in 0..size {
                damped[j * size + j] += damping;
            }
            step = cholesky_solve(&damped, &gradient, size);
            if step.is_some() {
                break;
            }
            damping = if damping == 0.0 { 1e-8 } else { damping * 10.0 };
        }
        let Some(step) = step else {
            return Err(FitError::Degenerate("the Newton system could not be solved"));
        };
        let mut scale = 1.0;
        let mut accepted = false;
        let mut candidate = params.clone();
        for _ in 0..MAX_HALVINGS {
            for j in 0..size {
                candidate[j] = params[j] - scale * step[j];
            }
            let (value, _) = objective(&data, &labels, dims, &candidate, l2);
            if value <= current {
                current = value;
                accepted = true;
                break;
            }
            scale *= 0.5;
        }
        let largest = step.iter().fold(0.0_f64, |m, s| m.max((scale * s).abs()));
        if accepted {
            params.copy_from_slice(&candidate);
        }
        if !accepted || largest < STEP_TOL {
            // No decrease even for a tiny step means we are at the optimum to working precision.
            converged = true;
            break;
        }
    }
    if !converged {
        return Err(FitError::NotConverged { iterations });
    }
    let (_, log_likelihood) = objective(&data, &labels, dims, &params, l2);
    let weights: Vec<f64> = (0..dims).map(|j| if scales[j] > 0.0 { params[j] } else { 0.0 }).collect();
    let model = Logistic { means, scales, weights, bias: params[dims] };
    if !log_likelihood.is_finite() || !model.bias.is_finite() || model.weights.iter().any(|w| !w.is_finite()) {
        return Err(FitError::Degenerate("the fitted weights are not finite"));
    }
    Ok(Fit { params: model, log_likelihood, iterations, customers: rows.len() as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_is_strictly_inside_unit_interval() {
        let m = Logistic { means: vec![0.0], scales: vec![1.0], weights: vec![1e6], bias: 0.0 };
        let high = m.score(&[1e6]);
        let low = m.score(&[-1e6]);
        assert!(high < 1.0 && low > 0.0);
        assert_eq!(m.contributions(&[]), vec![0.0]);
    }

    #[test]
    fn cholesky_solves_small_system() {
        let x = cholesky_solve(&[4.0, 2.0, 2.0, 3.0], &[2.0, 1.0], 2).unwrap_or_default();
        assert!((x[0] - 0.5).abs() < 1e-15 && x[1].abs() < 1e-15);
        assert!(cholesky_solve(&[0.0, 0.0, 0.0, 0.0], &[1.0, 1.0], 2).is_none());
    }

    #[test]
    fn fit_on_tiny_overlapping_data() {
        let rows = vec![(vec![0.0], false), (vec![1.0], false), (vec![1.0], true), (vec![2.0], true)];
        let fit = fit_logistic(&rows, 0.0, 100).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(fit.params.weights[0] > 0.0);
        assert!(fit.log_likelihood.is_finite());
    }
}
