//! Study 4 — the role of eps, on a near-constant f64 row (every value 5.0 ± 1e-8, so
//! var(x) ≈ 1e-16). Without eps LayerNorm divides noise by its own tiny standard
//! deviation and blows it up to unit variance; as eps passes var(x) the output shrinks
//! to 0, following √(var/(var+eps)) and halving at eps = 3·var(x). RMSNorm is untouched
//! (it divides by the RMS ≈ 5, not by the spread). Also: eps = 0 on an exactly constant
//! row gives 0/0 = NaN, and the one-pass variance `E[x²] − E[x]²` fails on this row where
//! two passes do not (both against the exact variance in double-double arithmetic).

use norm_core::{LayerNorm, RmsNorm};

use crate::common::{
    finding, normal, require_at_least, require_finite, require_positive, summary_finding,
};
use crate::dd::exact_variance;
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{BarSeries, Figure, LineSeries, LineStyle, Panel, PanelContent, Scale};
use crate::stats::{logspace, max_abs, mean, min_max, std_dev, variance};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "epsilon";
/// Title.
pub const TITLE: &str = "Epsilon Effect";
/// The seed document's summary line.
pub const SUMMARY: &str = "Too small eps can cause instability with near-constant inputs.";

/// Configuration of the epsilon study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Length of the row.
    pub dim: usize,
    /// The row's centre (5.0).
    pub center: f64,
    /// Standard deviation of the noise around the centre (1e-8).
    pub noise: f64,
    /// Smallest non-zero eps of the sweep (eps = 0 is always included).
    pub eps_min: f64,
    /// Largest eps of the sweep.
    pub eps_max: f64,
    /// Sweep points per decade.
    pub per_decade: usize,
    /// A typical framework eps to report (PyTorch's LayerNorm default, 1e-5).
    pub framework_eps: f64,
    /// Features shown in the output-profile panel.
    pub shown_features: usize,
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
        }
    }
}

