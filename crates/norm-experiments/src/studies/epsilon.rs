//! Study 4 — the role of eps, on a near-constant f64 row (5.0 + N(0, (1e-8)²) noise, so
//! var(x) ≈ 1e-16). Without eps LayerNorm divides noise by its own tiny standard
//! deviation and blows it up to unit variance; as eps passes var(x) the output shrinks
//! to 0, following √(var/(var+eps)) and halving at eps = 3·var(x). RMSNorm is untouched
//! (it divides by the RMS ≈ 5, not by the spread). Also: eps = 0 on an exactly constant
//! row gives 0/0 = NaN; the same row stored in f32 *is* exactly constant (one f32 step at
//! 5 is 4.8e-7); and the one-pass variance `E[x²] − E[x]²` fails on this row where two
//! passes do not (both against the exact variance in double-double arithmetic).

use norm_core::{LayerNorm, RmsNorm};
use serde::Serialize;

use crate::common::{finding, normal, require_at_least, require_finite, require_positive, summary_finding};
use crate::dd::exact_variance;
use crate::format::{g, sig};
use crate::references::Reference;
use crate::result::{
    BarSeries, Figure, Finding, HistogramSeries, LineSeries, LineStyle, Panel, PanelContent, Scale,
};
use crate::stats::{histogram, linspace, logspace, max_abs, mean, min_max, std_dev};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "epsilon";

/// Configuration of the epsilon study.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Length of the row.
    pub dim: usize,
    /// The row's centre (5.0).
    pub center: f64,
    /// Standard deviation of the Gaussian noise around the centre (1e-8): each value is
    /// `center + noise · N(0, 1)`.
    pub noise: f64,
    /// Smallest non-zero eps of the sweep (eps = 0 is always included).
    pub eps_min: f64,
    /// Largest eps of the sweep.
    pub eps_max: f64,
    /// Sweep points per decade.
    pub per_decade: usize,
    /// A typical framework eps to report (PyTorch's LayerNorm default, 1e-5).
    pub framework_eps: f64,
    /// Features shown in the row and output-profile panels.
    pub shown_features: usize,
    /// Bins of the noise histogram.
    pub bins: usize,
    /// The non-zero eps values tried on the row stored in f32 (eps = 0 is always tried
    /// too); each must be a normal f32 (≥ 1.2e-38, ≤ 3.4e38).
    pub f32_eps: Vec<f64>,
}

impl Default for Config {
    /// The full-size study: a 1024-long row, eps from 1e-20 to 1e-1 at 4 per decade.
    fn default() -> Self {
        Self {
            dim: 1024,
            center: 5.0,
            noise: 1e-8,
            eps_min: 1e-20,
            eps_max: 1e-1,
            per_decade: 4,
            framework_eps: 1e-5,
            shown_features: 64,
            bins: 40,
            f32_eps: vec![1e-20, 1e-12, 1e-5],
        }
    }
}

impl StudyConfig for Config {
    /// A small config for tests: a 256-long row, 2 points per decade.
    fn small() -> Self {
        Self {
            dim: 256,
            per_decade: 2,
            shown_features: 16,
            bins: 16,
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for `dim < 2`, `per_decade`, `shown_features` or
    /// `bins` 0, a non-finite centre, a noise, `eps_min` or `framework_eps` not finite
    /// and > 0, `eps_max <= eps_min`, or an `f32_eps` entry that is not a normal f32.
    fn validate(&self) -> Result<(), StudyError> {
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 values")?;
        require_at_least(
            ID,
            "per_decade",
            self.per_decade,
            1,
            "need at least one point per decade",
        )?;
        require_at_least(
            ID,
            "shown_features",
            self.shown_features,
            1,
            "need at least one feature",
        )?;
        require_at_least(ID, "bins", self.bins, 1, "need at least one histogram bin")?;
        require_finite(ID, "center", self.center)?;
        require_positive(ID, "noise", self.noise)?;
        require_positive(ID, "eps_min", self.eps_min)?;
        require_positive(ID, "eps_max", self.eps_max)?;
        require_positive(ID, "framework_eps", self.framework_eps)?;
        if self.eps_max <= self.eps_min {
            return Err(StudyError::InvalidConfig {
                study: ID,
                field: "eps_max",
                value: format!("{} (eps_min = {})", self.eps_max, self.eps_min),
                reason: "must exceed eps_min",
            });
        }
        for &e in &self.f32_eps {
            if !(e >= f64::from(f32::MIN_POSITIVE) && e <= f64::from(f32::MAX)) {
                return Err(StudyError::InvalidConfig {
                    study: ID,
                    field: "f32_eps",
                    value: e.to_string(),
                    reason: "each must be a normal f32, in [1.2e-38, 3.4e38]",
                });
            }
        }
        Ok(())
    }
}

/// The study (registry type).
///
/// # Example
/// ```
/// use norm_experiments::{Study, StudyConfig};
/// use norm_experiments::studies::epsilon::{Config, Epsilon};
/// let m = Epsilon::measure(&Config::small(), 42)?;
/// assert!((m.eps_half / m.variance.exact - 3.0).abs() < 1e-6);
/// assert_eq!(m.f32_row.distinct_values, 1);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct Epsilon;

/// The variance of the row three ways, and exactly.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variances {
    /// Exact, in double-double arithmetic (the reference).
    pub exact: f64,
    /// One pass: `E[x²] − E[x]²`.
    pub one_pass: f64,
    /// Two passes: the mean, then the mean squared deviation.
    pub two_pass: f64,
    /// norm-core's LayerNorm kernel with eps = 0: `1/rstd²`.
    pub kernel: f64,
}

/// LayerNorm on an exactly constant row with one eps.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ConstantCase {
    /// The eps.
    pub eps: f64,
    /// Outputs that are NaN.
    pub nan_outputs: usize,
    /// Outputs that are exactly 0.
    pub zero_outputs: usize,
    /// Largest |output| over the non-NaN outputs (0 when there is none).
    pub max_abs_output: f64,
}

