//! Customer-lifetime-value models: BG/NBD purchase counts, Gamma-Gamma spend and beta-binomial rates, each with a deterministic maximum-likelihood fit.

use crate::core::base::sort;
use crate::core::base::stats::{around_singularity, hyp2f1, ln_gamma, nelder_mead};

/// One customer's purchase summary in days: x = repeat purchases (purchases after the first), t_x = days from first to last purchase, t = days from first purchase to now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Customer {
    pub x: f64,
    pub t_x: f64,
    pub t: f64,
}

/// BG/NBD parameters: purchase rates are Gamma(r, alpha) across customers (alpha in the same time unit as the data) and dropout probabilities are Beta(a, b).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BgNbd {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Why a fit could not produce parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum FitError {
    /// No rows were given (or none were usable).
    Empty,
    /// Too few rows to estimate the parameters.
    TooFew { have: u64, need: u64 },
    /// BG/NBD needs at least one customer with a repeat purchase.
    NoRepeatBuyers,
    /// The input cannot be fitted; the text says why.
    Degenerate(&'static str),
    /// The optimiser did not meet its tolerance within the iteration budget.
    NotConverged { iterations: u32 },
}

/// A fitted model with its total log-likelihood, the optimiser iterations used and the number of input rows used.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit<T> {
    pub params: T,
    pub log_likelihood: f64,
    pub iterations: u32,
    pub customers: u64,
}

/// Fewest rows accepted by the count models; below this the estimates are noise.
const MIN_ROWS: u64 = 10;
/// Relative tolerance handed to Nelder-Mead for all likelihood fits.
const FIT_TOL: f64 = 1e-10;
/// Log-parameters are kept inside [-LOG_BOUND, LOG_BOUND] so that degenerate data drive the fit to a finite boundary instead of infinity.
const LOG_BOUND: f64 = 20.0;
/// Concentration alpha + beta used as the upper bound of the beta-binomial prior; data with no excess variance across people end up here instead of at infinity.
pub const MAX_CONCENTRATION: f64 = 1e6;
/// Half-width around a = 1 where the BG/NBD expectation is interpolated, because its closed form is 0/0 at a = 1.
const A_NEAR_ONE: f64 = 1e-3;

/// Replaces a non-finite value with a fallback so that no NaN or infinity leaves the public scoring functions.
fn finite_or(value: f64, fallback: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        fallback
    }
}

/// Numerically stable log(exp(u) + exp(v)).
fn log_add_exp(u: f64, v: f64) -> f64 {
    let (hi, lo) = if u >= v { (u, v) } else { (v, u) };
    if hi == f64::NEG_INFINITY {
        return hi;
    }
    hi + libm::log1p(libm::exp(lo - hi))
}

/// ln Gamma(x + k) - ln Gamma(x), summed directly for small whole k because the difference of two large log-gammas loses digits when x is large.
fn ln_rising(x: f64, k: f64) -> f64 {
    if k == 0.0 {
        return 0.0;
    }
    if k <= 64.0 && libm::floor(k) == k {
        let mut total = 0.0;
        let mut j = 0.0;
        while j < k {
            total += libm::log(x + j);
            j += 1.0;
        }
        return total;
    }
    ln_gamma(x + k) - ln_gamma(x)
}

impl Customer {
    /// A row is usable when every field is finite, counts and times are non-negative, x is a whole number and the last purchase is not after now.
    fn is_valid(&self) -> bool {
        self.x.is_finite()
            && self.t_x.is_finite()
            && self.t.is_finite()
            && self.x >= 0.0
            && libm::floor(self.x) == self.x
            && self.t_x >= 0.0
            && self.t_x <= self.t
    }
}

impl BgNbd {
    fn is_valid(&self) -> bool {
        [self.r, self.alpha, self.a, self.b].iter().all(|v| v.is_finite() && *v > 0.0)
    }

    /// Individual log-likelihood of FHL (2005) equation 6, with the two survival terms combined by log-sum-exp. Returns -inf for invalid parameters or rows.
    pub fn log_likelihood(&self, c: &Customer) -> f64 {
        if !self.is_valid() || !c.is_valid() {
            return f64::NEG_INFINITY;
        }
        let x = c.x;
        let a1 = ln_rising(self.r, x) + self.r * libm::log(self.alpha);
        let a2 = ln_rising(self.b, x) - ln_rising(self.a + self.b, x);
        let a3 = -(self.r + x) * libm::log(self.alpha + c.t);
        let total = if x > 0.0 {
            let a4 = libm::log(self.a) - libm::log(self.b + x - 1.0) - (self.r + x) * libm::log(self.alpha + c.t_x);
            log_add_exp(a3, a4)
        } else {
            a3
        };
        let ll = a1 + a2 + total;
        if ll.is_nan() {
            f64::NEG_INFINITY
        } else {
            ll
        }
    }

