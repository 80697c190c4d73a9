//! Study 2 — RMSNorm distribution: the same kind of batch as study 1 goes through RMSNorm
//! (LLaMA, Mistral). Every sample comes out with root-mean-square 1, but its mean is
//! *not* removed: it becomes μ/√(μ²+σ²), a number set by the sample's own mean-to-spread
//! ratio. The study measures both, against their closed forms.

use norm_core::RmsNorm;

use crate::common::{
    PerSampleGaussian, by_index, finding, require_at_least, require_non_negative, require_range,
    summary_finding,
};
use crate::format::{g, sig};
use crate::study::{Study, StudyConfig};
use crate::result::{Figure, Panel, PanelContent, Scale, ScatterSeries};
use crate::stats::{histogram, max_abs, min_max, normal_density, row_stats, segment};
use crate::{StudyError, StudyResult, study_rng};

/// Stable id.
pub const ID: &str = "rmsnorm-distribution";
/// Title.
pub const TITLE: &str = "RMSNorm Distribution";
/// The seed document's summary line.
pub const SUMMARY: &str = "Rescales to RMS~1 but does NOT subtract mean. Simpler, fewer ops.";

/// Configuration of the RMSNorm distribution study.
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
    /// RMSNorm eps (LLaMA's 1e-6).
    pub eps: f64,
    /// Histogram bins.
    pub bins: usize,
}

impl Default for Config {
    /// The full-size study: 1000 samples × 512 features, as in study 1.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            mean_range: (-4.0, 4.0),
            std_range: (0.5, 3.0),
            eps: 1e-6,
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
pub struct RmsNormDistribution;

/// Transitional: the whole result is the measurement until this study is split into
/// measure → findings → figure.
impl Study for RmsNormDistribution {
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

/// Runs the study: draws the batch, applies `norm_core::RmsNorm<f64>` (weight 1), and
/// measures each sample's output RMS and output mean against their closed forms.
///
/// ```text
/// y = x / sqrt(ms + eps),  ms = mean(x²) = μ² + σ²
/// ⇒ rms(y) = sqrt(ms / (ms + eps)),   mean(y) = μ / sqrt(μ² + σ² + eps)
/// ```
///
/// # Errors
/// [`StudyError::InvalidConfig`] from [`Config::validate`].
///
/// # Example
/// ```
/// use norm_experiments::studies::rmsnorm_distribution::{run, Config};
/// let r = run(&Config::small(), 42)?;
/// assert_eq!(r.findings.iter().filter(|f| f.summary).count(), 1);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub fn run(cfg: &Config, seed: u64) -> Result<StudyResult, StudyError> {
    cfg.validate()?;
    let (n, d) = (cfg.samples, cfg.dim);
    let mut rng = study_rng(seed, ID);
    let x = PerSampleGaussian::draw(&mut rng, n, d, cfg.mean_range, cfg.std_range).x;
    let norm = RmsNorm::<f64>::new(d)?.with_eps(cfg.eps)?;
    let mut y = vec![0.0; x.len()];
    norm.forward_slice(&x, &mut y)?;

    let sx = row_stats(&x, d);
    let sy = row_stats(&y, d);
    let in_rms: Vec<f64> = sx.iter().map(|s| s.rms()).collect();
    let out_rms: Vec<f64> = sy.iter().map(|s| s.rms()).collect();
    let out_mean: Vec<f64> = sy.iter().map(|s| s.mean).collect();
    // μ/√(μ²+σ²) with the sample's own (measured) mean and population std; μ²+σ² = ms.
    let predicted: Vec<f64> = sx
        .iter()
        .map(|s| s.mean / (s.mean * s.mean + s.var).sqrt())
        .collect();
    let predicted_eps: Vec<f64> = sx
        .iter()
        .map(|s| s.mean / (s.mean * s.mean + s.var + cfg.eps).sqrt())
        .collect();