impl Config {
    /// A small config for tests: a 256-long row, 2 points per decade.
    pub fn small() -> Self {
        Self {
            dim: 256,
            per_decade: 2,
            shown_features: 16,
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for `dim < 2`, `per_decade` or `shown_features` 0,
    /// a non-finite centre, a noise, `eps_min` or `framework_eps` not finite and > 0,
    /// or `eps_max <= eps_min`.
    pub fn validate(&self) -> Result<(), StudyError> {
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
        Ok(())
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
pub struct Epsilon;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for Epsilon {
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

/// LayerNorm of `x` with `eps` (weight 1, bias 0).
fn ln(x: &[f64], eps: f64) -> Result<Vec<f64>, StudyError> {
    let mut y = vec![0.0; x.len()];
    LayerNorm::<f64>::new(x.len())?
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

/// Runs the study.
///
/// ```text
/// LN output std  = √(var / (var + eps))     → 1/2 at eps = 3·var
/// RMS output std = σ / √(μ² + σ² + eps)
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`].
///
/// # Example
/// ```
/// use norm_experiments::studies::epsilon::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// let f = r.findings.iter().find(|f| f.name == "eps_half_over_var").unwrap();
/// assert!((f.value - 3.0).abs() < 0.05);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let mut rng = study_rng(seed, ID);
    let d = cfg.dim;
    let x: Vec<f64> = (0..d)
        .map(|_| cfg.center + cfg.noise * normal(&mut rng))
        .collect();

    // Variance four ways.
    let var = exact_variance(&x);
    let sigma = var.sqrt();
    let (s1, s2) = x.iter().fold((0.0, 0.0), |(a, b), v| (a + v, b + v * v));
    let one_pass = s2 / d as f64 - (s1 / d as f64) * (s1 / d as f64);
    let two_pass = variance(&x);
    let mut y0 = vec![0.0; d];
    let (mut m0, mut rstd0) = ([0.0], [0.0]);
    LayerNorm::<f64>::new(d)?
        .with_eps(0.0)?
        .forward_slice_with_stats(&x, &mut y0, &mut m0, &mut rstd0)?;
    let kernel_var = 1.0 / (rstd0[0] * rstd0[0]);
    let rel = |v: f64| ((v - var) / var).abs();

    // The sweep: eps = 0, then eps_min .. eps_max.
    let eps_grid = logspace(cfg.eps_min, cfg.eps_max, cfg.per_decade);
    let ms = mean(&x.iter().map(|v| v * v).collect::<Vec<_>>());
    let ln_std0 = std_dev(&y0);
    let rms_std0 = std_dev(&rms(&x, 0.0)?);
    let (mut ln_std, mut rms_std) = (Vec::new(), Vec::new());
    for &e in &eps_grid {
        ln_std.push(std_dev(&ln(&x, e)?));
        rms_std.push(std_dev(&rms(&x, e)?));
    }
    let ln_pred: Vec<f64> = eps_grid.iter().map(|e| (var / (var + e)).sqrt()).collect();
    let rms_pred: Vec<f64> = eps_grid.iter().map(|e| sigma / (ms + e).sqrt()).collect();
    let ln_dev = max_abs(ln_std.iter().zip(&ln_pred).map(|(a, b)| (a - b) / b));
    let (rms_lo, rms_hi) = min_max(rms_std.iter().copied());

    // Where LN's output std halves: bracket from the sweep (widened around var(x) when
    // the sweep does not straddle the crossing), check the bracket, refine by bisection.
    let below = ln_std.iter().position(|&s| s <= 0.5);
    let lo = match below {
        Some(i) if i > 0 => eps_grid[i - 1],
        _ => var * 1e-6,
    };
    let hi = below.map_or(var * 1e6, |i| eps_grid[i]);
    let eps_half = if std_dev(&ln(&x, lo)?) > 0.5 && std_dev(&ln(&x, hi)?) <= 0.5 {
        eps_at_std(&x, 0.5, lo, hi)?
    } else {
        f64::NAN
    };
    let framework_std = std_dev(&ln(&x, cfg.framework_eps)?);

    // An exactly constant row.
    let constant = vec![cfg.center; d];
    let c0 = ln(&constant, 0.0)?;
    let nan_count = c0.iter().filter(|v| v.is_nan()).count();
    let c_fw = ln(&constant, cfg.framework_eps)?;
    let c_fw_max = max_abs(c_fw.iter().copied());
    let c_rms0 = rms(&constant, 0.0)?;
    let rms_const_nan = c_rms0.iter().filter(|v| v.is_nan()).count();

    let amplification = ln_std0 / std_dev(&x);
    let findings = vec![
        summary_finding(
            "eps0_noise_amplification",
            amplification,
            "×",
            format!(
                "With eps = 0 LayerNorm divides the ±{} noise by its own standard deviation and \
                 blows it up {}× to unit output std ({}); only eps above var(x) = {} damps it.",
                g(cfg.noise),
                sig(amplification, 3),
                sig(ln_std0, 5),
                g(var)
            ),
        ),
        finding(
            "eps_half",
            eps_half,
            "",
            format!(
                "LayerNorm's output std falls to 1/2 at eps = {} (bisection on the kernel).",
                sig(eps_half, 3)
            ),
        ),
        finding(
            "eps_half_over_var",
            eps_half / var,
            "× var(x)",
            format!(
                "That is {} × var(x): the turn sits at eps ≈ var(x), where √(var/(var+eps)) = 1/2 \
                 gives exactly 3·var.",
                sig(eps_half / var, 4)
            ),
        ),
        finding(
            "ln_std_prediction_max_rel_dev",
            ln_dev,
            "",
            format!(
                "Over the whole sweep ({} to {}), LayerNorm's output std follows √(var/(var+eps)) \
                 within a relative {}.",
                g(cfg.eps_min),
                g(cfg.eps_max),
                g(ln_dev)
            ),
        ),
        finding(
            "ln_std_at_framework_eps",
            framework_std,
            "",
            format!(
                "At eps = {}{} the output std of this row is {}: the noise is {}.",
                g(cfg.framework_eps),
                if cfg.framework_eps == 1e-5 {
                    " (PyTorch's LayerNorm default)"
                } else {
                    ""
                },
                g(framework_std),
                if framework_std < 0.5 {
                    "suppressed, not amplified"
                } else {
                    "still amplified"
                }
            ),
        ),
        finding(
            "rms_std_range",
            rms_hi / rms_lo,
            "max/min",
            format!(
                "RMSNorm divides by the RMS (≈ {}), not by the spread: its output std stays \
                 between {} and {} over the whole sweep (eps = 0 gives {}; σ/RMS = {}).",
                sig(ms.sqrt(), 3),
                sig(rms_lo, 4),
                sig(rms_hi, 4),
                sig(rms_std0, 4),
                sig(sigma / ms.sqrt(), 4)
            ),
        ),
        finding(
            "constant_row_eps0_nan_outputs",
            nan_count as f64,
            "outputs",
            format!(
                "An exactly constant row with eps = 0 gives 0/0: {nan_count} of {d} LayerNorm \
                 outputs are NaN. With eps = {} every output is 0 (largest |y| = {}). RMSNorm \
                 on the same row with eps = 0 gives {rms_const_nan} NaN (it divides by the RMS).",
                g(cfg.framework_eps),
                g(c_fw_max)
            ),
        ),
        finding(
            "one_pass_variance_rel_error",
            rel(one_pass),
            "relative error",
            format!(
                "The one-pass formula E[x²] − E[x]² gives {} for a variance of {} (exact, in \
                 double-double): relative error {}{}.",
                g(one_pass),
                sig(var, 4),
                g(rel(one_pass)),
                if one_pass < 0.0 { ", and negative" } else { "" }
            ),
        ),
        finding(
            "two_pass_variance_rel_error",
            rel(two_pass),
            "relative error",
            format!(
                "Two passes (mean, then squared deviations) give a relative error of {}; \
                 norm-core's kernel (shifted two-pass) {}.",
                rel_text(rel(two_pass)),
                rel_text(rel(kernel_var))
            ),
        ),
    ];

    // Figure data.
    let y_all = ln_std.iter().chain(&rms_std).copied().filter(|v| *v > 0.0);
    let (y_lo, y_hi) = min_max(y_all);
    let line = |label: &str, y: Vec<f64>, style| LineSeries {
        label: label.to_owned(),
        x: eps_grid.clone(),
        y,
        style,
    };
    let k = cfg.shown_features.min(d);
    let idx: Vec<f64> = (0..k).map(|i| i as f64).collect();
    let mut profile = Vec::new();
    for (label, e) in [
        ("eps = 0".to_owned(), 0.0),
        (format!("eps = {} ≈ var(x)", g(var)), var),
        (format!("eps = {} ≈ 10·var(x)", g(10.0 * var)), 10.0 * var),
        (format!("eps = {} ≈ 100·var(x)", g(100.0 * var)), 100.0 * var),
    ] {
        let y = ln(&x, e)?;
        profile.push(LineSeries {
            label,
            x: idx.clone(),
            y: y[..k].to_vec(),
            style: LineStyle::Markers,
        });
    }
    let panels = vec![
        Panel {
            title: "Output Std vs eps".to_owned(),
            x_label: "eps".to_owned(),
            y_label: "standard deviation of the output row".to_owned(),
            content: PanelContent::Lines {
                series: vec![
                    line("LayerNorm (measured)", ln_std.clone(), LineStyle::Markers),
                    line("√(var/(var+eps))", ln_pred, LineStyle::Dashed),
                    line("RMSNorm (measured)", rms_std.clone(), LineStyle::Markers),
                    line("σ/√(μ²+σ²+eps)", rms_pred, LineStyle::Dashed),
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
            title: format!("The Input Row: {} ± {}", cfg.center, g(cfg.noise)),
            x_label: "feature index".to_owned(),
            y_label: format!("x − {}", cfg.center),
            content: PanelContent::Lines {
                series: vec![LineSeries {
                    label: "input".to_owned(),
                    x: idx.clone(),
                    y: x[..k].iter().map(|v| v - cfg.center).collect(),
                    style: LineStyle::Markers,
                }],
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
            title: "Variance of the Row: One Pass vs Two Passes".to_owned(),
            x_label: "method".to_owned(),
            y_label: "correct significant digits (−log10 rel. error, max 16)".to_owned(),
            content: PanelContent::Bars {
                categories: vec![
                    "one pass: E[x²] − E[x]²".to_owned(),
                    "two passes".to_owned(),
                    "norm-core kernel".to_owned(),
                ],
                series: vec![BarSeries {
                    label: "correct digits vs exact variance".to_owned(),
                    values: vec![
                        digits(one_pass, var),
                        digits(two_pass, var),
                        digits(kernel_var, var),
                    ],
                }],
                y_scale: Scale::Linear,
            },
        },
    ];

    Ok(StudyResult {
        id: ID.to_owned(),
        title: TITLE.to_owned(),
        explanation: vec![
            format!(
                "One f64 row of {d} values, each {} + {}·N(0, 1): almost constant. LayerNorm \
                 divides x − mean by √(var + eps); for this row var is about {}² and the sweep \
                 runs eps from 0 and {} up to {}.",
                cfg.center,
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
            "eps also guards an exactly constant row, where eps = 0 gives 0/0. And the variance \
             itself must be computed with care: the one-pass formula E[x²] − E[x]² subtracts two \
             numbers near 25 to get one near 1e-16 and loses every digit, while two passes keep \
             them. The reference is the exact variance, computed in double-double arithmetic."
                .to_owned(),
        ],
        figure: Figure {
            title: "Effect of Epsilon on Near-Constant Input (all values ~ 5.0 +/- 1e-8)".to_owned(),
            panels,
            columns: 2,
        },
        config: toml::Table::new(),
        findings,
        timings: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape, value};

    /// Asserts every claim for one config and seed against the closed forms.
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        // √(var/(var+eps)) = 1/2  ⇔  eps = 3·var: the bisection lands there.
        let ratio = value(&r, "eps_half_over_var");
        assert!((ratio - 3.0).abs() < 1e-6, "ratio {ratio}");
        assert!(value(&r, "ln_std_prediction_max_rel_dev") < 1e-9);
        // eps = 0 blows the noise up to unit std: amplification ≈ 1/std(x) ≫ 1.
        let amp = value(&r, "eps0_noise_amplification");
        assert!(amp > 0.1 / cfg.noise && amp < 10.0 / cfg.noise, "{amp:e}");
        // At a framework eps ≫ var: std ≈ √(var/eps), tiny.
        let var = value(&r, "eps_half") / 3.0;
        let fw = value(&r, "ln_std_at_framework_eps");
        let pred = (var / (var + cfg.framework_eps)).sqrt();
        assert!(((fw - pred) / pred).abs() < 1e-6, "{fw:e} vs {pred:e}");
        // RMSNorm: std ratio over the sweep is √((ms + eps_max)/(ms + eps_min)), ms ≈ c².
        let ms = cfg.center * cfg.center;
        let rms_pred = ((ms + cfg.eps_max) / (ms + cfg.eps_min)).sqrt();
        assert!((value(&r, "rms_std_range") - rms_pred).abs() < 1e-6);
        // A constant row with eps = 0: every output is NaN.
        assert_eq!(value(&r, "constant_row_eps0_nan_outputs"), cfg.dim as f64);
        // One pass loses the variance (relative error ≥ 10%); two passes keep it.
        assert!(value(&r, "one_pass_variance_rel_error") > 0.1);
        assert!(value(&r, "two_pass_variance_rel_error") < 1e-12);
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

    #[test]
    fn digits_are_clamped() {
        assert_eq!(digits(1.0, 1.0), 16.0);
        assert_eq!(digits(2.0, 1.0), 0.0);
        assert!((digits(1.0 + 1e-6, 1.0) - 6.0).abs() < 1e-6);
        assert_eq!(digits(f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(run(&Config { dim: 1, ..c() }, 1), "dim");
        check_invalid(run(&Config { per_decade: 0, ..c() }, 1), "per_decade");
        check_invalid(run(&Config { noise: 0.0, ..c() }, 1), "noise");
        check_invalid(
            run(
                &Config {
                    eps_min: -1e-20,
                    ..c()
                },
                1,
            ),
            "eps_min",
        );
        check_invalid(
            run(
                &Config {
                    eps_max: 1e-30,
                    ..c()
                },
                1,
            ),
            "eps_max",
        );
        check_invalid(
            run(
                &Config {
                    center: f64::INFINITY,
                    ..c()
                },
                1,
            ),
            "center",
        );
        check_invalid(
            run(
                &Config {
                    framework_eps: -1.0,
                    ..c()
                },
                1,
            ),
            "framework_eps",
        );
    }
}
