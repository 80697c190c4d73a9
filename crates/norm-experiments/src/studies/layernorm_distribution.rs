//! Study 1 — LayerNorm distribution: a batch whose samples each have their own mean and
//! spread goes in; every sample comes out with mean 0 and variance 1 along the feature
//! axis. Shows why LayerNorm (GPT-2, BERT) makes the next layer's input scale-free, and
//! measures how close "0" and "1" are: the output variance is exactly var/(var+eps),
//! so eps shows up as a measurable shortfall below 1 for low-variance samples.

use norm_core::LayerNorm;
use serde::Serialize;

use crate::common::{
    PER_SAMPLE_MEAN_RANGE, PER_SAMPLE_STD_RANGE, PerSampleGaussian, finding, require_at_least,
    require_non_negative, require_range, summary_finding,
};
use crate::common::{before_after_panel, input_histogram_panel, output_histogram_panel};
use crate::format::{g, sig};
use crate::references::Reference;
use crate::result::{Figure, Finding, HistogramSeries, LineSeries};
use crate::stats::{histogram, max_abs, min_max, normal_density, row_stats};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "layernorm-distribution";

/// Configuration of the LayerNorm distribution study.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Number of samples (rows).
    pub samples: usize,
    /// Features per sample (the normalized axis, at least 2).
    pub dim: usize,
    /// Each sample's mean is drawn uniformly from this range `[lo, hi]`.
    pub mean_range: (f64, f64),
    /// Each sample's standard deviation is drawn uniformly from this range (above 0).
    pub std_range: (f64, f64),
    /// LayerNorm eps (PyTorch's default 1e-5; at least 0).
    pub eps: f64,
    /// Bins of the input and output histograms.
    pub bins: usize,
}

impl Default for Config {
    /// The full-size study: 1000 samples × 512 features.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            mean_range: PER_SAMPLE_MEAN_RANGE,
            std_range: PER_SAMPLE_STD_RANGE,
            eps: 1e-5,
            bins: 80,
        }
    }
}

impl StudyConfig for Config {
    /// 64 samples × 128 features.
    fn small() -> Self {
        Self {
            samples: 64,
            dim: 128,
            bins: 30,
            ..Self::default()
        }
    }

    /// Refuses `samples == 0`, `dim < 2`, `bins == 0`, a non-finite or reversed range, a
    /// standard deviation range not above 0, or a negative or non-finite eps.
    fn validate(&self) -> Result<(), StudyError> {
        require_at_least(ID, "samples", self.samples, 1, "need at least one sample")?;
        require_at_least(ID, "dim", self.dim, 2, "a variance needs at least 2 features")?;
        require_at_least(ID, "bins", self.bins, 1, "need at least one histogram bin")?;
        require_range(ID, "mean_range", self.mean_range, false)?;
        require_range(ID, "std_range", self.std_range, true)?;
        require_non_negative(ID, "eps", self.eps)
    }
}

/// What the study measured: per-sample statistics before and after LayerNorm, their
/// extremes, and the figure's histograms.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Each input sample's mean over its features.
    pub input_mean: Vec<f64>,
    /// Each input sample's (population) standard deviation.
    pub input_std: Vec<f64>,
    /// Each output sample's mean (0 up to rounding).
    pub output_mean: Vec<f64>,
    /// Each output sample's standard deviation.
    pub output_std: Vec<f64>,
    /// Each output sample's variance.
    pub output_var: Vec<f64>,
    /// Each sample's predicted output variance, `var/(var + eps)` of its input.
    pub predicted_var: Vec<f64>,
    /// `max |output_mean|`.
    pub max_abs_output_mean: f64,
    /// `(min, max)` of `output_var`.
    pub output_var_range: (f64, f64),
    /// `(min, max)` of `predicted_var`.
    pub predicted_var_range: (f64, f64),
    /// `max |output_var − predicted_var|`.
    pub max_variance_prediction_gap: f64,
    /// `(min, max)` of `input_mean`.
    pub input_mean_range: (f64, f64),
    /// `(min, max)` of `input_std`.
    pub input_std_range: (f64, f64),
    /// Histogram (density) of every input value.
    pub input_histogram: HistogramSeries,
    /// Histogram (density) of every output value.
    pub output_histogram: HistogramSeries,
    /// The N(0, 1) density over the output's range (at least ±4).
    pub normal_curve: LineSeries,
}

