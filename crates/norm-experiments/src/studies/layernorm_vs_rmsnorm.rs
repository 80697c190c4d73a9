//! Study 3 — LayerNorm vs RMSNorm on the same input. Within one sample the RMSNorm output
//! is an affine function of the LayerNorm output (LN(x) = RMS(x − mean(x)) exactly), so
//! the two differ only through the sample's mean. On activation-like input, where each
//! sample's |mean| is small against its spread, the outputs are highly correlated; as
//! |mean|/std grows the gap grows and the correlation falls, following closed forms
//! (r = 1/√(1+k²), RMS gap = √(2 − 2/√(1+k²)) for k = |mean|/std). Also: the speed of the
//! two norm-core kernels on one large f32 input (a timing, kept out of the findings).

use std::time::Instant;

use norm_core::{LayerNorm, RmsNorm};

use crate::common::{
    finding, normal, require_at_least, require_non_negative, require_range, summary_finding,
    uniform,
};
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{Figure, LineSeries, LineStyle, Panel, PanelContent, Scale, ScatterSeries};
use crate::stats::{max_abs, mean, min_max, pearson_r, row_stats, segment};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "layernorm-vs-rmsnorm";
/// Title.
pub const TITLE: &str = "LayerNorm vs RMSNorm";
/// The seed document's summary line.
pub const SUMMARY: &str = "Highly correlated outputs. Main difference: mean centering.";

/// Configuration of the LayerNorm-vs-RMSNorm study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Samples in the activation-like batch.
    pub samples: usize,
    /// Features per sample.
    pub dim: usize,
    /// Activation-like input: each sample's mean is `k · std` with `k ~ U(−max, max)`.
    pub activation_ratio_max: f64,
    /// Each sample's standard deviation is drawn uniformly from this range (> 0).
    pub std_range: (f64, f64),
    /// The |mean|/std of the contrasting batch (1: means as large as the spread).
    pub contrast_ratio: f64,
    /// The |mean|/std values of the sweep (each ≥ 0).
    pub sweep_ratios: Vec<f64>,
    /// Samples per sweep point (signs of the means alternate, so half are negative).
    pub sweep_samples: usize,
    /// Features per sample in the sweep and the contrast batch.
    pub sweep_dim: usize,
    /// eps of both norms (the same, so LN(x) = RMS(x − mean(x)) holds exactly).
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
    /// The full-size study: 1000 × 512 activation-like samples, a 10-point sweep of
    /// 200 × 256 samples each, and a 2048 × 1024 f32 timing input.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            activation_ratio_max: 0.2,
            std_range: (0.5, 2.0),
            contrast_ratio: 1.0,
            sweep_ratios: vec![0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0],
            sweep_samples: 200,
            sweep_dim: 256,
            eps: 1e-5,
            scatter_points: 2000,
            timing_rows: 2048,
            timing_dim: 1024,
            timing_reps: 11,
        }
    }
}

impl Config {
    /// A small config for tests.
    pub fn small() -> Self {
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

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for a zero size, `dim`/`sweep_dim` below 2,
    /// `sweep_samples` below 2, an empty sweep or a negative or non-finite ratio, a bad
    /// std range, or a negative or non-finite eps.
    pub fn validate(&self) -> Result<(), StudyError> {
        require_at_least(ID, "samples", self.samples, 1, "need at least one sample")?;
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 features")?;
        require_at_least(
            ID,
            "sweep_dim",
            self.sweep_dim,
            2,
            "a variance needs at least 2 features",
        )?;
        require_at_least(
            ID,
            "sweep_samples",
            self.sweep_samples,
            2,
            "need a sample of each sign",
        )?;
        require_at_least(
            ID,
            "sweep_ratios",
            self.sweep_ratios.len(),
            1,
            "need at least one sweep point",
        )?;
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
        require_non_negative(ID, "contrast_ratio", self.contrast_ratio)?;
        for &k in &self.sweep_ratios {
            require_non_negative(ID, "sweep_ratios", k)?;
        }
        require_range(ID, "std_range", self.std_range, true)?;
        require_non_negative(ID, "eps", self.eps)
    }
}

impl StudyConfig for Config {
    fn small() -> Self {
        Config::small()
    }