/// The same row stored in f32, normalized by norm-core's f32 LayerNorm.
#[derive(Debug, Clone, Serialize)]
pub struct F32Row {
    /// One f32 step (ulp) at the centre.
    pub step: f64,
    /// Distinct f32 values in the row.
    pub distinct_values: usize,
    /// Largest |x − centre| after rounding to f32.
    pub max_abs_deviation: f64,
    /// eps = 0, then each configured `f32_eps`.
    pub cases: Vec<ConstantCase>,
}

/// LayerNorm's output over the shown features for one eps.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// eps as a multiple of var(x) (0 for eps = 0).
    pub var_multiple: f64,
    /// The eps.
    pub eps: f64,
    /// The first `shown_features` outputs.
    pub output: Vec<f64>,
}

/// Everything the epsilon study measures.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Length of the row.
    pub dim: usize,
    /// The variance of the row, exact and three ways.
    pub variance: Variances,
    /// Population std of the row (two-pass).
    pub input_std: f64,
    /// Largest |x − centre| of the f64 row.
    pub max_abs_deviation: f64,
    /// Mean square `E[x²]`.
    pub mean_square: f64,
    /// The sweep's non-zero eps values.
    pub eps: Vec<f64>,
    /// LayerNorm output std at each eps.
    pub ln_std: Vec<f64>,
    /// `√(var/(var+eps))` at each eps.
    pub ln_std_pred: Vec<f64>,
    /// RMSNorm output std at each eps.
    pub rms_std: Vec<f64>,
    /// `σ/√(E[x²]+eps)` at each eps.
    pub rms_std_pred: Vec<f64>,
    /// Largest relative deviation of `ln_std` from `ln_std_pred`.
    pub ln_pred_max_rel_dev: f64,
    /// LayerNorm output std at eps = 0.
    pub ln_std_eps0: f64,
    /// RMSNorm output std at eps = 0.
    pub rms_std_eps0: f64,
    /// The eps at which LayerNorm's output std is 1/2 (bisection on the kernel; NaN if
    /// not bracketed).
    pub eps_half: f64,
    /// LayerNorm output std at the framework eps.
    pub framework_std: f64,
    /// An exactly constant f64 row with eps = 0 and the framework eps.
    pub constant_row: Vec<ConstantCase>,
    /// RMSNorm on the exactly constant row with eps = 0: NaN outputs.
    pub constant_row_rms_nan: usize,
    /// The row stored in f32.
    pub f32_row: F32Row,
    /// `x − centre` over the shown features, f64.
    pub shown_deviation: Vec<f64>,
    /// `x − centre` over the shown features after rounding to f32.
    pub shown_deviation_f32: Vec<f64>,
    /// LayerNorm output profiles at eps = 0, var, 10·var, 100·var.
    pub profiles: Vec<Profile>,
    /// Histogram of `x − centre`.
    pub noise_histogram: HistogramSeries,
    /// The N(0, noise²) density over the histogram's range, `(x, density)`.
    pub noise_density: (Vec<f64>, Vec<f64>),
}

impl Study for Epsilon {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Epsilon Effect";
    const SUMMARY: &'static str = "Too small eps can cause instability with near-constant inputs.";
    type Config = Config;
    type Measurements = Measurements;

    /// Measures the sweep, the constant rows (f64 and f32) and the variance formulas.
    ///
    /// ```text
    /// LN output std  = √(var / (var + eps))     → 1/2 at eps = 3·var
    /// RMS output std = σ / √(μ² + σ² + eps)
    /// ```
    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let mut rng = study_rng(seed, ID);
        let d = cfg.dim;
        let x: Vec<f64> = (0..d)
            .map(|_| cfg.center + cfg.noise * normal(&mut rng))
            .collect();
        let dev: Vec<f64> = x.iter().map(|v| v - cfg.center).collect();