/// Study 1: LayerNorm's output distribution (the registry type).
///
/// Draws the batch, applies `norm_core::LayerNorm<f64>` (weight 1, bias 0), and measures
/// per-sample output means and variances against var/(var+eps).
///
/// ```text
/// y = (x − mean) / sqrt(var + eps)   ⇒   mean(y) = 0,  var(y) = var / (var + eps)
/// ```
///
/// # Example
/// ```
/// use norm_experiments::Study;
/// use norm_experiments::StudyConfig;
/// use norm_experiments::studies::layernorm_distribution::{Config, LayerNormDistribution};
/// let m = LayerNormDistribution::measure(&Config::small(), 42)?;
/// assert!(m.max_abs_output_mean < 1e-12);
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct LayerNormDistribution;

impl Study for LayerNormDistribution {
    const ID: &'static str = ID;
    const TITLE: &'static str = "LayerNorm Distribution";
    const SUMMARY: &'static str = "Normalizes each sample to mean~0, variance~1 along feature dim.";
    type Config = Config;
    type Measurements = Measurements;

    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let d = cfg.dim;
        let mut rng = study_rng(seed, ID);
        let x = PerSampleGaussian::draw(&mut rng, cfg.samples, d, cfg.mean_range, cfg.std_range).x;
        let ln = LayerNorm::<f64>::new(d)?.with_eps(cfg.eps)?;
        let mut y = vec![0.0; x.len()];
        ln.forward_slice(&x, &mut y)?;

        let sx = row_stats(&x, d);
        let sy = row_stats(&y, d);
        let input_mean: Vec<f64> = sx.iter().map(|s| s.mean).collect();
        let input_std: Vec<f64> = sx.iter().map(|s| s.std()).collect();
        let output_mean: Vec<f64> = sy.iter().map(|s| s.mean).collect();
        let output_std: Vec<f64> = sy.iter().map(|s| s.std()).collect();
        let output_var: Vec<f64> = sy.iter().map(|s| s.var).collect();
        let predicted_var: Vec<f64> = sx.iter().map(|s| s.var / (s.var + cfg.eps)).collect();

        let (out_lo, out_hi) = min_max(y.iter().copied());
        Ok(Measurements {
            max_abs_output_mean: max_abs(output_mean.iter().copied()),
            output_var_range: min_max(output_var.iter().copied()),
            predicted_var_range: min_max(predicted_var.iter().copied()),
            max_variance_prediction_gap: max_abs(output_var.iter().zip(&predicted_var).map(|(a, b)| a - b)),
            input_mean_range: min_max(input_mean.iter().copied()),
            input_std_range: min_max(input_std.iter().copied()),
            input_histogram: histogram("input (all samples)", &x, cfg.bins),
            output_histogram: histogram("LayerNorm output", &y, cfg.bins),
            normal_curve: normal_density("N(0, 1) density", out_lo.min(-4.0), out_hi.max(4.0), 200),
            input_mean,
            input_std,
            output_mean,
            output_std,
            output_var,
            predicted_var,
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let (var_lo, var_hi) = m.output_var_range;
        let (pred_lo, pred_hi) = m.predicted_var_range;
        let (im_lo, im_hi) = m.input_mean_range;
        let (is_lo, is_hi) = m.input_std_range;
        vec![
            summary_finding(
                "max_abs_output_mean",
                m.max_abs_output_mean,
                "",
                format!(
                    "Every sample comes out with mean ≈ 0 and variance ≈ 1: the largest \
                     |per-sample output mean| is {} and per-sample output variances lie in \
                     [{}, {}], although input means span [{}, {}] and input standard deviations \
                     [{}, {}].",
                    g(m.max_abs_output_mean),
                    sig(var_lo, 7),
                    sig(var_hi, 7),
                    g(im_lo),
                    g(im_hi),
                    g(is_lo),
                    g(is_hi)
                ),
            )
            .labelled("Largest |per-sample output mean|")
            .cite(&[Reference::Ba2016]),
            finding(
                "min_output_variance",
                var_lo,
                "",
                format!(
                    "Smallest per-sample output variance: {} (prediction var/(var+eps) over the \
                     samples: min {}); it falls short of 1 by eps/(var+eps) for the \
                     lowest-variance sample.",
                    sig(var_lo, 7),
                    sig(pred_lo, 7)
                ),
            )
            .labelled("Smallest per-sample output variance"),
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
            )
            .labelled("Largest per-sample output variance"),
            finding(
                "max_variance_prediction_gap",
                m.max_variance_prediction_gap,
                "",
                format!(
                    "Per-sample output variance equals var/(var+eps) (eps = {}) within {} for all \
                     {} samples.",
                    g(cfg.eps),
                    g(m.max_variance_prediction_gap),
                    cfg.samples
                ),
            )
            .labelled("Output variance vs var/(var+eps): largest gap"),
        ]
    }