    fn validate(&self) -> Result<(), StudyError> {
        Config::validate(self)
    }
}

/// The study (registry type).
pub struct LayerNormVsRmsNorm;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for LayerNormVsRmsNorm {
    const ID: &'static str = ID;
    const TITLE: &'static str = TITLE;
    const SUMMARY: &'static str = SUMMARY;
    type Config = Config;
    type Measurements = StudyResult;

    fn measure(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
        run(cfg, seed)
    }

    fn findings(_: &Config, m: &StudyResult) -> Vec<crate::result::Finding> {
        m.findings.clone()
    }

    fn explanation(_: &Config, m: &StudyResult) -> Vec<String> {
        m.explanation.clone()
    }

    fn figure(_: &Config, m: &StudyResult) -> Figure {
        m.figure.clone()
    }

    fn timings(m: &StudyResult) -> Vec<crate::result::Finding> {
        m.timings.clone()
    }
}

/// LN and RMS outputs of one batch, with its per-sample statistics.
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
fn controlled_batch(
    rng: &mut rand_chacha::ChaCha8Rng,
    n: usize,
    d: usize,
    k: f64,
    std_range: (f64, f64),
) -> Vec<f64> {
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

/// Pooled Pearson r of LN and RMS outputs predicted from per-sample statistics alone.
///
/// ```text
/// per sample: rms = c·ln + b,  c = √(v+ε)/√(ms+ε),  b = μ/√(ms+ε),  var(ln) = q = v/(v+ε)
/// pooled:     r = mean(c·q) / √( mean(q) · (mean(c²q + b²) − mean(b)²) )
/// ```
fn predicted_r(x: &[f64], d: usize, eps: f64) -> f64 {
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

/// Runs the study.
///
/// ```text
/// LN(x) = (x − μ)/√(v+ε),  RMS(x) = x/√(μ²+v+ε)   ⇒   LN(x) = RMS(x − μ)
/// k = |μ|/σ, ε → 0:  r(LN, RMS) = 1/√(1+k²),  rms(LN − RMS) = √(2 − 2/√(1+k²))
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`].
///
/// # Example
/// ```
/// use norm_experiments::studies::layernorm_vs_rmsnorm::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// assert!(r.findings.iter().any(|f| f.name == "identity_max_diff" && f.value < 1e-12));
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let mut rng = study_rng(seed, ID);
    let (n, d) = (cfg.samples, cfg.dim);

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
    let r_act = pearson_r(&act.ln, &act.rms);
    let r_act_pred = predicted_r(&act.x, d, cfg.eps);

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
    let identity_diff = max_abs(act.ln.iter().zip(&rms_centered).map(|(a, b)| a - b));

    // Contrast: |mean| = contrast_ratio · std.
    let kc = cfg.contrast_ratio;
    let contrast = normalize_both(
        controlled_batch(&mut rng, cfg.sweep_samples, cfg.sweep_dim, kc, cfg.std_range),
        cfg.sweep_dim,
        cfg.eps,
    )?;
    let r_contrast = pearson_r(&contrast.ln, &contrast.rms);
    let r_contrast_pred = 1.0 / (1.0 + kc * kc).sqrt();

    // Sweep of k = |mean|/std.
    let ks = &cfg.sweep_ratios;
    let (mut r_sweep, mut gap_sweep) = (Vec::new(), Vec::new());
    for &k in ks {
        let b = normalize_both(
            controlled_batch(&mut rng, cfg.sweep_samples, cfg.sweep_dim, k, cfg.std_range),
            cfg.sweep_dim,
            cfg.eps,
        )?;
        r_sweep.push(pearson_r(&b.ln, &b.rms));
        gap_sweep.push(rms_gap(&b.ln, &b.rms));
    }
    let r_pred: Vec<f64> = ks.iter().map(|k| 1.0 / (1.0 + k * k).sqrt()).collect();
    let gap_pred: Vec<f64> = r_pred.iter().map(|a| (2.0 - 2.0 * a).sqrt()).collect();
    let r_dev = max_abs(r_sweep.iter().zip(&r_pred).map(|(a, b)| a - b));
    let gap_dev = max_abs(gap_sweep.iter().zip(&gap_pred).map(|(a, b)| a - b));
    let (k_lo, k_hi) = min_max(ks.iter().copied());
    let last = ks.len() - 1;

    let highly = if r_act >= 0.95 {
        "highly correlated"
    } else {
        "correlated"
    };
    let findings = vec![
        summary_finding(
            "pearson_r_activation_like",
            r_act,
            "Pearson r",
            format!(
                "On activation-like input (per-sample |mean|/std ≤ {}), LayerNorm and RMSNorm \
                 outputs are {highly}: r = {} (predicted from the per-sample statistics: {}). \
                 The main difference is mean centering: LN(x) = RMS(x − mean(x)) within {}.",
                g(cfg.activation_ratio_max),
                sig(r_act, 5),
                sig(r_act_pred, 5),
                g(identity_diff)
            ),
        ),
        finding(
            "pearson_r_prediction_gap",
            (r_act - r_act_pred).abs(),
            "",
            format!(
                "The measured r matches its prediction from per-sample means and variances \
                 within {}: each sample's RMS output is an exact affine function of its LN output.",
                g((r_act - r_act_pred).abs())
            ),
        ),
        finding(
            "identity_max_diff",
            identity_diff,
            "",
            format!(
                "max |LN(x) − RMS(x − mean(x))| = {} over {} values (f64 rounding): \
                 LayerNorm is RMSNorm applied to the centered input.",
                g(identity_diff),
                act.x.len()
            ),
        ),
        finding(
            "pearson_r_contrast",
            r_contrast,
            "Pearson r",
            format!(
                "With per-sample |mean| = {} × std, r falls to {} (closed form 1/√(1+k²) = {}); \
                 outputs are then only moderately correlated.",
                g(kc),
                sig(r_contrast, 4),
                sig(r_contrast_pred, 4)
            ),
        ),
        finding(
            "sweep_r_max_deviation",
            r_dev,
            "",
            format!(
                "Over |mean|/std from {} to {}, r falls from {} to {} and follows 1/√(1+k²) \
                 within {}.",
                g(k_lo),
                g(k_hi),
                sig(r_sweep[0], 4),
                sig(r_sweep[last], 3),
                g(r_dev)
            ),
        ),
        finding(
            "sweep_gap_max_deviation",
            gap_dev,
            "",
            format!(
                "Over the same sweep the RMS gap between the outputs grows from {} to {} and \
                 follows √(2 − 2/√(1+k²)) within {}.",
                g(gap_sweep[0]),
                sig(gap_sweep[last], 3),
                g(gap_dev)
            ),
        ),
    ];

    let timings = vec![time_kernels(cfg, seed)?];

    let line = |label: &str, y: &[f64], style| LineSeries {
        label: label.to_owned(),
        x: ks.clone(),
        y: y.to_vec(),
        style,
    };
    let span = |a: &Pair| {
        let (lo, hi) = min_max(a.ln.iter().chain(&a.rms).copied());
        segment("y = x", lo, lo, hi, hi)
    };
    let panels = vec![
        Panel {
            title: format!(
                "Activation-Like Input (|mean|/std ≤ {})",
                g(cfg.activation_ratio_max)
            ),
            x_label: "LayerNorm output".to_owned(),
            y_label: "RMSNorm output".to_owned(),
            content: PanelContent::Scatter {
                series: vec![scatter(
                    "elements (subsample)",
                    &act.ln,
                    &act.rms,
                    cfg.scatter_points,
                )],
                lines: vec![span(&act)],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: format!("Means as Large as the Spread (|mean|/std = {})", g(kc)),
            x_label: "LayerNorm output".to_owned(),
            y_label: "RMSNorm output".to_owned(),
            content: PanelContent::Scatter {
                series: vec![scatter(
                    "elements (subsample)",
                    &contrast.ln,
                    &contrast.rms,
                    cfg.scatter_points,
                )],
                lines: vec![span(&contrast)],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "Correlation Falls, Gap Grows with |mean|/std".to_owned(),
            x_label: "|mean| / std of each sample (k)".to_owned(),
            y_label: "Pearson r  /  RMS of (LN − RMS)".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("Pearson r (measured)", &r_sweep, LineStyle::Markers),
                    line("1/√(1+k²)", &r_pred, LineStyle::Dashed),
                    line("RMS gap (measured)", &gap_sweep, LineStyle::Markers),
                    line("√(2 − 2/√(1+k²))", &gap_pred, LineStyle::Dashed),
                ],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "LN(x) = RMS(x − mean(x))".to_owned(),
            x_label: "LayerNorm(x)".to_owned(),
            y_label: "RMSNorm(x − mean(x))".to_owned(),
            content: PanelContent::Scatter {
                series: vec![scatter(
                    "elements (subsample)",
                    &act.ln,
                    &rms_centered,
                    cfg.scatter_points,
                )],
                lines: vec![{
                    let (lo, hi) = min_max(act.ln.iter().copied());
                    segment("y = x", lo, lo, hi, hi)
                }],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
    ];

    Ok(StudyResult {
        id: ID.to_owned(),
        title: TITLE.to_owned(),
        explanation: vec![
            format!(
                "Both norms see the same {n} × {d} batch, shaped like real activations: each \
                 sample's mean is small against its spread (|mean|/std drawn uniformly up to {}). \
                 Both use eps = {}, weight 1 and no bias.",
                g(cfg.activation_ratio_max),
                g(cfg.eps)
            ),
            "Within one sample the RMSNorm output is an affine function of the LayerNorm output: \
             RMS(x) = c·LN(x) + b with b = mean/RMS. So LN(x) = RMS(x − mean(x)): the only \
             difference is the mean. Pooled over samples whose means differ, the correlation \
             drops as the means grow relative to the spread; with k = |mean|/std the closed \
             forms are r = 1/√(1+k²) and an RMS gap of √(2 − 2/√(1+k²)). The sweep uses \
             samples standardized so that k is exact, with mean signs alternating."
                .to_owned(),
            "RMSNorm skips the mean: one reduction over the row instead of two. The measured \
             time ratio of the two norm-core kernels is a wall-clock measurement and varies \
             from run to run."
                .to_owned(),
        ],
        figure: Figure {
            title: "LayerNorm vs RMSNorm: Same Input, Different Normalization".to_owned(),
            panels,
            columns: 2,
        },
        config: toml::Table::new(),
        findings,
        timings,
    })
}

/// Times the f32 kernels of norm-core on one large input: the best of `timing_reps`
/// interleaved runs each, into a preallocated output, on a one-thread rayon pool (so the
/// ratio compares kernels, not thread scheduling). Returns the ratio RMS/LN.
fn time_kernels(cfg: &Config, seed: u64) -> Result<crate::Finding, StudyError> {
    let (rows, d) = (cfg.timing_rows, cfg.timing_dim);
    // A separate stream, so the timing input never shifts the study's other draws.
    let mut rng = study_rng(seed, "layernorm-vs-rmsnorm/timing");
    let x: Vec<f32> = (0..rows * d).map(|_| normal(&mut rng) as f32).collect();
    let mut out = vec![0.0f32; x.len()];
    let ln = LayerNorm::<f32>::new(d)?.with_eps(cfg.eps as f32)?;
    let rms = RmsNorm::<f32>::new(d)?.with_eps(cfg.eps as f32)?;
    let measure = |out: &mut [f32]| -> Result<(f64, f64, usize), StudyError> {
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
        Ok((t_ln, t_rms, rayon::current_num_threads()))
    };
    // If a one-thread pool cannot be built, time on the current pool and say so.
    let (t_ln, t_rms, threads) = match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
        Ok(pool) => pool.install(|| measure(&mut out))?,
        Err(_) => measure(&mut out)?,
    };
    let ratio = t_rms / t_ln;
    let verdict = if ratio < 0.9 {
        "RMSNorm is faster"
    } else if ratio > 1.1 {
        "RMSNorm is slower"
    } else {
        "the two take about the same time"
    };
    let threads = if threads == 1 {
        "one thread".to_owned()
    } else {
        format!("{threads} threads")
    };
    Ok(finding(
        "rms_over_ln_time",
        ratio,
        "×",
        format!(
            "On one {rows} × {d} f32 input the norm-core RMSNorm kernel takes {}× the time of \
             the LayerNorm kernel (best of {} interleaved runs each, {threads}): {verdict}. \
             A wall-clock measurement; it varies between runs.",
            sig(ratio, 2),
            cfg.timing_reps
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape, statement, value};

    /// Asserts every claim for one config and seed. Closed forms hold up to eps effects
    /// of order eps/σ² (σ ≥ the smallest std) and f64 rounding (D·ε·|y|).
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let rounding = cfg.dim.max(cfg.sweep_dim) as f64 * f64::EPSILON * 10.0;
        let eps_effect = 10.0 * cfg.eps / (cfg.std_range.0 * cfg.std_range.0);

        // Activation-like input: |mean|/std ≤ 0.2 (+ sampling) keeps r ≥ 0.95.
        let r_act = value(&r, "pearson_r_activation_like");
        assert!((0.95..=1.0).contains(&r_act), "r = {r_act}");
        assert!(statement(&r, "pearson_r_activation_like").contains("highly correlated"));
        assert!(value(&r, "pearson_r_prediction_gap") < 1e-10);
        assert!(value(&r, "identity_max_diff") < rounding);

        // Means as large as the spread: r = 1/√2, and not called "highly".
        let k = cfg.contrast_ratio;
        let rc = value(&r, "pearson_r_contrast");
        assert!((rc - 1.0 / (1.0 + k * k).sqrt()).abs() < eps_effect, "r = {rc}");
        assert!(!statement(&r, "pearson_r_contrast").contains("highly"));

        // The sweep follows both closed forms; r falls and the gap grows with k.
        assert!(value(&r, "sweep_r_max_deviation") < eps_effect);
        assert!(value(&r, "sweep_gap_max_deviation") < eps_effect);
        let PanelContent::Lines { series, .. } = &r.figure.panels[2].content else {
            panic!("panel 2 is lines");
        };
        let (rs, gaps) = (&series[0].y, &series[2].y);
        assert!(rs.windows(2).all(|w| w[1] < w[0]), "r falls: {rs:?}");
        assert!(gaps.windows(2).all(|w| w[1] > w[0]), "gap grows: {gaps:?}");

        // The timing is kept apart and never serialized.
        assert_eq!(r.timings.len(), 1);
        assert!(r.timings[0].value.is_finite() && r.timings[0].value > 0.0);
        assert!(r.findings.iter().all(|f| f.name != "rms_over_ln_time"));
        let json = serde_json::to_string(&r).expect("serializes");
        assert!(!json.contains("rms_over_ln_time"));
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

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(run(&Config { samples: 0, ..c() }, 1), "samples");
        check_invalid(run(&Config { dim: 1, ..c() }, 1), "dim");
        check_invalid(run(&Config { sweep_dim: 0, ..c() }, 1), "sweep_dim");
        check_invalid(
            run(
                &Config {
                    sweep_samples: 1,
                    ..c()
                },
                1,
            ),
            "sweep_samples",
        );
        check_invalid(
            run(
                &Config {
                    sweep_ratios: vec![],
                    ..c()
                },
                1,
            ),
            "sweep_ratios",
        );
        check_invalid(
            run(
                &Config {
                    sweep_ratios: vec![0.5, -1.0],
                    ..c()
                },
                1,
            ),
            "sweep_ratios",
        );
        check_invalid(
            run(
                &Config {
                    timing_reps: 0,
                    ..c()
                },
                1,
            ),
            "timing_reps",
        );
        check_invalid(run(&Config { eps: -1e-5, ..c() }, 1), "eps");
        check_invalid(
            run(
                &Config {
                    contrast_ratio: f64::NAN,
                    ..c()
                },
                1,
            ),
            "contrast_ratio",
        );
    }
}