        // Variance four ways.
        let var = exact_variance(&x);
        let (s1, s2) = x.iter().fold((0.0, 0.0), |(a, b), v| (a + v, b + v * v));
        let one_pass = s2 / d as f64 - (s1 / d as f64) * (s1 / d as f64);
        let mut y0 = vec![0.0; d];
        let (mut m0, mut rstd0) = ([0.0], [0.0]);
        LayerNorm::<f64>::new(d)?
            .with_eps(0.0)?
            .forward_slice_with_stats(&x, &mut y0, &mut m0, &mut rstd0)?;
        let variance = Variances {
            exact: var,
            one_pass,
            two_pass: crate::stats::variance(&x),
            kernel: 1.0 / (rstd0[0] * rstd0[0]),
        };

        // The sweep: eps = 0, then eps_min .. eps_max.
        let eps = logspace(cfg.eps_min, cfg.eps_max, cfg.per_decade);
        let ms = mean(&x.iter().map(|v| v * v).collect::<Vec<_>>());
        let (mut ln_std, mut rms_std) = (Vec::new(), Vec::new());
        for &e in &eps {
            ln_std.push(std_dev(&ln(&x, e)?));
            rms_std.push(std_dev(&rms(&x, e)?));
        }
        let ln_std_pred: Vec<f64> = eps.iter().map(|e| (var / (var + e)).sqrt()).collect();
        let rms_std_pred: Vec<f64> = eps.iter().map(|e| var.sqrt() / (ms + e).sqrt()).collect();
        let ln_pred_max_rel_dev = max_abs(ln_std.iter().zip(&ln_std_pred).map(|(a, b)| (a - b) / b));

        // Where LN's output std halves: bracket from the sweep (widened around var(x) when
        // the sweep does not straddle the crossing), check the bracket, refine by bisection.
        let below = ln_std.iter().position(|&s| s <= 0.5);
        let lo = match below {
            Some(i) if i > 0 => eps[i - 1],
            _ => var * 1e-6,
        };
        let hi = below.map_or(var * 1e6, |i| eps[i]);
        let eps_half = if std_dev(&ln(&x, lo)?) > 0.5 && std_dev(&ln(&x, hi)?) <= 0.5 {
            eps_at_std(&x, 0.5, lo, hi)?
        } else {
            f64::NAN
        };

        // An exactly constant row, f64.
        let constant = vec![cfg.center; d];
        let constant_row = vec![
            case(0.0, &ln(&constant, 0.0)?),
            case(cfg.framework_eps, &ln(&constant, cfg.framework_eps)?),
        ];
        let constant_row_rms_nan = rms(&constant, 0.0)?.iter().filter(|v| v.is_nan()).count();

