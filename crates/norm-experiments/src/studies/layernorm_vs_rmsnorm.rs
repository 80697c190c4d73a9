//! Study 3 — LayerNorm vs RMSNorm on the same input. Within one sample the RMSNorm output
//! is an affine function of the LayerNorm output (LN(x) = RMS(x − mean(x)) exactly), so
//! the two differ only through the sample's mean. Pooled over a batch, their Pearson r
//! follows the law r = 1/√(1+k²), k = |mean|/std, exactly when every sample has the same
//! k, and the law averaged over the samples' ratios otherwise (derivation at
//! [`LayerNormVsRmsNorm`]). Two regimes: activation-like input (|k| ≤ 0.2), where r ≈ 0.99,
//! and the input of studies 1–2 (means as large as the spread), where r ≈ 0.65; and a
//! sweep of k against the closed forms. Also: the speed of the two norm-core kernels on
//! one large f32 input (a timing, kept out of the findings).

use std::time::Instant;

use norm_core::{LayerNorm, RmsNorm};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::common::{
    PER_SAMPLE_MEAN_RANGE, PER_SAMPLE_STD_RANGE, PerSampleGaussian, finding, normal, require_at_least,
    require_non_negative, require_range, summary_finding, uniform,
};
use crate::format::{g, sig};
use crate::kernel_cost::{KERNEL_COSTS, KernelCosts};
use crate::references::Reference;
use crate::result::{Figure, Finding, LineSeries, LineStyle, Panel, PanelContent, Scale, ScatterSeries};
use crate::stats::{linspace, max_abs, mean, min_max, pearson_r, row_stats, segment, std_dev};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "layernorm-vs-rmsnorm";

/// Configuration of the LayerNorm-vs-RMSNorm study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples in each of the two batches (activation-like, and the input of studies 1–2).
    pub samples: usize,
    /// Features per sample in the two batches (at least 2).
    pub dim: usize,
    /// Activation-like batch: each sample's mean is `k · std` with `k ~ U(−max, max)`.
    pub activation_ratio_max: f64,
    /// Activation-like batch: each sample's standard deviation is drawn uniformly from
    /// this range (above 0).
    pub std_range: (f64, f64),
    /// Second batch, drawn like the input of studies 1–2: each sample's mean uniform in
    /// this range.
    pub mixed_mean_range: (f64, f64),
    /// Second batch: each sample's standard deviation uniform in this range (above 0).
    pub mixed_std_range: (f64, f64),
    /// The |mean|/std values of the sweep (each at least 0).
    pub sweep_ratios: Vec<f64>,
    /// Samples per sweep point (signs of the means alternate, so half are negative; at
    /// least 2).
    pub sweep_samples: usize,
    /// Features per sample in the sweep (at least 2).
    pub sweep_dim: usize,
    /// eps of both norms (the same, so LN(x) = RMS(x − mean(x)) holds exactly; at least 0).
    pub eps: f64,
    /// Points kept per scatter panel (an even subsample of all elements).
    pub scatter_points: usize,
    /// Rows of the f32 timing input.
    pub timing_rows: usize,
    /// Features of the f32 timing input.
    pub timing_dim: usize,
    /// Timed runs per kernel (interleaved; the best of each is kept).
    pub timing_reps: usize,
}

impl Default for Config {
    /// The full-size study: two batches of 1000 × 512 samples, a 10-point sweep of
    /// 200 × 256 samples each, and a 2048 × 1024 f32 timing input timed 7 times per kernel.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            activation_ratio_max: 0.2,
            std_range: (0.5, 2.0),
            mixed_mean_range: PER_SAMPLE_MEAN_RANGE,
            mixed_std_range: PER_SAMPLE_STD_RANGE,
            sweep_ratios: vec![0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0],
            sweep_samples: 200,
            sweep_dim: 256,
            eps: 1e-5,
            scatter_points: 2000,
            timing_rows: 2048,
            timing_dim: 1024,
            timing_reps: 7,
        }
    }
}

impl StudyConfig for Config {
    /// Two batches of 64 × 128, four sweep points of 32 × 64, a tiny timing input.
    fn small() -> Self {
        Self {
            samples: 64,
            dim: 128,
            sweep_ratios: vec![0.0, 0.5, 1.0, 2.0],
            sweep_samples: 32,
            sweep_dim: 64,
            scatter_points: 200,
            timing_rows: 16,
            timing_dim: 64,
            timing_reps: 1,
            ..Self::default()
        }
    }

    /// Refuses a zero size, `dim`/`sweep_dim` below 2, `sweep_samples` below 2, an empty
    /// sweep or a negative or non-finite ratio, a bad range, or a negative or non-finite
    /// eps.
    fn validate(&self) -> Result<(), StudyError> {
        let features = "a variance needs at least 2 features";
        require_at_least(ID, "samples", self.samples, 1, "need at least one sample")?;
        require_at_least(ID, "dim", self.dim, 2, features)?;
        require_at_least(ID, "sweep_dim", self.sweep_dim, 2, features)?;
        require_at_least(
            ID,
            "sweep_samples",
            self.sweep_samples,
            2,
            "need a sample of each sign",
        )?;
        let points = self.sweep_ratios.len();
        require_at_least(ID, "sweep_ratios", points, 1, "need at least one sweep point")?;
        require_at_least(
            ID,
            "scatter_points",
            self.scatter_points,
            1,
            "need at least one point",
        )?;
        require_at_least(ID, "timing_rows", self.timing_rows, 1, "need at least one row")?;
        require_at_least(ID, "timing_dim", self.timing_dim, 1, "need at least one feature")?;
        require_at_least(
            ID,
            "timing_reps",
            self.timing_reps,
            1,
            "need at least one timed run",
        )?;
        require_non_negative(ID, "activation_ratio_max", self.activation_ratio_max)?;
        for &k in &self.sweep_ratios {
            require_non_negative(ID, "sweep_ratios", k)?;
        }
        require_range(ID, "std_range", self.std_range, true)?;
        require_range(ID, "mixed_mean_range", self.mixed_mean_range, false)?;
        require_range(ID, "mixed_std_range", self.mixed_std_range, true)?;
        require_non_negative(ID, "eps", self.eps)
    }
}

