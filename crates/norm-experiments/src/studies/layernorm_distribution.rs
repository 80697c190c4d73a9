//! Study 1 — LayerNorm distribution: a batch whose samples each have their own mean and
//! spread goes in; every sample comes out with mean 0 and variance 1 along the feature
//! axis. Shows why LayerNorm (GPT-2, BERT) makes the next layer's input scale-free, and
//! measures how close "0" and "1" are: the output variance is exactly var/(var+eps),
//! so eps shows up as a measurable shortfall below 1 for low-variance samples.

use norm_core::LayerNorm;

use crate::common::{
    PerSampleGaussian, by_index, finding, require_at_least, require_non_negative, require_range,
    summary_finding,
};
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{Figure, Panel, PanelContent, Scale};
use crate::stats::{histogram, max_abs, min_max, normal_density, row_stats, segment};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "layernorm-distribution";
/// Title.
pub const TITLE: &str = "LayerNorm Distribution";
/// The seed document's summary line.
pub const SUMMARY: &str = "Normalizes each sample to mean~0, variance~1 along feature dim.";

/// Configuration of the LayerNorm distribution study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of samples (rows).
    pub samples: usize,
    /// Features per sample (the normalized axis).
    pub dim: usize,
    /// Each sample's mean is drawn uniformly from this range.
    pub mean_range: (f64, f64),
    /// Each sample's standard deviation is drawn uniformly from this range (> 0).
    pub std_range: (f64, f64),
    /// LayerNorm eps (PyTorch's default 1e-5).
    pub eps: f64,
    /// Histogram bins.
    pub bins: usize,
}

impl Default for Config {
    /// The full-size study: 1000 samples × 512 features.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            mean_range: (-4.0, 4.0),
            std_range: (0.5, 3.0),
            eps: 1e-5,
            bins: 80,
        }
    }
}