    fn explanation(cfg: &Config, _: &Measurements) -> Vec<String> {
        vec![
            format!(
                "{} samples of {} features, each drawn from its own normal distribution (mean \
                 uniform in [{}, {}], standard deviation uniform in [{}, {}]), go through \
                 LayerNorm with weight 1, bias 0 and eps = {}. LayerNorm subtracts each sample's \
                 own mean and divides by its own standard deviation, along the feature axis.",
                cfg.samples,
                cfg.dim,
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
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "Compare (a) with (b): the input mixes samples of different centres and widths; the \
         output is one pile around 0. In (c) and (d) each sample is a pair of points at its \
         index: the input's mean or standard deviation scatters, the output's lies on one \
         line (mean 0, standard deviation 1)."
            .to_owned()
    }

    fn figure(_: &Config, m: &Measurements) -> Figure {
        let panels = vec![
            input_histogram_panel(&m.input_histogram),
            output_histogram_panel(
                "Output: Zero Mean, Unit Variance",
                &m.output_histogram,
                &m.normal_curve,
            ),
            before_after_panel(
                "Per-Sample Mean: Before vs After",
                "mean over features",
                (&m.input_mean, &m.output_mean),
                "LayerNorm output",
                ("mean = 0", 0.0),
            ),
            before_after_panel(
                "Per-Sample Std: Before vs After",
                "standard deviation over features",
                (&m.input_std, &m.output_std),
                "LayerNorm output",
                ("std = 1", 1.0),
            ),
        ];
        Figure {
            title: "LayerNorm: Normalizes to Zero Mean, Unit Variance".to_owned(),
            panels,
            columns: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{check_determinism, check_invalid, check_shape};

    type S = LayerNormDistribution;

    /// Asserts every claim of the study for one config and seed, with thresholds from
    /// f64 rounding (D·ε·|y|) and the closed form var/(var+eps).
    fn check(cfg: &Config, seed: u64) {
        let m = S::measure(cfg, seed).expect("measures");
        let n = cfg.samples;
        assert_eq!(m.output_mean.len(), n);
        assert_eq!(m.predicted_var.len(), n);
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        assert!(m.max_abs_output_mean < tol, "mean {:e}", m.max_abs_output_mean);
        assert!(m.output_mean.iter().all(|v| v.abs() < tol));
        assert!(m.max_variance_prediction_gap < tol);
        for (v, p) in m.output_var.iter().zip(&m.predicted_var) {
            assert!((v - p).abs() < tol, "{v} vs {p}");
        }
        // Output variance is var/(var+eps) < 1: the eps shortfall is visible, and no
        // larger than eps over the smallest plausible sample variance (half the smallest σ²).
        let (lo, hi) = m.output_var_range;
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
        // The input really mixes samples: its per-sample stds span the configured range
        // (up to sampling), and its means spread out.
        let (is_lo, is_hi) = m.input_std_range;
        assert!(is_lo > 0.8 * s_lo && is_hi < 1.2 * s_hi, "{is_lo} {is_hi}");
        let (im_lo, im_hi) = m.input_mean_range;
        assert!(im_hi - im_lo > 0.5 * (cfg.mean_range.1 - cfg.mean_range.0));
        // The output std sits at √(var/(var+eps)) ≈ 1.
        let bound = cfg.eps / (0.5 * s_lo * s_lo) + tol;
        assert!(m.output_std.iter().all(|s| (s - 1.0).abs() < bound));
        // Statements are written from the values; the summary cites Ba et al.
        let f = S::findings(cfg, &m);
        assert!(f[0].summary && f[0].statement.contains(&g(m.max_abs_output_mean)));
        assert_eq!(f[0].refs, vec![Reference::Ba2016]);
        assert!(f[1].statement.contains(&sig(lo, 7)));
        assert!(f.iter().all(|f| !f.label.is_empty()));
        check_shape(&S::run(cfg, seed).expect("runs"), ID);
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
        check_determinism(|s| S::run(&Config::small(), s));
    }

    #[test]
    fn bad_configs_are_typed_errors() {
        let c = Config::small;
        let run = |cfg: Config| S::run(&cfg, 1);
        check_invalid(run(Config { samples: 0, ..c() }), "samples");
        check_invalid(run(Config { dim: 1, ..c() }), "dim");
        check_invalid(run(Config { bins: 0, ..c() }), "bins");
        check_invalid(run(Config { eps: -1e-5, ..c() }), "eps");
        check_invalid(run(Config { eps: f64::NAN, ..c() }), "eps");
        check_invalid(
            run(Config {
                std_range: (0.0, 1.0),
                ..c()
            }),
            "std_range",
        );
        check_invalid(
            run(Config {
                mean_range: (2.0, 1.0),
                ..c()
            }),
            "mean_range",
        );
    }
}