        // The same noisy row stored in f32.
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut distinct: Vec<u32> = x32.iter().map(|v| v.to_bits()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let c32 = (cfg.center as f32).abs();
        let step = f64::from(f32::from_bits(c32.to_bits() + 1) - c32);
        let mut cases = Vec::with_capacity(cfg.f32_eps.len() + 1);
        for &e in std::iter::once(&0.0).chain(&cfg.f32_eps) {
            let y = ln32(&x32, e as f32)?;
            cases.push(case(e, &y.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()));
        }
        let f32_row = F32Row {
            step,
            distinct_values: distinct.len(),
            max_abs_deviation: max_abs(x32.iter().map(|&v| f64::from(v) - cfg.center)),
            cases,
        };

        // Figure data: the shown features, output profiles, the noise histogram.
        let k = cfg.shown_features.min(d);
        let mut profiles = Vec::new();
        for mult in [0.0, 1.0, 10.0, 100.0] {
            profiles.push(Profile {
                var_multiple: mult,
                eps: mult * var,
                output: ln(&x, mult * var)?[..k].to_vec(),
            });
        }
        let noise_histogram = histogram("x − centre (measured)", &dev, cfg.bins);
        let edges = &noise_histogram.edges;
        let dx = linspace(edges[0], edges[edges.len() - 1], 121);
        let dens = dx
            .iter()
            .map(|v| {
                let z = v / cfg.noise;
                (-0.5 * z * z).exp() / (cfg.noise * (2.0 * std::f64::consts::PI).sqrt())
            })
            .collect();

        Ok(Measurements {
            dim: d,
            variance,
            input_std: std_dev(&x),
            max_abs_deviation: max_abs(dev.iter().copied()),
            mean_square: ms,
            ln_std,
            ln_std_pred,
            rms_std,
            rms_std_pred,
            ln_pred_max_rel_dev,
            ln_std_eps0: std_dev(&y0),
            rms_std_eps0: std_dev(&rms(&x, 0.0)?),
            eps,
            eps_half,
            framework_std: std_dev(&ln(&x, cfg.framework_eps)?),
            constant_row,
            constant_row_rms_nan,
            f32_row,
            shown_deviation: dev[..k].to_vec(),
            shown_deviation_f32: x32[..k].iter().map(|&v| f64::from(v) - cfg.center).collect(),
            profiles,
            noise_histogram,
            noise_density: (dx, dens),
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let d = m.dim;
        let var = m.variance.exact;
        let rel = |v: f64| ((v - var) / var).abs();
        let amplification = m.ln_std_eps0 / m.input_std;
        let (rms_lo, rms_hi) = min_max(m.rms_std.iter().copied());
        let c0 = &m.constant_row[0];
        let c_fw = &m.constant_row[1];
        let f = &m.f32_row;
        let f0 = &f.cases[0];
        let positive = &f.cases[1..];
        let f32_eps_list = positive.iter().map(|c| g(c.eps)).collect::<Vec<_>>().join(", ");
        let (z_lo, _) = min_max(positive.iter().map(|c| c.zero_outputs as f64));
        let pos_max = max_abs(positive.iter().map(|c| c.max_abs_output));
        let pos_nan: usize = positive.iter().map(|c| c.nan_outputs).sum();
        vec![
            summary_finding(
                "eps0_noise_amplification",
                amplification,
                "×",
                format!(
                    "The row is {} plus N(0, ({})²) noise (values within ±{} of {}). With eps = \
                     0 LayerNorm divides that noise by its own standard deviation and blows it \
                     up {}× to unit output std ({}); only eps above var(x) = {} damps it.",
                    cfg.center,
                    g(cfg.noise),
                    g(m.max_abs_deviation),
                    cfg.center,
                    sig(amplification, 3),
                    sig(m.ln_std_eps0, 5),
                    g(var)
                ),
            )
            .labelled("Noise amplification by LayerNorm with eps = 0")
            .cite(&[Reference::Ba2016]),
            finding(
                "input_max_abs_deviation",
                m.max_abs_deviation,
                "",
                format!(
                    "The noise is Gaussian, not bounded by ±{}: over {d} draws of N(0, ({})²) \
                     the largest |x − {}| is {} ({} noise standard deviations); the row's std \
                     is {}.",
                    g(cfg.noise),
                    g(cfg.noise),
                    cfg.center,
                    sig(m.max_abs_deviation, 3),
                    sig(m.max_abs_deviation / cfg.noise, 3),
                    sig(m.input_std, 3)
                ),
            )
            .labelled("Largest |x − centre| in the f64 row"),
            finding(
                "eps_half",
                m.eps_half,
                "",
                format!(
                    "LayerNorm's output std falls to 1/2 at eps = {} (bisection on the kernel).",
                    sig(m.eps_half, 3)
                ),
            )
            .labelled("eps at which LayerNorm's output std halves"),
            finding(
                "eps_half_over_var",
                m.eps_half / var,
                "× var(x)",
                format!(
                    "That is {} × var(x): the turn sits at eps ≈ var(x), where √(var/(var+eps)) \
                     = 1/2 gives exactly 3·var.",
                    sig(m.eps_half / var, 4)
                ),
            )
            .labelled("That eps as a multiple of var(x)"),
            finding(
                "ln_std_prediction_max_rel_dev",
                m.ln_pred_max_rel_dev,
                "",
                format!(
                    "Over the whole sweep ({} to {}), LayerNorm's output std follows \
                     √(var/(var+eps)) within a relative {}.",
                    g(cfg.eps_min),
                    g(cfg.eps_max),
                    g(m.ln_pred_max_rel_dev)
                ),
            )
            .labelled("Largest deviation of LayerNorm's output std from √(var/(var+eps))"),
            finding(
                "ln_std_at_framework_eps",
                m.framework_std,
                "",
                format!(
                    "At eps = {}{} the output std of this row is {}: the noise is {}.",
                    g(cfg.framework_eps),
                    if cfg.framework_eps == 1e-5 {
                        " (PyTorch's LayerNorm default)"
                    } else {
                        ""
                    },
                    g(m.framework_std),
                    if m.framework_std < 0.5 {
                        "suppressed, not amplified"
                    } else {
                        "still amplified"
                    }
                ),
            )
            .labelled("LayerNorm output std at a framework eps"),
            finding(
                "rms_std_range",
                rms_hi / rms_lo,
                "max/min",
                format!(
                    "RMSNorm divides by the RMS (≈ {}), not by the spread: its output std stays \
                     between {} and {} over the whole sweep (eps = 0 gives {}; σ/RMS = {}).",
                    sig(m.mean_square.sqrt(), 3),
                    sig(rms_lo, 4),
                    sig(rms_hi, 4),
                    sig(m.rms_std_eps0, 4),
                    sig(m.input_std / m.mean_square.sqrt(), 4)
                ),
            )
            .labelled("RMSNorm output std, max/min over the eps sweep")
            .cite(&[Reference::ZhangSennrich2019]),
            finding(
                "constant_row_eps0_nan_outputs",
                c0.nan_outputs as f64,
                "outputs",
                format!(
                    "An exactly constant f64 row with eps = 0 gives 0/0: {} of {d} LayerNorm \
                     outputs are NaN. With eps = {}, {} of {d} outputs are exactly 0 (largest \
                     |y| = {}). RMSNorm on the same row with eps = 0 gives {} NaN (it divides \
                     by the RMS).",
                    c0.nan_outputs,
                    g(c_fw.eps),
                    c_fw.zero_outputs,
                    g(c_fw.max_abs_output),
                    m.constant_row_rms_nan
                ),
            )
            .labelled("NaN outputs of LayerNorm on a constant row with eps = 0"),
            finding(
                "f32_row_max_abs_deviation",
                f.max_abs_deviation,
                "",
                if f.distinct_values == 1 {
                    format!(
                        "Stored in f32, the same row is exactly constant: one f32 step at {} is \
                         {}, more than twice the largest |x − {}| ({}), so all {d} values round \
                         to {} (largest |x − {}| in f32: {}).",
                        cfg.center,
                        sig(f.step, 2),
                        cfg.center,
                        g(m.max_abs_deviation),
                        cfg.center as f32,
                        cfg.center,
                        g(f.max_abs_deviation)
                    )
                } else {
                    format!(
                        "Stored in f32 (one step at {} is {}), the row keeps {} distinct values; \
                         the largest |x − {}| is {}.",
                        cfg.center,
                        sig(f.step, 2),
                        f.distinct_values,
                        cfg.center,
                        g(f.max_abs_deviation)
                    )
                },
            )
            .labelled("Largest |x − centre| after rounding the row to f32"),
            finding(
                "f32_eps0_nan_outputs",
                f0.nan_outputs as f64,
                "outputs",
                format!(
                    "norm-core's f32 LayerNorm on the f32 row: eps = 0 gives {} of {d} outputs \
                     NaN{}; eps = {} give {} (at least {} of {d} outputs exactly 0, largest |y| \
                     = {}, {} NaN).",
                    f0.nan_outputs,
                    if f0.nan_outputs == d { " (0/0)" } else { "" },
                    f32_eps_list,
                    if pos_max == 0.0 && pos_nan == 0 {
                        "exact zeros"
                    } else {
                        "finite outputs"
                    },
                    z_lo,
                    g(pos_max),
                    pos_nan
                ),
            )
            .labelled("NaN outputs of f32 LayerNorm on the f32 row with eps = 0"),
            finding(
                "one_pass_variance_rel_error",
                rel(m.variance.one_pass),
                "relative error",
                format!(
                    "The one-pass formula E[x²] − E[x]² gives {} for a variance of {} (exact, \
                     in double-double): relative error {}{}.",
                    g(m.variance.one_pass),
                    sig(var, 4),
                    g(rel(m.variance.one_pass)),
                    if m.variance.one_pass < 0.0 {
                        ", and negative"
                    } else {
                        ""
                    }
                ),
            )
            .labelled("Relative error of the one-pass variance"),
            finding(
                "two_pass_variance_rel_error",
                rel(m.variance.two_pass),
                "relative error",
                format!(
                    "Two passes (mean, then squared deviations) give a relative error of {}; \
                     norm-core's kernel (shifted two-pass) {}.",
                    rel_text(rel(m.variance.two_pass)),
                    rel_text(rel(m.variance.kernel))
                ),
            )
            .labelled("Relative error of the two-pass variance"),
        ]
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        vec![
            format!(
                "One f64 row of {} values, each {} + {}·N(0, 1): Gaussian noise of std {} (so \
                 values reach ±{}, not ±{} at most), almost constant. LayerNorm divides x − mean \
                 by √(var + eps); for this row var is about {}² and the sweep runs eps from 0 \
                 and {} up to {}.",
                m.dim,
                cfg.center,
                g(cfg.noise),
                g(cfg.noise),
                g(m.max_abs_deviation),
                g(cfg.noise),
                g(cfg.noise),
                g(cfg.eps_min),
                g(cfg.eps_max)
            ),
            "With eps far below var(x) the noise is divided by its own size and comes out with \
             unit variance: LayerNorm turns rounding-level jitter into full-scale signal. Once \
             eps exceeds var(x) the output shrinks like √(var/eps). The measured curve follows \
             √(var/(var+eps)), which halves at eps = 3·var(x). RMSNorm divides by the RMS (about \
             the centre), so on this row it never amplifies the noise."
                .to_owned(),
            format!(
                "eps also guards an exactly constant row, where eps = 0 gives 0/0. In f32 this \
                 row is one: a step of f32 at {} is {}, so every value rounds to the same number \
                 and LayerNorm with eps = 0 returns NaN, while any eps > 0 returns exact zeros.",
                cfg.center,
                sig(m.f32_row.step, 2)
            ),
            "The variance itself must be computed with care: the one-pass formula E[x²] − E[x]² \
             subtracts two numbers near 25 to get one near 1e-16 and loses every digit, while two \
             passes keep them. The reference is the exact variance, computed in double-double \
             arithmetic."
                .to_owned(),
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "(a): the output's standard deviation as eps grows, measured (markers) beside the \
         closed forms (lines); the line labelled eps = var(x) marks where damping starts. (b) \
         and (d) show the row itself: noise of order 1e-8 around 5, and the same row rounded \
         to f32. (c): the row normalized with several eps; with eps = 0 the noise comes out at \
         unit size. (e) counts the correct digits of the row's variance computed in one pass \
         and in two; (f) shows what a constant row gives with eps = 0 and with eps > 0."
            .to_owned()
    }

    fn figure(cfg: &Config, m: &Measurements) -> Figure {
        let var = m.variance.exact;
        let y_all = m.ln_std.iter().chain(&m.rms_std).copied().filter(|v| *v > 0.0);
        let (y_lo, y_hi) = min_max(y_all);
        let line = |label: &str, y: &[f64], style| LineSeries {
            label: label.to_owned(),
            x: m.eps.clone(),
            y: y.to_vec(),
            style,
        };
        let idx: Vec<f64> = (0..m.shown_deviation.len()).map(|i| i as f64).collect();
        let profile = m
            .profiles
            .iter()
            .map(|p| LineSeries {
                label: if p.var_multiple == 0.0 {
                    "eps = 0".to_owned()
                } else if p.var_multiple == 1.0 {
                    format!("eps = {} ≈ var(x)", g(p.eps))
                } else {
                    format!("eps = {} ≈ {}·var(x)", g(p.eps), p.var_multiple)
                },
                x: idx.clone(),
                y: p.output.clone(),
                style: LineStyle::Markers,
            })
            .collect();
        let v = &m.variance;
        let method = |name: &str, value: f64| {
            format!(
                "{name}: {} ({} digits)",
                sig(value, 3),
                sig(digits(value, var), 2)
            )
        };
        let mut cases = Vec::new();
        for c in &m.constant_row {
            cases.push((format!("f64 constant, eps = {}", g(c.eps)), c));
        }
        for c in &m.f32_row.cases {
            cases.push((format!("f32 row, eps = {}", g(c.eps)), c));
        }
        let panels = vec![
            Panel {
                title: "Output Std vs eps".to_owned(),
                x_label: "eps".to_owned(),
                y_label: "standard deviation of the output row".to_owned(),
                content: PanelContent::Lines {
                    series: vec![
                        line("LayerNorm (measured)", &m.ln_std, LineStyle::Markers),
                        line("√(var/(var+eps))", &m.ln_std_pred, LineStyle::Dashed),
                        line("RMSNorm (measured)", &m.rms_std, LineStyle::Markers),
                        line("σ/√(μ²+σ²+eps)", &m.rms_std_pred, LineStyle::Dashed),
                        LineSeries {
                            label: "eps = var(x)".to_owned(),
                            x: vec![var, var],
                            y: vec![y_lo, y_hi],
                            style: LineStyle::Dashed,
                        },
                    ],
                    x_scale: Scale::Log,
                    y_scale: Scale::Log,
                },
            },
            Panel {
                title: format!(
                    "The Input Row: {} + N(0, ({})²), in f64 and in f32",
                    cfg.center,
                    g(cfg.noise)
                ),
                x_label: "feature index".to_owned(),
                y_label: format!("x − {}", cfg.center),
                content: PanelContent::Lines {
                    series: vec![
                        LineSeries {
                            label: "f64 row".to_owned(),
                            x: idx.clone(),
                            y: m.shown_deviation.clone(),
                            style: LineStyle::Markers,
                        },
                        LineSeries {
                            label: format!(
                                "same row in f32 (max |x − {}| = {})",
                                cfg.center,
                                g(m.f32_row.max_abs_deviation)
                            ),
                            x: idx.clone(),
                            y: m.shown_deviation_f32.clone(),
                            style: LineStyle::Solid,
                        },
                    ],
                    x_scale: Scale::Linear,
                    y_scale: Scale::Linear,
                },
            },
            Panel {
                title: "LayerNorm Output for Several eps".to_owned(),
                x_label: "feature index".to_owned(),
                y_label: "LayerNorm output".to_owned(),
                content: PanelContent::Lines {
                    series: profile,
                    x_scale: Scale::Linear,
                    y_scale: Scale::Linear,
                },
            },
            Panel {
                title: format!(
                    "The Noise: {} Values, max |x − {}| = {}",
                    m.dim,
                    cfg.center,
                    sig(m.max_abs_deviation, 2)
                ),
                x_label: format!("x − {}", cfg.center),
                y_label: "density".to_owned(),
                content: PanelContent::Histogram {
                    series: vec![m.noise_histogram.clone()],
                    overlays: vec![LineSeries {
                        label: format!("N(0, ({})²) density", g(cfg.noise)),
                        x: m.noise_density.0.clone(),
                        y: m.noise_density.1.clone(),
                        style: LineStyle::Dashed,
                    }],
                },
            },
            Panel {
                title: "Variance of the Row: One Pass vs Two Passes".to_owned(),
                x_label: format!("method: variance it gives (exact {})", sig(var, 3)),
                y_label: "correct significant digits (−log10 rel. error, max 16)".to_owned(),
                content: PanelContent::Bars {
                    categories: vec![
                        method("one pass E[x²] − E[x]²", v.one_pass),
                        method("two passes", v.two_pass),
                        method("norm-core kernel", v.kernel),
                    ],
                    series: vec![BarSeries {
                        label: "correct digits vs exact variance".to_owned(),
                        values: vec![
                            digits(v.one_pass, var),
                            digits(v.two_pass, var),
                            digits(v.kernel, var),
                        ],
                    }],
                    y_scale: Scale::Linear,
                },
            },
            Panel {
                title: "Constant Rows: eps = 0 Gives 0/0".to_owned(),
                x_label: "row and eps".to_owned(),
                y_label: format!("LayerNorm outputs (of {})", m.dim),
                content: PanelContent::Bars {
                    categories: cases.iter().map(|(label, _)| label.clone()).collect(),
                    series: vec![
                        BarSeries {
                            label: "NaN".to_owned(),
                            values: cases.iter().map(|(_, c)| c.nan_outputs as f64).collect(),
                        },
                        BarSeries {
                            label: "exactly 0".to_owned(),
                            values: cases.iter().map(|(_, c)| c.zero_outputs as f64).collect(),
                        },
                    ],
                    y_scale: Scale::Linear,
                },
            },
        ];
        Figure {
            title: format!(
                "Effect of Epsilon on Near-Constant Input (all values ~ {} + N(0, ({})²))",
                cfg.center,
                g(cfg.noise)
            ),
            panels,
            columns: 2,
        }
    }
}

/// LayerNorm of `x` with `eps` (weight 1, bias 0).
fn ln(x: &[f64], eps: f64) -> Result<Vec<f64>, StudyError> {
    let mut y = vec![0.0; x.len()];
    LayerNorm::<f64>::new(x.len())?
        .with_eps(eps)?
        .forward_slice(x, &mut y)?;
    Ok(y)
}

/// norm-core's f32 LayerNorm of `x` with `eps` (weight 1, bias 0).
fn ln32(x: &[f32], eps: f32) -> Result<Vec<f32>, StudyError> {
    let mut y = vec![0.0; x.len()];
    LayerNorm::<f32>::new(x.len())?
        .with_eps(eps)?
        .forward_slice(x, &mut y)?;
    Ok(y)
}

/// RMSNorm of `x` with `eps` (weight 1).
fn rms(x: &[f64], eps: f64) -> Result<Vec<f64>, StudyError> {
    let mut y = vec![0.0; x.len()];
    RmsNorm::<f64>::new(x.len())?
        .with_eps(eps)?
        .forward_slice(x, &mut y)?;
    Ok(y)
}

/// Counts NaN and exactly-zero outputs of one LayerNorm call.
fn case(eps: f64, y: &[f64]) -> ConstantCase {
    ConstantCase {
        eps,
        nan_outputs: y.iter().filter(|v| v.is_nan()).count(),
        zero_outputs: y.iter().filter(|&&v| v == 0.0).count(),
        max_abs_output: max_abs(y.iter().copied()),
    }
}

/// The eps at which LayerNorm's output std crosses `target`, by bisection in log10(eps)
/// between `lo` (std above target) and `hi` (std below), using the kernel itself.
fn eps_at_std(x: &[f64], target: f64, mut lo: f64, mut hi: f64) -> Result<f64, StudyError> {
    for _ in 0..80 {
        let mid = (lo.log10() + hi.log10()) / 2.0;
        let e = 10f64.powf(mid);
        if std_dev(&ln(x, e)?) > target {
            lo = e;
        } else {
            hi = e;
        }
    }
    Ok((lo * hi).sqrt())
}

/// Correct significant digits of `est` against `exact`: −log10(relative error),
/// clamped to [0, 16] (16 for an exact result).
fn digits(est: f64, exact: f64) -> f64 {
    let rel = ((est - exact) / exact).abs();
    if rel == 0.0 {
        16.0
    } else if rel.is_nan() {
        0.0
    } else {
        (-rel.log10()).clamp(0.0, 16.0)
    }
}

/// A relative error for a statement: `0 (exact)` or two significant digits.
fn rel_text(r: f64) -> String {
    if r == 0.0 { "0 (exact)".to_owned() } else { g(r) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};

    /// Asserts every claim for one config and seed against the closed forms.
    fn check(cfg: &Config, seed: u64) -> Measurements {
        check_shape(&Epsilon::run(cfg, seed).expect("runs"), ID);
        let m = Epsilon::measure(cfg, seed).expect("measures");
        let var = m.variance.exact;
        // √(var/(var+eps)) = 1/2  ⇔  eps = 3·var: the bisection lands there.
        assert!(
            (m.eps_half / var - 3.0).abs() < 1e-6,
            "ratio {}",
            m.eps_half / var
        );
        assert!(m.ln_pred_max_rel_dev < 1e-9);
        // eps = 0 blows the noise up to unit std: output std 1, amplification 1/std(x).
        assert!((m.ln_std_eps0 - 1.0).abs() < 1e-6, "{}", m.ln_std_eps0);
        let amp = m.ln_std_eps0 / m.input_std;
        assert!(amp > 0.1 / cfg.noise && amp < 10.0 / cfg.noise, "{amp:e}");
        // Gaussian noise: the largest |x − c| over d draws is a few noise stds, more than
        // one (P(all d within 1σ) = 0.68^d) and at most ~6 (P ≈ d·2e-9).
        let k = m.max_abs_deviation / cfg.noise;
        assert!(k > 1.0 && k < 6.0, "max |x − c| = {k} σ");
        // At a framework eps ≫ var: std ≈ √(var/eps), tiny.
        let pred = (var / (var + cfg.framework_eps)).sqrt();
        assert!(((m.framework_std - pred) / pred).abs() < 1e-6);
        // RMSNorm: std ratio over the sweep is √((ms + eps_max)/(ms + eps_min)), ms ≈ c².
        let (lo, hi) = min_max(m.rms_std.iter().copied());
        let ms = cfg.center * cfg.center;
        assert!((hi / lo - ((ms + cfg.eps_max) / (ms + cfg.eps_min)).sqrt()).abs() < 1e-6);
        // A constant row with eps = 0: every LayerNorm output NaN; with eps > 0 all 0.
        assert_eq!(m.constant_row[0].nan_outputs, cfg.dim);
        assert_eq!(m.constant_row[1].zero_outputs, cfg.dim);
        assert_eq!(m.constant_row_rms_nan, 0);
        // One pass loses the variance (relative error ≥ 10%); two passes keep it.
        assert!(((m.variance.one_pass - var) / var).abs() > 0.1);
        assert!(((m.variance.two_pass - var) / var).abs() < 1e-12);
        assert!(((m.variance.kernel - var) / var).abs() < 1e-12);
        m
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
        check(
            &Config {
                center: -300.0,
                noise: 1e-6,
                ..Config::small()
            },
            9,
        );
    }

    /// In f32 the default row is exactly constant (ulp(5) = 2^-21 = 4.77e-7 ≫ 2·3e-8):
    /// eps = 0 gives 0/0 everywhere, every eps > 0 exact zeros.
    #[test]
    fn f32_row_is_constant() {
        let cfg = Config::small();
        let m = check(&cfg, 42);
        let f = &m.f32_row;
        assert_eq!(f.step, 2f64.powi(-21));
        assert_eq!(f.distinct_values, 1);
        assert_eq!(f.max_abs_deviation, 0.0);
        assert_eq!(f.cases.len(), cfg.f32_eps.len() + 1);
        assert_eq!((f.cases[0].eps, f.cases[0].nan_outputs), (0.0, cfg.dim));
        for c in &f.cases[1..] {
            assert_eq!((c.nan_outputs, c.zero_outputs), (0, cfg.dim), "eps {}", c.eps);
        }
        // A noise far above one f32 step keeps the row varied: many distinct values, and
        // LayerNorm with eps = 0 is finite.
        let m = Epsilon::measure(&Config { noise: 1e-3, ..cfg }, 42).expect("measures");
        assert!(m.f32_row.distinct_values > cfg.dim / 2);
        assert_eq!(m.f32_row.cases[0].nan_outputs, 0);
    }

    #[test]
    fn zero_digit_bar_names_its_value() {
        let cfg = Config::small();
        let m = Epsilon::measure(&cfg, 42).expect("measures");
        let fig = Epsilon::figure(&cfg, &m);
        let bars = fig
            .panels
            .iter()
            .find_map(|p| match &p.content {
                PanelContent::Bars {
                    categories, series, ..
                } if p.title.contains("One Pass") => Some((categories, series)),
                _ => None,
            })
            .expect("variance panel");
        assert_eq!(bars.1[0].values[0], digits(m.variance.one_pass, m.variance.exact));
        assert!(bars.0[0].contains(&sig(m.variance.one_pass, 3)), "{}", bars.0[0]);
        assert_eq!(fig.panels.len() % fig.columns, 0, "no empty panel slot");
    }

    #[test]
    fn digits_are_clamped() {
        assert_eq!(digits(1.0, 1.0), 16.0);
        assert_eq!(digits(2.0, 1.0), 0.0);
        assert!((digits(1.0 + 1e-6, 1.0) - 6.0).abs() < 1e-6);
        assert_eq!(digits(f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| Epsilon::run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| Epsilon::run(&cfg, 1);
        check_invalid(run(Config { dim: 1, ..c() }), "dim");
        check_invalid(run(Config { per_decade: 0, ..c() }), "per_decade");
        check_invalid(
            run(Config {
                shown_features: 0,
                ..c()
            }),
            "shown_features",
        );
        check_invalid(run(Config { bins: 0, ..c() }), "bins");
        check_invalid(run(Config { noise: 0.0, ..c() }), "noise");
        check_invalid(
            run(Config {
                eps_min: -1e-20,
                ..c()
            }),
            "eps_min",
        );
        check_invalid(
            run(Config {
                eps_max: 1e-30,
                ..c()
            }),
            "eps_max",
        );
        check_invalid(
            run(Config {
                center: f64::INFINITY,
                ..c()
            }),
            "center",
        );
        check_invalid(
            run(Config {
                framework_eps: -1.0,
                ..c()
            }),
            "framework_eps",
        );
        check_invalid(
            run(Config {
                f32_eps: vec![1e-5, 1e-50],
                ..c()
            }),
            "f32_eps",
        );
        check_invalid(
            run(Config {
                f32_eps: vec![0.0],
                ..c()
            }),
            "f32_eps",
        );
    }
}