    /// Log of the odds ratio a/(b+x-1) * ((alpha+t)/(alpha+t_x))^(r+x) that appears in P(alive) and the conditional expectation.
    fn log_dead_odds(&self, c: &Customer) -> f64 {
        libm::log(self.a) - libm::log(self.b + c.x - 1.0)
            + (self.r + c.x) * (libm::log(self.alpha + c.t) - libm::log(self.alpha + c.t_x))
    }

    /// Probability that the customer is still active given (x, t_x, t); 1.0 when x == 0 because the model lets customers drop out only after a repeat purchase. Invalid rows or parameters give 0.0.
    pub fn p_alive(&self, c: &Customer) -> f64 {
        if !self.is_valid() || !c.is_valid() {
            return 0.0;
        }
        if c.x == 0.0 {
            return 1.0;
        }
        // 1 / (1 + exp(odds)) written so that a huge exponent yields 0 instead of overflow arithmetic.
        let log_odds = self.log_dead_odds(c);
        finite_or(1.0 / (1.0 + libm::exp(log_odds)), 0.0)
    }

    /// Expected number of purchases in the next `horizon` days, FHL (2005) equation 10. Invalid input gives 0.0.
    pub fn expected_purchases(&self, c: &Customer, horizon: f64) -> f64 {
        if !self.is_valid() || !c.is_valid() || !horizon.is_finite() || horizon <= 0.0 {
            return 0.0;
        }
        let value = if (self.a - 1.0).abs() < A_NEAR_ONE {
            // The formula is 0/0 at a = 1; cubic interpolation from a = 1 +- h, 1 +- 2h recovers the smooth limit.
            let s = (self.a - 1.0) / A_NEAR_ONE;
            around_singularity(s, |node| {
                BgNbd { a: 1.0 + node * A_NEAR_ONE, ..*self }.expected_purchases_raw(c, horizon)
            })
        } else {
            self.expected_purchases_raw(c, horizon)
        };
        let value = finite_or(value, 0.0);
        if value < 0.0 {
            0.0
        } else {
            value
        }
    }

    /// Equation 10 evaluated directly. The factor ((alpha+t)/(alpha+t+h))^(r+x) 2F1(r+x, b+x; a+b+x-1; z) is rewritten with Euler's transformation as (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z), which removes the growth with x and avoids overflow for heavy buyers.
    fn expected_purchases_raw(&self, c: &Customer, horizon: f64) -> f64 {
        let x = c.x;
        let cc = self.a + self.b + x - 1.0;
        let z = horizon / (self.alpha + c.t + horizon);
        let log_one_minus_z = -libm::log1p(horizon / (self.alpha + c.t));
        let series = hyp2f1(self.a + self.b - 1.0 - self.r, self.a - 1.0, cc, z);
        let bracket = 1.0 - libm::exp((self.a - 1.0) * log_one_minus_z) * series;
        let numerator = cc / (self.a - 1.0) * bracket;
        if x > 0.0 {
            numerator / (1.0 + libm::exp(self.log_dead_odds(c)))
        } else {
            numerator
        }
    }

    /// Probability of at least one purchase in the next `horizon` days: P(alive) * (1 - ((alpha+t)/(alpha+t+h))^(r+x)). Invalid input gives 0.0.
    pub fn p_any_purchase(&self, c: &Customer, horizon: f64) -> f64 {
        if !self.is_valid() || !c.is_valid() || !horizon.is_finite() || horizon <= 0.0 {
            return 0.0;
        }
        // 1 - (1 + h/(alpha+t))^-(r+x) computed with log1p/expm1 so short horizons keep full precision.
        let exponent = -(self.r + c.x) * libm::log1p(horizon / (self.alpha + c.t));
        let p_buy_if_alive = -libm::expm1(exponent);
        let p = self.p_alive(c) * p_buy_if_alive;
        finite_or(p, 0.0).clamp(0.0, 1.0)
    }

    /// Expected number of repeat purchases within `t` days of a new customer's first purchase, FHL (2005) equation 7; it equals the conditional expectation for x = t_x = t = 0.
    pub fn expected_new(&self, t: f64) -> f64 {
        self.expected_purchases(&Customer { x: 0.0, t_x: 0.0, t: 0.0 }, t)
    }
}