/// LayerNorm and RMSNorm on one batch whose samples have different |mean|/std: the pooled
/// correlation measured, and three predictions of it.
#[derive(Debug, Clone, Serialize)]
pub struct BatchComparison {
    /// Pearson r of the LayerNorm and RMSNorm outputs, pooled over all elements.
    pub r: f64,
    /// r computed from each sample's mean, variance and eps alone (the exact identity,
    /// [`LayerNormVsRmsNorm`]); equals `r` up to rounding.
    pub r_identity: f64,
    /// r expected for the configured draw: large batch, eps neglected, at this `dim` to
    /// O(1/dim) (the sampling noise of each sample's mean and spread).
    pub r_expected: f64,
    /// Standard error of the sample average `mean_i c_i` that sets `r` (sd of the c_i
    /// over √samples): how far `r` may sit from `r_expected` by chance.
    pub r_standard_error: f64,
    /// Each sample's measured mean/std (signed): `k_i`.
    pub ratios: Vec<f64>,
    /// The RMS of the measured ratios, √(mean k_i²).
    pub ratio_rms: f64,
    /// The law at that RMS ratio, 1/√(1 + ratio_rms²): what r would be if the law held for
    /// the averaged ratio (it does not; the law must be averaged).
    pub law_at_ratio_rms: f64,
    /// The single ratio whose law value is the samples' average: 1/√(1+k_eff²) =
    /// mean_i 1/√(1+k_i²). The batch's r sits on the law at this ratio.
    pub effective_ratio: f64,
    /// Largest measured |k_i|.
    pub max_abs_ratio: f64,
    /// RMS over all elements of LN(x) − RMS(x).
    pub rms_gap: f64,
    /// An even subsample of (LN output, RMS output) pairs for the scatter panel.
    pub scatter: ScatterSeries,
}

/// One point of the sweep: a batch in which every sample has |mean|/std exactly `ratio`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SweepPoint {
    /// The batch's |mean|/std, k.
    pub ratio: f64,
    /// Pooled Pearson r of the outputs.
    pub r: f64,
    /// The law 1/√(1+k²).
    pub r_law: f64,
    /// RMS over all elements of LN(x) − RMS(x).
    pub gap: f64,
    /// Its closed form √(2 − 2/√(1+k²)).
    pub gap_law: f64,
}

/// The time ratio of the two f32 kernels (a wall-clock measurement: never serialized
/// with the deterministic data, reported only through [`Study::timings`]).
#[derive(Debug, Clone, Copy)]
pub struct KernelTiming {
    /// Best RMSNorm time over best LayerNorm time.
    pub rms_over_ln: f64,
    /// Threads of the pool the kernels ran on (1 unless a one-thread pool failed).
    pub threads: usize,
    /// Rows of the timed input.
    pub rows: usize,
    /// Features of the timed input.
    pub dim: usize,
    /// Timed runs per kernel.
    pub reps: usize,
}

/// What the study measured.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Activation-like batch: per-sample |mean|/std drawn up to `activation_ratio_max`.
    pub activation: BatchComparison,
    /// The input of studies 1–2: means and spreads drawn from the `mixed_*` ranges.
    pub per_sample_gaussian: BatchComparison,
    /// `max |LN(x) − RMS(x − mean(x))|` over the activation-like batch.
    pub identity_max_diff: f64,
    /// Values compared for the identity.
    pub identity_values: usize,
    /// A subsample of (LN(x), RMS(x − mean(x))) pairs for the identity panel.
    pub identity_scatter: ScatterSeries,
    /// The sweep over k, in the configured order.
    pub sweep: Vec<SweepPoint>,
    /// `max |r − r_law|` over the sweep.
    pub sweep_r_max_deviation: f64,
    /// `max |gap − gap_law|` over the sweep.
    pub sweep_gap_max_deviation: f64,
    /// The law 1/√(1+k²) on a fine grid (the figure's curve).
    pub law_curve: LineSeries,
    /// The gap law √(2 − 2/√(1+k²)) on the same grid.
    pub gap_curve: LineSeries,
    /// Passes and operations per element of the two norm-core kernels, counted from code.
    pub kernels: KernelCosts,
    /// The kernels' time ratio (wall clock; not serialized).
    #[serde(skip)]
    pub timing: KernelTiming,
}