impl Config {
    /// A small config for tests (64 × 128).
    pub fn small() -> Self {
        Self {
            samples: 64,
            dim: 128,
            bins: 30,
            ..Self::default()
        }
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`StudyError::InvalidConfig`] for `samples == 0`, `dim < 2`, `bins == 0`, a
    /// non-finite or reversed range, a standard deviation range not above 0, or a
    /// negative or non-finite eps.
    pub fn validate(&self) -> Result<(), StudyError> {
        require_at_least(ID, "samples", self.samples, 1, "need at least one sample")?;
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 features")?;
        require_at_least(ID, "bins", self.bins, 1, "need at least one histogram bin")?;
        require_range(ID, "mean_range", self.mean_range, false)?;
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
pub struct LayerNormDistribution;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for LayerNormDistribution {
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

/// Runs the study: draws the batch, applies `norm_core::LayerNorm<f64>` (weight 1, bias
/// 0), and measures per-sample output means and variances against var/(var+eps).
///
/// ```text
/// y = (x − mean) / sqrt(var + eps)   ⇒   mean(y) = 0,  var(y) = var / (var + eps)
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`].
///
/// # Example
/// ```
/// use norm_experiments::studies::layernorm_distribution::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// assert!(r.findings.iter().any(|f| f.summary));
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let (n, d) = (cfg.samples, cfg.dim);
    let mut rng = study_rng(seed, ID);
    let x = PerSampleGaussian::draw(&mut rng, n, d, cfg.mean_range, cfg.std_range).x;
    let ln = LayerNorm::<f64>::new(d)?.with_eps(cfg.eps)?;
    let mut y = vec![0.0; x.len()];
    ln.forward_slice(&x, &mut y)?;

    let sx = row_stats(&x, d);
    let sy = row_stats(&y, d);
    let in_mean: Vec<f64> = sx.iter().map(|s| s.mean).collect();
    let in_std: Vec<f64> = sx.iter().map(|s| s.std()).collect();
    let out_mean: Vec<f64> = sy.iter().map(|s| s.mean).collect();
    let out_std: Vec<f64> = sy.iter().map(|s| s.std()).collect();
    let out_var: Vec<f64> = sy.iter().map(|s| s.var).collect();
    let predicted: Vec<f64> = sx.iter().map(|s| s.var / (s.var + cfg.eps)).collect();

    let max_mean = max_abs(out_mean.iter().copied());
    let (var_lo, var_hi) = min_max(out_var.iter().copied());
    let (pred_lo, pred_hi) = min_max(predicted.iter().copied());
    let gap = max_abs(out_var.iter().zip(&predicted).map(|(a, b)| a - b));
    let (im_lo, im_hi) = min_max(in_mean.iter().copied());
    let (is_lo, is_hi) = min_max(in_std.iter().copied());

    let findings = vec![
        summary_finding(
            "max_abs_output_mean",
            max_mean,
            "",
            format!(
                "Every sample comes out with mean ≈ 0 and variance ≈ 1: the largest |per-sample \
                 output mean| is {} and per-sample output variances lie in [{}, {}], although \
                 input means span [{}, {}] and input standard deviations [{}, {}].",
                g(max_mean),
                sig(var_lo, 7),
                sig(var_hi, 7),
                g(im_lo),
                g(im_hi),
                g(is_lo),
                g(is_hi)
            ),
        ),
        finding(
            "min_output_variance",
            var_lo,
            "",
            format!(
                "Smallest per-sample output variance: {} (prediction var/(var+eps) over the \
                 samples: min {}); it falls short of 1 by eps/(var+eps) for the lowest-variance sample.",
                sig(var_lo, 7),
                sig(pred_lo, 7)
            ),
        ),
        finding(
            "max_output_variance",
            var_hi,
            "",
            format!(
                "Largest per-sample output variance: {} (prediction var/(var+eps): max {}); \
                 no sample exceeds 1.",
                sig(var_hi, 7),
                sig(pred_hi, 7)
            ),
        ),
        finding(
            "max_variance_prediction_gap",
            gap,
            "",
            format!(
                "Per-sample output variance equals var/(var+eps) (eps = {}) within {} for all {} samples.",
                g(cfg.eps),
                g(gap),
                n
            ),
        ),
    ];

    let out_lo = min_max(y.iter().copied()).0.min(-4.0);
    let out_hi = min_max(y.iter().copied()).1.max(4.0);
    let panels = vec![
        Panel {
            title: "Input: Each Sample Has Its Own Mean and Spread".to_owned(),
            x_label: "value".to_owned(),
            y_label: "density".to_owned(),
            content: PanelContent::Histogram {
                series: vec![histogram("input (all samples)", &x, cfg.bins)],
                overlays: vec![],
            },
        },
        Panel {
            title: "Output: Zero Mean, Unit Variance".to_owned(),
            x_label: "normalized value".to_owned(),
            y_label: "density".to_owned(),
            content: PanelContent::Histogram {
                series: vec![histogram("LayerNorm output", &y, cfg.bins)],
                overlays: vec![normal_density("N(0, 1) density", out_lo, out_hi, 200)],
            },
        },
        Panel {
            title: "Per-Sample Mean: Before vs After".to_owned(),
            x_label: "sample index".to_owned(),
            y_label: "mean over features".to_owned(),
            content: PanelContent::Scatter {
                series: vec![
                    by_index("input", &in_mean),
                    by_index("LayerNorm output", &out_mean),
                ],
                lines: vec![segment("mean = 0", 0.0, 0.0, (n - 1) as f64, 0.0)],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "Per-Sample Std: Before vs After".to_owned(),
            x_label: "sample index".to_owned(),
            y_label: "standard deviation over features".to_owned(),
            content: PanelContent::Scatter {
                series: vec![by_index("input", &in_std), by_index("LayerNorm output", &out_std)],
                lines: vec![segment("std = 1", 0.0, 1.0, (n - 1) as f64, 1.0)],
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
                "{n} samples of {d} features, each drawn from its own normal distribution \
                 (mean uniform in [{}, {}], standard deviation uniform in [{}, {}]), go through \
                 LayerNorm with weight 1, bias 0 and eps = {}. LayerNorm subtracts each sample's \
                 own mean and divides by its own standard deviation, along the feature axis.",
                cfg.mean_range.0,
                cfg.mean_range.1,
                cfg.std_range.0,
                cfg.std_range.1,
                g(cfg.eps)
            ),
            "The input histogram mixes many different distributions; the output histogram \
             collapses onto the standard normal density, and the per-sample means and standard \
             deviations collapse onto 0 and 1. The variance is not exactly 1: it is \
             var/(var+eps), a shortfall of eps/(var+eps) that is largest for the samples with \
             the smallest variance. The findings measure both."
                .to_owned(),
        ],
        figure: Figure {
            title: "LayerNorm: Normalizes to Zero Mean, Unit Variance".to_owned(),
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
    use crate::testing::{check_determinism, check_invalid, check_shape, statement, value};

    /// Asserts every claim of the study for one config and seed, with thresholds from
    /// f64 rounding (D·ε·|y|) and the closed form var/(var+eps).
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        let max_mean = value(&r, "max_abs_output_mean");
        assert!(max_mean < tol, "mean {max_mean:e}");
        assert!(value(&r, "max_variance_prediction_gap") < tol);
        // Output variance is var/(var+eps) < 1: the eps shortfall is visible, and no
        // larger than eps over the smallest plausible sample variance (half the smallest σ²).
        let (lo, hi) = (value(&r, "min_output_variance"), value(&r, "max_output_variance"));
        let (s_lo, s_hi) = cfg.std_range;
        assert!(lo <= hi);
        if cfg.eps > 0.0 {
            assert!(hi < 1.0);
            assert!(
                1.0 - hi > cfg.eps / (4.0 * s_hi * s_hi),
                "shortfall {:e}",
                1.0 - hi
            );
            assert!(
                1.0 - lo < cfg.eps / (0.5 * s_lo * s_lo),
                "shortfall {:e}",
                1.0 - lo
            );
        } else {
            assert!((hi - 1.0).abs() < tol && (lo - 1.0).abs() < tol, "{lo} {hi}");
        }
        // Statements are written from the values.
        assert!(statement(&r, "max_abs_output_mean").contains(&g(max_mean)));
        assert!(statement(&r, "min_output_variance").contains(&sig(lo, 7)));
        // The per-sample std panel sits at √(var/(var+eps)) ≈ 1 for the output.
        let PanelContent::Scatter { series, .. } = &r.figure.panels[3].content else {
            panic!("panel 3 is a scatter");
        };
        let bound = cfg.eps / (0.5 * s_lo * s_lo) + tol;
        assert!(series[1].y.iter().all(|s| (s - 1.0).abs() < bound));
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
        check(
            &Config {
                eps: 0.0,
                ..Config::small()
            },
            1,
        );
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
        check_invalid(run(&Config { bins: 0, ..c() }, 1), "bins");
        check_invalid(run(&Config { eps: -1e-5, ..c() }, 1), "eps");
        check_invalid(run(&Config { eps: f64::NAN, ..c() }, 1), "eps");
        check_invalid(
            run(
                &Config {
                    std_range: (0.0, 1.0),
                    ..c()
                },
                1,
            ),
            "std_range",
        );
        check_invalid(
            run(
                &Config {
                    mean_range: (2.0, 1.0),
                    ..c()
                },
                1,
            ),
            "mean_range",
        );
    }
}