    let rms_dev = max_abs(out_rms.iter().map(|r| r - 1.0));
    let rms_pred_gap = max_abs(
        out_rms
            .iter()
            .zip(&sx)
            .map(|(r, s)| r - (s.mean_sq / (s.mean_sq + cfg.eps)).sqrt()),
    );
    let mean_gap = max_abs(out_mean.iter().zip(&predicted).map(|(a, b)| a - b));
    let mean_gap_eps = max_abs(out_mean.iter().zip(&predicted_eps).map(|(a, b)| a - b));
    let (om_lo, om_hi) = min_max(out_mean.iter().copied());
    let max_out_mean = max_abs(out_mean.iter().copied());

    let findings = vec![
        summary_finding(
            "max_abs_rms_minus_one",
            rms_dev,
            "",
            format!(
                "Every sample is rescaled to RMS ≈ 1 (largest |RMS − 1| = {}), but its mean is \
                 kept, not subtracted: per-sample output means range over [{}, {}].",
                g(rms_dev),
                sig(om_lo, 3),
                sig(om_hi, 3)
            ),
        ),
        finding(
            "rms_prediction_gap",
            rms_pred_gap,
            "",
            format!(
                "The RMS shortfall is all eps: output RMS equals √(ms/(ms+eps)) (eps = {}) \
                 within {} for every sample.",
                g(cfg.eps),
                g(rms_pred_gap)
            ),
        ),
        finding(
            "max_abs_output_mean",
            max_out_mean,
            "",
            format!(
                "The largest |per-sample output mean| is {}: RMSNorm leaves a sample whose \
                 mean dominates its spread almost entirely on one side of 0.",
                sig(max_out_mean, 3)
            ),
        ),
        finding(
            "mean_prediction_gap",
            mean_gap,
            "",
            format!(
                "Per-sample output mean matches μ/√(μ²+σ²) within {} (largest gap over {} \
                 samples); with eps under the root, μ/√(μ²+σ²+eps), within {}.",
                g(mean_gap),
                n,
                g(mean_gap_eps)
            ),
        ),
    ];