/// Study 3: LayerNorm vs RMSNorm on the same input (the registry type).
///
/// The law and what it assumes. For one sample with mean μ, population variance v and
/// mean square ms = μ² + v, with the same eps in both norms:
///
/// ```text
/// LN(x) = (x − μ)/√(v+ε),   RMS(x) = x/√(ms+ε) = c·LN(x) + b
/// c = √(v+ε)/√(ms+ε),  b = μ/√(ms+ε),  within-sample var(LN) = q = v/(v+ε),  mean(LN) = 0
/// ```
///
/// Pooled over the elements of equally long samples (averages over samples i):
///
/// ```text
/// r = mean(c·q) / √( mean(q) · (mean(c²q + b²) − mean(b)²) )          exact
///   = mean(c) / √(1 − mean(b)²)                   ε → 0: q = 1, c² + b² = 1
/// c = 1/√(1+k²),  b = sign(μ)·|k|/√(1+k²),  k = μ/σ
/// ```
///
/// So r = 1/√(1+k²) exactly when every sample has the same |k| and the signs of the means
/// balance (mean(b) = 0): the sweep. A batch whose samples have different ratios sits at
/// the *average* of the law over its samples, corrected by mean(b)² — not at the law of
/// its average ratio (1/√(1+k²) is convex in k², so the average is larger). For the
/// configured draws (μ, σ uniform; or k uniform) the study integrates the law over the
/// draw, and adds the O(1/d) effect of each sample's measured k being noisy,
/// `k̂ = (k + z̄)/√S` with `z̄ ~ N(0, 1/d)`, `S ~ χ²(d−1)/d`:
///
/// ```text
/// E[c(k̂)] = c(k) + c'(k)·5k/(4d) + c''(k)·(1 + k²/2)/(2d) + O(1/d²)     (same for b)
/// r_expected = E[c(k̂)] / √(1 − E[b(k̂)]²)     (large batch, eps neglected)
/// ```
///
/// # Example
/// ```
/// use norm_experiments::{Study, StudyConfig};
/// use norm_experiments::studies::layernorm_vs_rmsnorm::{Config, LayerNormVsRmsNorm};
/// let m = LayerNormVsRmsNorm::measure(&Config::small(), 42)?;
/// assert!(m.identity_max_diff < 1e-12);
/// assert!(m.activation.r > 0.95 && m.per_sample_gaussian.r < 0.8);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct LayerNormVsRmsNorm;

/// The law: `c(k) = 1/√(1+k²)`.
fn law(k: f64) -> f64 {
    1.0 / (1.0 + k * k).sqrt()
}

/// The gap law: RMS of LN − RMS for a batch with |mean|/std = k, √(2 − 2/√(1+k²)).
fn gap_law(k: f64) -> f64 {
    (2.0 - 2.0 * law(k)).sqrt()
}

/// `(c, b)` of a sample with measured ratio k̂ in expectation over its sampling noise,
/// given the true ratio `k` and `inv_d = 1/d` (0: no noise), to O(1/d).
fn noisy_law(k: f64, inv_d: f64) -> (f64, f64) {
    let c = law(k);
    let b = k * c;
    // (1+k²)^(−3/2) and (1+k²)^(−5/2).
    let (c3, c5) = (c * c * c, c * c * c * c * c);
    let (c1, c2) = (-k * c3, (2.0 * k * k - 1.0) * c5);
    let (b1, b2) = (c3, -3.0 * k * c5);
    let (drift, spread) = (1.25 * k * inv_d, 0.5 * (1.0 + 0.5 * k * k) * inv_d);
    (c + c1 * drift + c2 * spread, b + b1 * drift + b2 * spread)
}