/// Sorts rows and merges identical ones into (row, count) so that repeated profiles are evaluated once; the sort order also fixes the summation order.
fn group_rows<T: Copy>(rows: &mut [T], cmp: impl Fn(&T, &T) -> core::cmp::Ordering) -> Vec<(T, f64)> {
    sort::sort_by(rows, &cmp);
    let mut groups: Vec<(T, f64)> = Vec::new();
    for row in rows.iter() {
        match groups.last_mut() {
            Some((last, count)) if cmp(last, row).is_eq() => *count += 1.0,
            _ => groups.push((*row, 1.0)),
        }
    }
    groups
}

/// Runs Nelder-Mead twice (the second run restarts from the best point with a fresh simplex, which escapes premature collapse) on a box-bounded objective.
fn minimise(
    objective: &mut dyn FnMut(&[f64]) -> f64,
    start: &[f64],
    max_iter: u32,
) -> Result<(Vec<f64>, u32), FitError> {
    let mut bounded = |p: &[f64]| {
        if !p.iter().all(|v| v.abs() <= LOG_BOUND) {
            f64::INFINITY
        } else {
            objective(p)
        }
    };
    let first = nelder_mead(&mut bounded, start, 0.5, max_iter, FIT_TOL);
    let second = nelder_mead(&mut bounded, &first.x, 0.2, max_iter, FIT_TOL);
    let iterations = first.iterations.saturating_add(second.iterations);
    if !second.value.is_finite() {
        return Err(FitError::Degenerate("the likelihood is not finite at any tried parameters"));
    }
    if !second.converged {
        return Err(FitError::NotConverged { iterations });
    }
    Ok((second.x, iterations))
}

/// Maximum-likelihood BG/NBD fit.
///
/// Rows must be valid (finite, non-negative, whole x, t_x <= t), otherwise the fit returns `Degenerate`. Times are divided by their mean before fitting (the model is scale-equivariant: only alpha changes) so that the optimiser works on well-conditioned numbers, and identical rows are merged with weights. The search runs over log-parameters bounded to [-20, 20] with no penalty; each of the two Nelder-Mead runs may use `max_iter` iterations.
pub fn fit_bg_nbd(customers: &[Customer], max_iter: u32) -> Result<Fit<BgNbd>, FitError> {
    if customers.is_empty() {
        return Err(FitError::Empty);
    }
    let count = customers.len() as u64;
    if customers.iter().any(|c| !c.is_valid()) {
        return Err(FitError::Degenerate("a customer row is non-finite, negative, has fractional x, or has t_x > t"));
    }
    if count < MIN_ROWS {
        return Err(FitError::TooFew { have: count, need: MIN_ROWS });
    }
    if customers.iter().all(|c| c.x == 0.0) {
        return Err(FitError::NoRepeatBuyers);
    }
    let mut total_t = 0.0;
    let mut total_x = 0.0;
    for c in customers {
        total_t += c.t;
        total_x += c.x;
    }
    let scale = total_t / count as f64;
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() || !total_x.is_finite() {
        return Err(FitError::Degenerate("customer ages are all zero or too large to sum"));
    }
    let mut scaled: Vec<Customer> =
        customers.iter().map(|c| Customer { x: c.x, t_x: c.t_x / scale, t: c.t / scale }).collect();
    let groups =
        group_rows(&mut scaled, |p, q| p.x.total_cmp(&q.x).then(p.t_x.total_cmp(&q.t_x)).then(p.t.total_cmp(&q.t)));
    let n = count as f64;
    let mut objective = |theta: &[f64]| -> f64 {
        let model = BgNbd {
            r: libm::exp(theta[0]),
            alpha: libm::exp(theta[1]),
            a: libm::exp(theta[2]),
            b: libm::exp(theta[3]),
        };
        -bg_nbd_total(&model, &groups) / n
    };
    // Start from a unit-heterogeneity rate matching the mean observed purchase rate and a mean dropout probability of 1/4.
    let rate = total_x / count as f64;
    let start = [0.0, libm::log(1.0 / rate), 0.0, libm::log(3.0)];
    let (theta, iterations) = minimise(&mut objective, &start, max_iter)?;
    let params = BgNbd {
        r: libm::exp(theta[0]),
        alpha: libm::exp(theta[1]) * scale,
        a: libm::exp(theta[2]),
        b: libm::exp(theta[3]),
    };
    // The likelihood is reported on the original time scale, which differs from the scaled one by the Jacobian of the time change.
    let log_likelihood =
        bg_nbd_total(&BgNbd { alpha: params.alpha / scale, ..params }, &groups) - total_x * libm::log(scale);
    if !params.is_valid() || !log_likelihood.is_finite() {
        return Err(FitError::Degenerate("the fitted parameters are not finite"));
    }
    Ok(Fit { params, log_likelihood, iterations, customers: count })
}