    let out_lo = min_max(y.iter().copied()).0.min(-4.0);
    let out_hi = min_max(y.iter().copied()).1.max(4.0);
    let (p_lo, p_hi) = min_max(predicted.iter().copied());
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
            title: "Output: RMS 1, Mean Kept".to_owned(),
            x_label: "normalized value".to_owned(),
            y_label: "density".to_owned(),
            content: PanelContent::Histogram {
                series: vec![histogram("RMSNorm output", &y, cfg.bins)],
                overlays: vec![normal_density("N(0, 1) density (reference)", out_lo, out_hi, 200)],
            },
        },
        Panel {
            title: "Per-Sample RMS: Before vs After".to_owned(),
            x_label: "sample index".to_owned(),
            y_label: "root mean square over features".to_owned(),
            content: PanelContent::Scatter {
                series: vec![by_index("input", &in_rms), by_index("RMSNorm output", &out_rms)],
                lines: vec![segment("RMS = 1", 0.0, 1.0, (n - 1) as f64, 1.0)],
                x_scale: Scale::Linear,
                y_scale: Scale::Linear,
            },
        },
        Panel {
            title: "Per-Sample Output Mean vs μ/√(μ²+σ²)".to_owned(),
            x_label: "μ/√(μ²+σ²) of the input sample".to_owned(),
            y_label: "mean of the RMSNorm output".to_owned(),
            content: PanelContent::Scatter {
                series: vec![ScatterSeries {
                    label: "samples".to_owned(),
                    x: predicted.clone(),
                    y: out_mean.clone(),
                }],
                lines: vec![segment("y = x", p_lo, p_lo, p_hi, p_hi)],
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
                "The same kind of batch as in the LayerNorm study ({n} samples of {d} features, \
                 mean uniform in [{}, {}], standard deviation uniform in [{}, {}]) goes through \
                 RMSNorm with weight 1 and eps = {}. RMSNorm divides each sample by its root mean \
                 square and does nothing else: no mean is computed or subtracted, one reduction \
                 instead of two.",
                cfg.mean_range.0,
                cfg.mean_range.1,
                cfg.std_range.0,
                cfg.std_range.1,
                g(cfg.eps)
            ),
            "Since mean(x²) = μ² + σ², every output has RMS 1 but keeps a mean of \
             μ/√(μ²+σ²): near 0 for a sample centred on 0, near ±1 for a sample whose mean \
             dominates its spread. The output histogram is therefore not the standard normal \
             (drawn for reference) but a mixture of shifted, narrowed normals; the last panel \
             puts each sample's output mean on its prediction."
                .to_owned(),
        ],
        figure: Figure {
            title: "RMSNorm: Rescales by Root-Mean-Square (No Mean Subtraction)".to_owned(),
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

    /// Asserts every claim for one config and seed. The eps effects are bounded by
    /// eps/(2·ms) with ms ≥ σ²/2 for the smallest σ (a sample variance below half of σ²
    /// is many standard errors away at D ≥ 64).
    fn check(cfg: &Config, seed: u64) {
        let r = run(cfg, seed).expect("runs");
        check_shape(&r, ID);
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        let ms_min = 0.5 * cfg.std_range.0 * cfg.std_range.0;
        let eps_effect = cfg.eps / (2.0 * ms_min);
        let rms_dev = value(&r, "max_abs_rms_minus_one");
        assert!(rms_dev <= eps_effect + tol, "{rms_dev:e}");
        assert!(value(&r, "rms_prediction_gap") < tol);
        assert!(value(&r, "mean_prediction_gap") <= eps_effect + tol);
        // The mean is kept: samples with |μ| > σ exist in this input, whose output mean
        // μ/√(μ²+σ²) exceeds 1/√2.
        assert!(value(&r, "max_abs_output_mean") > 0.5);
        assert!(statement(&r, "max_abs_rms_minus_one").contains(&g(rms_dev)));
        // Per-sample output RMS is below 1 (eps) but within the eps effect.
        let PanelContent::Scatter { series, .. } = &r.figure.panels[2].content else {
            panic!("panel 2 is a scatter");
        };
        assert!(
            series[1]
                .y
                .iter()
                .all(|v| *v <= 1.0 + tol && 1.0 - v <= eps_effect + tol)
        );
        // The prediction panel: every point on y = x within the eps effect.
        let PanelContent::Scatter { series, .. } = &r.figure.panels[3].content else {
            panic!("panel 3 is a scatter");
        };
        let pts = &series[0];
        assert_eq!(pts.x.len(), cfg.samples);
        assert!(
            pts.x
                .iter()
                .zip(&pts.y)
                .all(|(p, m)| (p - m).abs() <= eps_effect + tol)
        );
    }

    #[test]
    fn claims_hold_on_small_configs() {
        for seed in [42, 7, 2026] {
            check(&Config::small(), seed);
        }
    }

    #[test]
    fn without_eps_the_closed_forms_are_exact() {
        let cfg = Config {
            eps: 0.0,
            ..Config::small()
        };
        let r = run(&cfg, 5).expect("runs");
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        assert!(value(&r, "max_abs_rms_minus_one") < tol);
        assert!(value(&r, "mean_prediction_gap") < tol);
    }

    #[test]
    fn deterministic_per_seed() {
        check_determinism(|s| run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        check_invalid(run(&Config { samples: 0, ..c() }, 1), "samples");
        check_invalid(run(&Config { dim: 0, ..c() }, 1), "dim");
        check_invalid(run(&Config { eps: -1.0, ..c() }, 1), "eps");
        check_invalid(
            run(
                &Config {
                    std_range: (-1.0, 1.0),
                    ..c()
                },
                1,
            ),
            "std_range",
        );
        check_invalid(
            run(
                &Config {
                    mean_range: (0.0, f64::INFINITY),
                    ..c()
                },
                1,
            ),
            "mean_range",
        );
    }
}