/// Mean of the pair `f` over `U(lo, hi)` by composite Simpson with `n` (even) intervals;
/// `f(lo)` when the range is a point.
fn uniform_mean(lo: f64, hi: f64, n: usize, mut f: impl FnMut(f64) -> (f64, f64)) -> (f64, f64) {
    if lo >= hi {
        return f(lo);
    }
    let h = (hi - lo) / n as f64;
    let mut total = (0.0, 0.0);
    for i in 0..=n {
        let w = if i == 0 || i == n {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let v = f(lo + h * i as f64);
        total.0 += w * v.0;
        total.1 += w * v.1;
    }
    let scale = h / 3.0 / (hi - lo);
    (total.0 * scale, total.1 * scale)
}

/// Simpson intervals per axis (the integrand is smooth: σ ≥ the smallest std > 0).
const SIMPSON_INTERVALS: usize = 256;

/// `r_expected` for a draw given as the mean of `(c, b)` over it.
fn expected_r((ec, eb): (f64, f64)) -> f64 {
    ec / (1.0 - eb * eb).sqrt()
}

/// `E[(c, b)]` for `k ~ U(−kmax, kmax)`.
fn expected_activation(kmax: f64, inv_d: f64) -> (f64, f64) {
    uniform_mean(-kmax, kmax, SIMPSON_INTERVALS, |k| noisy_law(k, inv_d))
}

/// `E[(c, b)]` for `k = μ/σ`, `μ ~ U(mean_range)`, `σ ~ U(std_range)` independent.
fn expected_mixed(mean_range: (f64, f64), std_range: (f64, f64), inv_d: f64) -> (f64, f64) {
    let n = SIMPSON_INTERVALS;
    uniform_mean(std_range.0, std_range.1, n, |s| {
        uniform_mean(mean_range.0, mean_range.1, n, |m| noisy_law(m / s, inv_d))
    })
}

/// LN and RMS outputs of one batch.
struct Pair {
    x: Vec<f64>,
    ln: Vec<f64>,
    rms: Vec<f64>,
}

fn normalize_both(x: Vec<f64>, d: usize, eps: f64) -> Result<Pair, StudyError> {
    let mut ln = vec![0.0; x.len()];
    let mut rms = vec![0.0; x.len()];
    LayerNorm::<f64>::new(d)?
        .with_eps(eps)?
        .forward_slice(&x, &mut ln)?;
    RmsNorm::<f64>::new(d)?
        .with_eps(eps)?
        .forward_slice(&x, &mut rms)?;
    Ok(Pair { x, ln, rms })
}

/// `n` rows of `d` values with |mean|/std exactly `k`: `z` is drawn, standardized to
/// mean 0 and population std 1, then `x = σ · (z ± k)` with the sign alternating by row.
fn controlled_batch(rng: &mut ChaCha8Rng, n: usize, d: usize, k: f64, std_range: (f64, f64)) -> Vec<f64> {
    let mut x = Vec::with_capacity(n * d);
    let mut z = vec![0.0; d];
    for i in 0..n {
        let sigma = uniform(rng, std_range);
        z.iter_mut().for_each(|v| *v = normal(rng));
        let s = &row_stats(&z, d)[0];
        let sign = if i % 2 == 0 { 1.0 } else { -1.0 };
        x.extend(z.iter().map(|v| sigma * ((v - s.mean) / s.std() + sign * k)));
    }
    x
}

/// Every `stride`-th element so that about `points` remain.
fn subsample(a: &[f64], points: usize) -> Vec<f64> {
    let stride = a.len().div_ceil(points.max(1)).max(1);
    a.iter().step_by(stride).copied().collect()
}

fn scatter(label: &str, x: &[f64], y: &[f64], points: usize) -> ScatterSeries {
    ScatterSeries {
        label: label.to_owned(),
        x: subsample(x, points),
        y: subsample(y, points),
    }
}

/// Pooled Pearson r of LN and RMS outputs from per-sample statistics alone (the exact
/// identity of [`LayerNormVsRmsNorm`]).
fn identity_r(x: &[f64], d: usize, eps: f64) -> f64 {
    let st = row_stats(x, d);
    let (mut cq, mut q, mut c2qb2, mut b) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for s in &st {
        let c = (s.var + eps).sqrt() / (s.mean_sq + eps).sqrt();
        let bi = s.mean / (s.mean_sq + eps).sqrt();
        let qi = s.var / (s.var + eps);
        cq.push(c * qi);
        q.push(qi);
        c2qb2.push(c * c * qi + bi * bi);
        b.push(bi);
    }
    let mb = mean(&b);
    mean(&cq) / (mean(&q) * (mean(&c2qb2) - mb * mb)).sqrt()
}

/// RMS over elements of `a − b`.
fn rms_gap(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().max(1) as f64;
    (a.iter().zip(b).map(|(p, q)| (p - q) * (p - q)).sum::<f64>() / n).sqrt()
}

/// Everything measured on one batch, with `expected` = E[(c, b)] of its configured draw.
fn compare(p: &Pair, d: usize, eps: f64, expected: (f64, f64), points: usize) -> BatchComparison {
    let st = row_stats(&p.x, d);
    let ratios: Vec<f64> = st.iter().map(|s| s.mean / s.std()).collect();
    let c: Vec<f64> = ratios.iter().map(|&k| law(k)).collect();
    let ratio_rms = (ratios.iter().map(|k| k * k).sum::<f64>() / ratios.len() as f64).sqrt();
    let mean_c = mean(&c);
    BatchComparison {
        r: pearson_r(&p.ln, &p.rms),
        r_identity: identity_r(&p.x, d, eps),
        r_expected: expected_r(expected),
        r_standard_error: std_dev(&c) / (c.len() as f64).sqrt(),
        ratio_rms,
        law_at_ratio_rms: law(ratio_rms),
        effective_ratio: (1.0 / (mean_c * mean_c) - 1.0).max(0.0).sqrt(),
        max_abs_ratio: max_abs(ratios.iter().copied()),
        rms_gap: rms_gap(&p.ln, &p.rms),
        scatter: scatter("elements (subsample)", &p.ln, &p.rms, points),
        ratios,
    }
}

impl Study for LayerNormVsRmsNorm {
    const ID: &'static str = ID;
    const TITLE: &'static str = "LayerNorm vs RMSNorm";
    const SUMMARY: &'static str = "Highly correlated outputs. Main difference: mean centering.";
    type Config = Config;
    type Measurements = Measurements;

    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let mut rng = study_rng(seed, ID);
        let (n, d) = (cfg.samples, cfg.dim);
        let inv_d = 1.0 / d as f64;

        // Activation-like batch: per-sample mean k·σ with small |k|.
        let mut x = Vec::with_capacity(n * d);
        for _ in 0..n {
            let sigma = uniform(&mut rng, cfg.std_range);
            let k = uniform(&mut rng, (-cfg.activation_ratio_max, cfg.activation_ratio_max));
            for _ in 0..d {
                x.push(sigma * (normal(&mut rng) + k));
            }
        }
        let act = normalize_both(x, d, cfg.eps)?;
        let activation = compare(
            &act,
            d,
            cfg.eps,
            expected_activation(cfg.activation_ratio_max, inv_d),
            cfg.scatter_points,
        );

        // The identity LN(x) = RMS(x − mean(x)).
        let centered: Vec<f64> = act
            .x
            .chunks_exact(d)
            .flat_map(|row| {
                let m = mean(row);
                row.iter().map(move |v| v - m)
            })
            .collect();
        let mut rms_centered = vec![0.0; centered.len()];
        RmsNorm::<f64>::new(d)?
            .with_eps(cfg.eps)?
            .forward_slice(&centered, &mut rms_centered)?;
        let identity_max_diff = max_abs(act.ln.iter().zip(&rms_centered).map(|(a, b)| a - b));

        // The input of studies 1–2.
        let xm = PerSampleGaussian::draw(&mut rng, n, d, cfg.mixed_mean_range, cfg.mixed_std_range).x;
        let mixed = normalize_both(xm, d, cfg.eps)?;
        let per_sample_gaussian = compare(
            &mixed,
            d,
            cfg.eps,
            expected_mixed(cfg.mixed_mean_range, cfg.mixed_std_range, inv_d),
            cfg.scatter_points,
        );

        // Sweep of k = |mean|/std.
        let mut sweep = Vec::with_capacity(cfg.sweep_ratios.len());
        for &k in &cfg.sweep_ratios {
            let x = controlled_batch(&mut rng, cfg.sweep_samples, cfg.sweep_dim, k, cfg.std_range);
            let b = normalize_both(x, cfg.sweep_dim, cfg.eps)?;
            sweep.push(SweepPoint {
                ratio: k,
                r: pearson_r(&b.ln, &b.rms),
                r_law: law(k),
                gap: rms_gap(&b.ln, &b.rms),
                gap_law: gap_law(k),
            });
        }
        let k_hi = min_max(
            cfg.sweep_ratios
                .iter()
                .copied()
                .chain([activation.effective_ratio, per_sample_gaussian.effective_ratio]),
        )
        .1;
        let grid = linspace(0.0, k_hi, 121);
        let curve = |label: &str, f: fn(f64) -> f64| LineSeries {
            label: label.to_owned(),
            x: grid.clone(),
            y: grid.iter().map(|&k| f(k)).collect(),
            style: LineStyle::Dashed,
        };

        let timing = time_kernels(cfg, seed)?;

        Ok(Measurements {
            identity_values: act.x.len(),
            identity_scatter: scatter("elements (subsample)", &act.ln, &rms_centered, cfg.scatter_points),
            identity_max_diff,
            activation,
            per_sample_gaussian,
            sweep_r_max_deviation: max_abs(sweep.iter().map(|p| p.r - p.r_law)),
            sweep_gap_max_deviation: max_abs(sweep.iter().map(|p| p.gap - p.gap_law)),
            sweep,
            law_curve: curve("law 1/√(1+k²)", law),
            gap_curve: curve("gap law √(2 − 2/√(1+k²))", gap_law),
            kernels: KERNEL_COSTS,
            timing,
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let (a, w) = (&m.activation, &m.per_sample_gaussian);
        let highly = |r: f64| {
            if r >= 0.95 {
                "highly correlated"
            } else {
                "only moderately correlated"
            }
        };
        let sweep_first = m.sweep.first().copied();
        let sweep_last = m.sweep.last().copied();
        let (k_lo, k_hi) = min_max(m.sweep.iter().map(|p| p.ratio));
        let (mr, sr) = (cfg.mixed_mean_range, cfg.mixed_std_range);
        let identity_gap = (a.r - a.r_identity).abs().max((w.r - w.r_identity).abs());
        let both = [Reference::Ba2016, Reference::ZhangSennrich2019];
        let mut out = vec![
            summary_finding(
                "pearson_r_activation_like",
                a.r,
                "Pearson r",
                format!(
                    "On activation-like input (per-sample |mean|/std drawn up to {}) LayerNorm and \
                     RMSNorm outputs are {}: r = {}. On the input of studies 1–2 (means in [{}, {}] \
                     against standard deviations in [{}, {}]) they are {}: r = {}. Both follow the \
                     law r = 1/√(1 + (mean/std)²), exact for samples sharing one |mean|/std and \
                     averaged over the samples' ratios otherwise (predicted {} and {} for these \
                     draws). The main difference is mean centering: LN(x) = RMS(x − mean(x)) within {}.",
                    g(cfg.activation_ratio_max),
                    highly(a.r),
                    sig(a.r, 4),
                    g(mr.0),
                    g(mr.1),
                    g(sr.0),
                    g(sr.1),
                    highly(w.r),
                    sig(w.r, 3),
                    sig(a.r_expected, 4),
                    sig(w.r_expected, 3),
                    g(m.identity_max_diff)
                ),
            )
            .labelled("Pearson r of LN and RMS outputs, activation-like input")
            .cite(&both),
            finding(
                "pearson_r_activation_expected",
                a.r_expected,
                "Pearson r",
                format!(
                    "For the activation-like draw (k = mean/std uniform in ±{}, {} samples × {}) \
                     the law averaged over k, with the O(1/d) sampling noise of each sample's \
                     mean and spread, predicts r = {}; measured {} (standard error {}). The noise \
                     matters here: without it the average law gives asinh({})/{} = {}.",
                    g(cfg.activation_ratio_max),
                    cfg.samples,
                    cfg.dim,
                    sig(a.r_expected, 5),
                    sig(a.r, 5),
                    g(a.r_standard_error),
                    g(cfg.activation_ratio_max),
                    g(cfg.activation_ratio_max),
                    sig(expected_r(expected_activation(cfg.activation_ratio_max, 0.0)), 5)
                ),
            )
            .labelled("Predicted r, activation-like input"),
            finding(
                "pearson_r_per_sample_gaussian",
                w.r,
                "Pearson r",
                format!(
                    "On the input of studies 1–2 ({} samples × {}, mean uniform in [{}, {}], std \
                     uniform in [{}, {}]) r = {}, not high: predicted {} (the law averaged over the \
                     draw; standard error {}). The batch acts like one ratio k = {}; the law at \
                     the samples' RMS ratio {} would give only {}, because averaging the law over \
                     samples is not the law of the averaged ratio.",
                    cfg.samples,
                    cfg.dim,
                    g(mr.0),
                    g(mr.1),
                    g(sr.0),
                    g(sr.1),
                    sig(w.r, 4),
                    sig(w.r_expected, 4),
                    g(w.r_standard_error),
                    sig(w.effective_ratio, 3),
                    sig(w.ratio_rms, 3),
                    sig(w.law_at_ratio_rms, 3)
                ),
            )
            .labelled("Pearson r of LN and RMS outputs, input of studies 1–2"),
            finding(
                "pearson_r_identity_gap",
                identity_gap,
                "",
                format!(
                    "Both measured r match the exact identity r = mean(c·q)/√(mean(q)·(mean(c²q + \
                     b²) − mean(b)²)) from per-sample means, variances and eps within {}: each \
                     sample's RMS output is an exact affine function c·LN + b of its LN output.",
                    g(identity_gap)
                ),
            )
            .labelled("Measured r vs the per-sample identity: largest gap"),
            finding(
                "identity_max_diff",
                m.identity_max_diff,
                "",
                format!(
                    "max |LN(x) − RMS(x − mean(x))| = {} over {} values (f64 rounding): \
                     LayerNorm is RMSNorm applied to the centered input.",
                    g(m.identity_max_diff),
                    m.identity_values
                ),
            )
            .labelled("max |LN(x) − RMS(x − mean(x))|")
            .cite(&both),
        ];
        if let (Some(first), Some(last)) = (sweep_first, sweep_last) {
            out.push(
                finding(
                    "sweep_r_max_deviation",
                    m.sweep_r_max_deviation,
                    "",
                    format!(
                        "In batches whose samples all have one |mean|/std = k (signs alternating), \
                         from k = {} to {}, r falls from {} to {} and follows 1/√(1+k²) within {}.",
                        g(k_lo),
                        g(k_hi),
                        sig(first.r, 4),
                        sig(last.r, 3),
                        g(m.sweep_r_max_deviation)
                    ),
                )
                .labelled("Sweep: r vs 1/√(1+k²), largest gap"),
            );
            out.push(
                finding(
                    "sweep_gap_max_deviation",
                    m.sweep_gap_max_deviation,
                    "",
                    format!(
                        "Over the same sweep the RMS gap between the outputs grows from {} to {} \
                         and follows √(2 − 2/√(1+k²)) within {}.",
                        g(first.gap),
                        sig(last.gap, 3),
                        g(m.sweep_gap_max_deviation)
                    ),
                )
                .labelled("Sweep: RMS gap vs √(2 − 2/√(1+k²)), largest gap"),
            );
        }
        out
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        let (ln, rms) = (m.kernels.layer_norm, m.kernels.rms_norm);
        vec![
            format!(
                "Both norms (eps = {}, weight 1, no bias) see two batches of {} × {}: one shaped \
                 like real activations, each sample's mean small against its spread (|mean|/std \
                 drawn uniformly up to {}), and the input of studies 1–2, whose means (uniform in \
                 [{}, {}]) are as large as the spreads (uniform in [{}, {}]).",
                g(cfg.eps),
                cfg.samples,
                cfg.dim,
                g(cfg.activation_ratio_max),
                g(cfg.mixed_mean_range.0),
                g(cfg.mixed_mean_range.1),
                g(cfg.mixed_std_range.0),
                g(cfg.mixed_std_range.1)
            ),
            "Within one sample the RMSNorm output is an affine function of the LayerNorm output: \
             RMS(x) = c·LN(x) + b with c = std/RMS and b = mean/RMS. So LN(x) = RMS(x − mean(x)): \
             the only difference is the mean. Pooled over a batch, r = mean(c)/√(1 − mean(b)²) \
             (eps aside). With k = |mean|/std, c = 1/√(1+k²): a batch whose samples share one k, \
             with means of both signs, has r = 1/√(1+k²) and an RMS gap of √(2 − 2/√(1+k²)) \
             exactly — the sweep, whose samples are standardized so that k is exact. A batch with \
             many ratios sits at the average of the law over its samples; the figure places it \
             at the one ratio with that average (its effective k). The predictions for the two \
             batches integrate the law over the configured draws and add the O(1/d) noise of \
             each sample's measured mean and spread."
                .to_owned(),
            format!(
                "RMSNorm skips the mean: in norm-core's forward kernels {} passes over the row and \
                 {} operations per element instead of LayerNorm's {} and {} (counted from the \
                 code; see the RMSNorm study). Both read the row from memory once, so time does \
                 not shrink in that proportion: the measured time ratio of the two kernels is a \
                 wall-clock number, kept in timings.md (rms_over_ln_time).",
                rms.passes, rms.ops_per_element, ln.passes, ln.ops_per_element
            ),
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "(a) and (b) plot each element's LayerNorm output against its RMSNorm output: the \
         closer the cloud hugs the diagonal, the more the two norms agree. Compare its width on \
         activation-like input (a) with the off-centre input of studies 1–2 (b). In (c) the \
         measured correlations and gaps (markers) sit on their laws (lines) as |mean|/std \
         grows; (d) is RMSNorm of the centred input against LayerNorm: one line."
            .to_owned()
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        let (a, w) = (&m.activation, &m.per_sample_gaussian);
        let span = |s: &ScatterSeries| {
            let (lo, hi) = min_max(s.x.iter().chain(&s.y).copied());
            segment("y = x", lo, lo, hi, hi)
        };
        let scatter_panel = |title: String, s: &ScatterSeries, x_label: &str, y_label: &str| Panel {
            title,
            x_label: x_label.to_owned(),
            y_label: y_label.to_owned(),
            content: PanelContent::Scatter {
                series: vec![s.clone()],
                lines: vec![span(s)],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        };
        // Measured points as markers, drawn after (over) the dashed closed forms.
        let points = |label: &str, x: Vec<f64>, y: Vec<f64>| LineSeries {
            label: label.to_owned(),
            x,
            y,
            style: LineStyle::Markers,
        };
        let ks: Vec<f64> = m.sweep.iter().map(|p| p.ratio).collect();
        let panels = vec![
            scatter_panel(
                format!(
                    "Activation-Like Input (|mean|/std ≤ {})",
                    g(cfg.activation_ratio_max)
                ),
                &a.scatter,
                "LayerNorm output",
                "RMSNorm output",
            ),
            scatter_panel(
                format!(
                    "Input of Studies 1–2 (means in [{}, {}])",
                    g(cfg.mixed_mean_range.0),
                    g(cfg.mixed_mean_range.1)
                ),
                &w.scatter,
                "LayerNorm output",
                "RMSNorm output",
            ),
            Panel {
                title: "r = 1/√(1+k²): Correlation Falls, Gap Grows".to_owned(),
                x_label: "|mean| / std of each sample (k; mixed batches at effective k)".to_owned(),
                y_label: "Pearson r  /  RMS of (LN − RMS)".to_owned(),
                content: PanelContent::Lines {
                    series: vec![
                        m.law_curve.clone(),
                        m.gap_curve.clone(),
                        points(
                            "r, one k per batch (measured)",
                            ks.clone(),
                            m.sweep.iter().map(|p| p.r).collect(),
                        ),
                        points(
                            "RMS gap, one k per batch (measured)",
                            ks,
                            m.sweep.iter().map(|p| p.gap).collect(),
                        ),
                        points(
                            "r, activation-like (measured)",
                            vec![a.effective_ratio],
                            vec![a.r],
                        ),
                        points(
                            "r, input of studies 1–2 (measured)",
                            vec![w.effective_ratio],
                            vec![w.r],
                        ),
                    ],
                    x_scale: Scale::Linear,
                    y_scale: Scale::Linear,
                },
            },
            scatter_panel(
                "LN(x) = RMS(x − mean(x))".to_owned(),
                &m.identity_scatter,
                "LayerNorm(x)",
                "RMSNorm(x − mean(x))",
            ),
        ];
        Figure {
            title: "LayerNorm vs RMSNorm: Same Input, Different Normalization".to_owned(),
            panels,
            columns: 2,
        }
    }

    fn timings(m: &Measurements) -> Vec<Finding> {
        let t = m.timing;
        let verdict = if t.rms_over_ln < 0.9 {
            "RMSNorm is faster"
        } else if t.rms_over_ln > 1.1 {
            "RMSNorm is slower"
        } else {
            "the two take about the same time"
        };
        let threads = if t.threads == 1 {
            "one thread".to_owned()
        } else {
            format!("{} threads", t.threads)
        };
        vec![
            finding(
                "rms_over_ln_time",
                t.rms_over_ln,
                "×",
                format!(
                    "On one {} × {} f32 input the norm-core RMSNorm kernel takes {}× the time of \
                     the LayerNorm kernel (best of {} interleaved runs each, {threads}): {verdict}. \
                     A wall-clock measurement; it varies between runs.",
                    t.rows,
                    t.dim,
                    sig(t.rms_over_ln, 2),
                    t.reps
                ),
            )
            .labelled("Time of RMSNorm ÷ LayerNorm kernel"),
        ]
    }
}

/// Times the f32 kernels of norm-core on one large input: the best of `timing_reps`
/// interleaved runs each, into a preallocated output, on a one-thread rayon pool (so the
/// ratio compares kernels, not thread scheduling).
fn time_kernels(cfg: &Config, seed: u64) -> Result<KernelTiming, StudyError> {
    let (rows, d) = (cfg.timing_rows, cfg.timing_dim);
    // A separate stream, so the timing input never shifts the study's other draws.
    let mut rng = study_rng(seed, "layernorm-vs-rmsnorm/timing");
    let x: Vec<f32> = (0..rows * d).map(|_| normal(&mut rng) as f32).collect();
    let mut out = vec![0.0f32; x.len()];
    let ln = LayerNorm::<f32>::new(d)?.with_eps(cfg.eps as f32)?;
    let rms = RmsNorm::<f32>::new(d)?.with_eps(cfg.eps as f32)?;
    let measure = |out: &mut [f32]| -> Result<KernelTiming, StudyError> {
        // Warm-up (page faults, caches).
        ln.forward_slice(&x, out)?;
        rms.forward_slice(&x, out)?;
        let (mut t_ln, mut t_rms) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..cfg.timing_reps {
            let t = Instant::now();
            ln.forward_slice(&x, out)?;
            t_ln = t_ln.min(t.elapsed().as_secs_f64());
            let t = Instant::now();
            rms.forward_slice(&x, out)?;
            t_rms = t_rms.min(t.elapsed().as_secs_f64());
        }
        Ok(KernelTiming {
            rms_over_ln: t_rms / t_ln,
            threads: rayon::current_num_threads(),
            rows,
            dim: d,
            reps: cfg.timing_reps,
        })
    };
    // If a one-thread pool cannot be built, time on the current pool and say so.
    match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(|| measure(&mut out)),
        Err(_) => measure(&mut out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};

    type S = LayerNormVsRmsNorm;

    /// Asserts every claim for one config and seed. Closed forms hold up to eps effects
    /// of order eps/σ² (σ ≥ the smallest std) and f64 rounding (D·ε·|y|); the predictions
    /// for the configured draws within 4 standard errors plus the O(1/d²) they leave out.
    fn check(cfg: &Config, seed: u64) {
        let m = S::measure(cfg, seed).expect("measures");
        let rounding = cfg.dim.max(cfg.sweep_dim) as f64 * f64::EPSILON * 10.0;
        let eps_effect =
            10.0 * cfg.eps / (cfg.std_range.0 * cfg.std_range.0).min(cfg.mixed_std_range.0.powi(2));
        let left_out = 4.0 / (cfg.dim * cfg.dim) as f64;
        let (a, w) = (&m.activation, &m.per_sample_gaussian);

        // Both regimes: measured r on the exact identity, and within sampling error of the
        // prediction for the configured draw.
        for b in [a, w] {
            assert!((b.r - b.r_identity).abs() < 1e-10, "{} vs {}", b.r, b.r_identity);
            let tol = 4.0 * b.r_standard_error + eps_effect + left_out;
            assert!(
                (b.r - b.r_expected).abs() < tol,
                "r {} expected {} tol {tol}",
                b.r,
                b.r_expected
            );
            assert_eq!(b.ratios.len(), cfg.samples);
            // The batch sits on the law at its effective ratio, up to the mean(b)² term.
            assert!((law(b.effective_ratio) - b.r).abs() < 0.05, "{b:?}");
            // The law is convex in k²: at the RMS ratio it undershoots.
            assert!(b.law_at_ratio_rms <= b.r + eps_effect);
        }
        assert!((0.95..=1.0).contains(&a.r), "r = {}", a.r);
        assert!(a.max_abs_ratio < cfg.activation_ratio_max + 6.0 / (cfg.dim as f64).sqrt());
        // The input of studies 1–2: near 0.65, far from "highly correlated", and the law at
        // the RMS ratio falls well short of it.
        assert!((0.5..0.8).contains(&w.r), "r = {}", w.r);
        assert!(w.law_at_ratio_rms < w.r - 0.1);
        // The O(1/d) noise term moves the activation prediction by ~1/(2d): it is there.
        let no_noise = expected_r(expected_activation(cfg.activation_ratio_max, 0.0));
        assert!((no_noise - a.r_expected - 0.5 / cfg.dim as f64).abs() < 0.2 / cfg.dim as f64);
        assert!(m.identity_max_diff < rounding);

        // The sweep follows both closed forms; r falls and the gap grows with k.
        assert!(
            m.sweep_r_max_deviation < eps_effect,
            "{}",
            m.sweep_r_max_deviation
        );
        assert!(m.sweep_gap_max_deviation < eps_effect);
        assert!(m.sweep.windows(2).all(|p| p[1].r < p[0].r));
        assert!(m.sweep.windows(2).all(|p| p[1].gap > p[0].gap));
        for p in &m.sweep {
            assert_eq!(p.r_law, 1.0 / (1.0 + p.ratio * p.ratio).sqrt());
        }

        // Findings: both regimes in the summary, "highly" only where r is high.
        let f = S::findings(cfg, &m);
        assert!(f[0].summary);
        assert!(f[0].statement.contains(&sig(a.r, 4)) && f[0].statement.contains(&sig(w.r, 3)));
        assert!(f[0].statement.contains("highly correlated"));
        assert!(f[0].statement.contains("only moderately correlated"));
        assert!(f[0].refs.contains(&Reference::Ba2016) && f[0].refs.contains(&Reference::ZhangSennrich2019));
        assert!(f.iter().all(|f| !f.label.is_empty()));

        // The timing is kept apart and never serialized.
        let r = S::run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        assert_eq!(r.timings.len(), 1);
        assert!(r.timings[0].value.is_finite() && r.timings[0].value > 0.0);
        assert!(r.findings.iter().all(|f| f.name != "rms_over_ln_time"));
        let json = serde_json::to_string(&r).expect("serializes");
        assert!(!json.contains(&r.timings[0].statement));
        let json = serde_json::to_string(&m).expect("serializes");
        assert!(json.contains("\"kernels\"") && !json.contains("\"timing\""));
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7] {
            check(&Config::small(), seed);
        }
    }

    #[test]
    fn sign_balanced_batches_have_exact_ratio() {
        let mut rng = study_rng(3, "test");
        let x = controlled_batch(&mut rng, 4, 32, 1.5, (0.5, 2.0));
        for row in row_stats(&x, 32) {
            assert!((row.mean.abs() / row.std() - 1.5).abs() < 1e-12);
        }
    }

    /// The quadrature against closed forms: E[1/√(1+k²)] for k ~ U(−K, K) is asinh(K)/K,
    /// and for μ ~ U(−a, a), σ fixed, it is (σ/a)·asinh(a/σ); odd terms average to 0.
    #[test]
    fn law_averages_match_closed_forms() {
        for kmax in [0.2, 1.0, 5.0] {
            let (ec, eb) = expected_activation(kmax, 0.0);
            assert!((ec - kmax.asinh() / kmax).abs() < 1e-9, "{kmax}: {ec}");
            assert!(eb.abs() < 1e-15);
        }
        let (ec, eb) = expected_mixed((-4.0, 4.0), (2.0, 2.0), 0.0);
        assert!((ec - 0.5 * 2.0f64.asinh()).abs() < 1e-9, "{ec}");
        assert!(eb.abs() < 1e-15);
        // A point draw: the law itself, with the noise term c''(0)/(2d) = −1/(2d) at k = 0.
        assert_eq!(expected_activation(0.0, 0.0), (1.0, 0.0));
        assert!((expected_activation(0.0, 0.01).0 - (1.0 - 0.005)).abs() < 1e-15);
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| S::run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| S::run(&cfg, 1);
        check_invalid(run(Config { samples: 0, ..c() }), "samples");
        check_invalid(run(Config { dim: 1, ..c() }), "dim");
        check_invalid(run(Config { sweep_dim: 0, ..c() }), "sweep_dim");
        check_invalid(
            run(Config {
                sweep_samples: 1,
                ..c()
            }),
            "sweep_samples",
        );
        check_invalid(
            run(Config {
                sweep_ratios: vec![],
                ..c()
            }),
            "sweep_ratios",
        );
        check_invalid(
            run(Config {
                sweep_ratios: vec![0.5, -1.0],
                ..c()
            }),
            "sweep_ratios",
        );
        check_invalid(
            run(Config {
                scatter_points: 0,
                ..c()
            }),
            "scatter_points",
        );
        check_invalid(
            run(Config {
                timing_reps: 0,
                ..c()
            }),
            "timing_reps",
        );
        check_invalid(run(Config { eps: -1e-5, ..c() }), "eps");
        check_invalid(
            run(Config {
                activation_ratio_max: f64::NAN,
                ..c()
            }),
            "activation_ratio_max",
        );
        check_invalid(
            run(Config {
                std_range: (0.0, 1.0),
                ..c()
            }),
            "std_range",
        );
        check_invalid(
            run(Config {
                mixed_mean_range: (1.0, -1.0),
                ..c()
            }),
            "mixed_mean_range",
        );
        check_invalid(
            run(Config {
                mixed_std_range: (-0.5, 3.0),
                ..c()
            }),
            "mixed_std_range",
        );
    }
}