/// Weighted sum of individual log-likelihoods; the x-dependent gamma terms are computed once per distinct x because the groups are sorted by x.
fn bg_nbd_total(model: &BgNbd, groups: &[(Customer, f64)]) -> f64 {
    if !model.is_valid() {
        return f64::NEG_INFINITY;
    }
    let log_alpha = libm::log(model.alpha);
    let log_a = libm::log(model.a);
    let mut total = 0.0;
    let mut current_x = f64::NAN;
    let mut constant = 0.0;
    let mut log_odds_base = 0.0;
    for (c, weight) in groups {
        if c.x != current_x {
            current_x = c.x;
            constant = ln_rising(model.r, c.x) + model.r * log_alpha + ln_rising(model.b, c.x)
                - ln_rising(model.a + model.b, c.x);
            log_odds_base = if c.x > 0.0 { log_a - libm::log(model.b + c.x - 1.0) } else { 0.0 };
        }
        let power = model.r + c.x;
        let a3 = -power * libm::log(model.alpha + c.t);
        let tail = if c.x > 0.0 { log_add_exp(a3, log_odds_base - power * libm::log(model.alpha + c.t_x)) } else { a3 };
        total += weight * (constant + tail);
    }
    if total.is_nan() {
        f64::NEG_INFINITY
    } else {
        total
    }
}

/// Gamma-Gamma spend model: transaction values are Gamma(p, nu) within a customer and nu is Gamma(q, v) across customers.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GammaGamma {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

impl GammaGamma {
    /// Expected value of a future transaction given x repeat purchases with mean value `mean_value`: (v + m x) p / (p x + q - 1). For x == 0 it is the population mean p v / (q - 1) when q > 1. Whenever no finite expectation exists (q <= 1 with x == 0, p x + q - 1 <= 0, or invalid input) it falls back to `mean_value` if that is finite and positive, else 0.0.
    pub fn expected_spend(&self, x: f64, mean_value: f64) -> f64 {
        let fallback = if mean_value.is_finite() && mean_value > 0.0 { mean_value } else { 0.0 };
        let valid = [self.p, self.q, self.v].iter().all(|v| v.is_finite() && *v > 0.0);
        if !valid || !x.is_finite() || x < 0.0 {
            return fallback;
        }
        if x == 0.0 {
            return if self.q > 1.0 { finite_or(self.p * self.v / (self.q - 1.0), fallback) } else { fallback };
        }
        if !mean_value.is_finite() || mean_value < 0.0 {
            return 0.0;
        }
        let denominator = self.p * x + self.q - 1.0;
        if denominator <= 0.0 {
            return fallback;
        }
        finite_or((self.v + mean_value * x) * self.p / denominator, fallback)
    }
}

/// Gamma-Gamma log-likelihood of one (x, mean value) row: the mean of x Gamma(p, nu) values is Gamma(p x, nu x), mixed over nu ~ Gamma(q, v).
fn gamma_gamma_ll(model: &GammaGamma, x: f64, m: f64) -> f64 {
    let px = model.p * x;
    ln_gamma(px + model.q) - ln_gamma(px) - ln_gamma(model.q)
        + model.q * libm::log(model.v)
        + (px - 1.0) * libm::log(m * x)
        + libm::log(x)
        - (px + model.q) * libm::log(model.v + m * x)
}

/// Maximum-likelihood Gamma-Gamma fit on (repeat purchases, mean repeat value) rows.
///
/// Rows with x == 0 are skipped because they carry no spend information; a non-finite or negative x, or a mean value that is not finite and positive, gives `Degenerate`. Values are divided by their mean before fitting (only v changes with the unit) and identical rows are merged.
pub fn fit_gamma_gamma(repeaters: &[(f64, f64)], max_iter: u32) -> Result<Fit<GammaGamma>, FitError> {
    if repeaters.is_empty() {
        return Err(FitError::Empty);
    }
    let mut rows: Vec<(f64, f64)> = Vec::with_capacity(repeaters.len());
    for &(x, m) in repeaters {
        if !x.is_finite() || x < 0.0 {
            return Err(FitError::Degenerate("a repeat-purchase count is negative or not finite"));
        }
        if x == 0.0 {
            continue;
        }
        if !m.is_finite() || m <= 0.0 {
            return Err(FitError::Degenerate("a mean purchase value is not finite and positive"));
        }
        rows.push((x, m));
    }
    let count = rows.len() as u64;
    if count == 0 {
        return Err(FitError::Empty);
    }
    if count < MIN_ROWS {
        return Err(FitError::TooFew { have: count, need: MIN_ROWS });
    }
    let mut total = 0.0;
    for &(_, m) in &rows {
        total += m;
    }
    let scale = total / count as f64;
    if scale.is_nan() || scale <= 0.0 || !scale.is_finite() {
        return Err(FitError::Degenerate("mean purchase values are too large to sum"));
    }
    for row in rows.iter_mut() {
        row.1 /= scale;
    }
    let groups = group_rows(&mut rows, |p, q| p.0.total_cmp(&q.0).then(p.1.total_cmp(&q.1)));
    let n = count as f64;
    let total_ll = |model: &GammaGamma| -> f64 {
        let mut sum = 0.0;
        for &((x, m), weight) in &groups {
            sum += weight * gamma_gamma_ll(model, x, m);
        }
        sum
    };
    let mut objective = |theta: &[f64]| -> f64 {
        let model = GammaGamma { p: libm::exp(theta[0]), q: libm::exp(theta[1]), v: libm::exp(theta[2]) };
        -total_ll(&model) / n
    };
    // Start with moderate shapes whose implied mean spend, p v / (q - 1), equals the observed mean of 1 after scaling.
    let start = [0.0, libm::log(3.0), libm::log(2.0)];
    let (theta, iterations) = minimise(&mut objective, &start, max_iter)?;
    let scaled = GammaGamma { p: libm::exp(theta[0]), q: libm::exp(theta[1]), v: libm::exp(theta[2]) };
    let log_likelihood = total_ll(&scaled) - n * libm::log(scale);
    let params = GammaGamma { v: scaled.v * scale, ..scaled };
    if !log_likelihood.is_finite() || !params.v.is_finite() {
        return Err(FitError::Degenerate("the fitted parameters are not finite"));
    }
    Ok(Fit { params, log_likelihood, iterations, customers: count })
}

/// Beta prior over a per-person success rate.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BetaPrior {
    pub alpha: f64,
    pub beta: f64,
}

impl BetaPrior {
    /// Posterior mean rate (alpha + successes) / (alpha + beta + trials); the prior mean when the inputs are unusable, and 0.0 if even that is not finite.
    pub fn rate(&self, trials: f64, successes: f64) -> f64 {
        let prior = finite_or(self.alpha / (self.alpha + self.beta), 0.0);
        if !trials.is_finite() || !successes.is_finite() || trials < 0.0 || successes < 0.0 || successes > trials {
            return prior;
        }
        finite_or((self.alpha + successes) / (self.alpha + self.beta + trials), prior)
    }
}

/// Log-likelihood of one (trials, successes) row under Beta(alpha, beta), including the binomial coefficient.
fn beta_binomial_ll(alpha: f64, beta: f64, n: f64, k: f64) -> f64 {
    let log_choose = ln_gamma(n + 1.0) - ln_gamma(k + 1.0) - ln_gamma(n - k + 1.0);
    log_choose + ln_rising(alpha, k) + ln_rising(beta, n - k) - ln_rising(alpha + beta, n)
}

/// Maximum-likelihood beta-binomial fit on (trials, successes) rows.
///
/// Rows with 0 trials are ignored and rows with more successes than trials give `Degenerate`. The search is over (logit of the mean, log of the concentration alpha + beta), with the concentration capped at `MAX_CONCENTRATION` (1e6): when people show no more variation than pure chance the fit returns that cap, i.e. an almost fixed common rate, instead of infinity. Data with no successes at all, or no failures at all, give `Degenerate` because the maximum-likelihood mean would be exactly 0 or 1.
pub fn fit_beta_binomial(rows: &[(u32, u32)], max_iter: u32) -> Result<Fit<BetaPrior>, FitError> {
    if rows.iter().any(|&(n, k)| k > n) {
        return Err(FitError::Degenerate("a row has more successes than trials"));
    }
    let mut used: Vec<(u32, u32)> = rows.iter().copied().filter(|&(n, _)| n > 0).collect();
    let count = used.len() as u64;
    if count == 0 {
        return Err(FitError::Empty);
    }
    if count < MIN_ROWS {
        return Err(FitError::TooFew { have: count, need: MIN_ROWS });
    }
    let mut trials = 0.0;
    let mut successes = 0.0;
    for &(n, k) in &used {
        trials += n as f64;
        successes += k as f64;
    }
    if successes == 0.0 {
        return Err(FitError::Degenerate("no successes in any row"));
    }
    if successes == trials {
        return Err(FitError::Degenerate("no failures in any row"));
    }
    let groups = group_rows(&mut used, |p, q| p.cmp(q));
    let total = |alpha: f64, beta: f64| -> f64 {
        let mut sum = 0.0;
        for &((n, k), weight) in &groups {
            sum += weight * beta_binomial_ll(alpha, beta, n as f64, k as f64);
        }
        sum
    };
    let max_log_concentration = libm::log(MAX_CONCENTRATION);
    let to_params = |theta: &[f64]| -> (f64, f64) {
        let mean = 1.0 / (1.0 + libm::exp(-theta[0]));
        let concentration = libm::exp(theta[1]);
        (mean * concentration, (1.0 - mean) * concentration)
    };
    let n_rows = count as f64;
    let mut objective = |theta: &[f64]| -> f64 {
        if theta[1] > max_log_concentration {
            return f64::INFINITY;
        }
        let (alpha, beta) = to_params(theta);
        if !(alpha > 0.0 && beta > 0.0) {
            return f64::INFINITY;
        }
        -total(alpha, beta) / n_rows
    };
    let mean = successes / trials;
    let start = [libm::log(mean / (1.0 - mean)), libm::log(10.0)];
    let (theta, iterations) = minimise(&mut objective, &start, max_iter)?;
    let (alpha, beta) = to_params(&theta);
    let log_likelihood = total(alpha, beta);
    if !(log_likelihood.is_finite() && alpha > 0.0 && beta > 0.0) {
        return Err(FitError::Degenerate("the fitted parameters are not finite"));
    }
    Ok(Fit { params: BetaPrior { alpha, beta }, log_likelihood, iterations, customers: count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_likelihood_matches_two_terms_for_one_customer() {
        let m = BgNbd { r: 0.5, alpha: 3.0, a: 0.8, b: 2.5 };
        let c = Customer { x: 2.0, t_x: 4.0, t: 10.0 };
        // Direct evaluation of FHL eq. 6 in linear space for comparison.
        let common = libm::exp(ln_gamma(m.r + c.x) - ln_gamma(m.r)) * libm::pow(m.alpha, m.r);
        let ratio = libm::exp(ln_gamma(m.b + c.x) + ln_gamma(m.a + m.b) - ln_gamma(m.b) - ln_gamma(m.a + m.b + c.x));
        let first = ratio * common / libm::pow(m.alpha + c.t, m.r + c.x);
        let second = ratio * m.a / (m.b + c.x - 1.0) * common / libm::pow(m.alpha + c.t_x, m.r + c.x);
        let expected = libm::log(first + second);
        assert!((m.log_likelihood(&c) - expected).abs() < 1e-12);
        assert_eq!(m.p_alive(&Customer { x: 0.0, t_x: 0.0, t: 5.0 }), 1.0);
        let p = m.p_alive(&c);
        assert!((p - first / (first + second)).abs() < 1e-12);
    }

    #[test]
    fn grouping_merges_identical_rows() {
        let mut rows = vec![3, 1, 3, 2, 1, 3];
        let groups = group_rows(&mut rows, |a, b| a.cmp(b));
        assert_eq!(groups, vec![(1, 2.0), (2, 1.0), (3, 3.0)]);
    }

    #[test]
    fn expected_spend_and_rate_formulas() {
        let g = GammaGamma { p: 6.0, q: 4.0, v: 15.0 };
        assert!((g.expected_spend(2.0, 40.0) - (15.0 + 80.0) * 6.0 / 15.0).abs() < 1e-12);
        assert!((g.expected_spend(0.0, 0.0) - 30.0).abs() < 1e-12);
        let prior = BetaPrior { alpha: 2.0, beta: 6.0 };
        assert!((prior.rate(10.0, 5.0) - 7.0 / 18.0).abs() < 1e-15);
        assert_eq!(prior.rate(f64::NAN, 1.0), 0.25);
    }
}
