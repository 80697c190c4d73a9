//! Study 2 — RMSNorm distribution: the same kind of batch as study 1 goes through RMSNorm
//! (LLaMA, Mistral). Every sample comes out with root-mean-square 1, but its mean is
//! *not* removed: it becomes μ/√(μ²+σ²), a number set by the sample's own mean-to-spread
//! ratio. The study measures both, against their closed forms, and states what
//! "simpler, fewer ops" means in norm-core's kernels (passes and operations per element,
//! counted from the code in `crate::kernel_cost`).

use norm_core::RmsNorm;
use serde::Serialize;

use crate::common::{
    PER_SAMPLE_MEAN_RANGE, PER_SAMPLE_STD_RANGE, PerSampleGaussian, finding, require_at_least,
    require_non_negative, require_range, summary_finding,
};
use crate::common::{before_after_panel, input_histogram_panel, output_histogram_panel};
use crate::format::{g, sig};
use crate::kernel_cost::{KERNEL_COSTS, KernelCosts};
use crate::references::Reference;
use crate::result::{
    Figure, Finding, HistogramSeries, LineSeries, Panel, PanelContent, Scale, ScatterSeries,
};
use crate::stats::{histogram, max_abs, min_max, normal_density, row_stats, segment};
use crate::study::{Study, StudyConfig};
use crate::{StudyError, study_rng};

/// Stable id.
pub const ID: &str = "rmsnorm-distribution";

/// The study (study 3) whose timings hold the measured time ratio of the two kernels.
const TIMING_STUDY: &str = "layernorm-vs-rmsnorm";

/// Configuration of the RMSNorm distribution study.
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
    /// RMSNorm eps (LLaMA's 1e-6; at least 0).
    pub eps: f64,
    /// Bins of the input and output histograms.
    pub bins: usize,
}

impl Default for Config {
    /// The full-size study: 1000 samples × 512 features, as in study 1.
    fn default() -> Self {
        Self {
            samples: 1000,
            dim: 512,
            mean_range: PER_SAMPLE_MEAN_RANGE,
            std_range: PER_SAMPLE_STD_RANGE,
            eps: 1e-6,
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

/// What the study measured: per-sample RMS and mean after RMSNorm against their closed
/// forms, the figure's histograms, and the two kernels' counted work.
#[derive(Debug, Clone, Serialize)]
pub struct Measurements {
    /// Each input sample's root mean square.
    pub input_rms: Vec<f64>,
    /// Each output sample's root mean square (1 up to eps).
    pub output_rms: Vec<f64>,
    /// Each output sample's mean (kept, not removed).
    pub output_mean: Vec<f64>,
    /// Each sample's predicted output mean `μ/√(μ²+σ²)` from its input's own mean and
    /// population standard deviation.
    pub predicted_mean: Vec<f64>,
    /// `max |output_rms − 1|`.
    pub max_abs_rms_minus_one: f64,
    /// `max |output_rms − √(ms/(ms+eps))|`, `ms` the input's mean square.
    pub rms_prediction_gap: f64,
    /// `max |output_mean|`.
    pub max_abs_output_mean: f64,
    /// `(min, max)` of `output_mean`.
    pub output_mean_range: (f64, f64),
    /// `max |output_mean − predicted_mean|`.
    pub mean_prediction_gap: f64,
    /// `max |output_mean − μ/√(μ²+σ²+eps)|` (eps under the root).
    pub mean_prediction_gap_eps: f64,
    /// Histogram (density) of every input value.
    pub input_histogram: HistogramSeries,
    /// Histogram (density) of every output value.
    pub output_histogram: HistogramSeries,
    /// The N(0, 1) density over the output's range (at least ±4), for reference.
    pub normal_curve: LineSeries,
    /// Passes over the row and operations per element of norm-core's LayerNorm and
    /// RMSNorm forward kernels, counted from their code (not timed).
    pub kernels: KernelCosts,
}

/// Study 2: RMSNorm's output distribution (the registry type).
///
/// Draws the batch, applies `norm_core::RmsNorm<f64>` (weight 1), and measures each
/// sample's output RMS and output mean against their closed forms.
///
/// ```text
/// y = x / sqrt(ms + eps),  ms = mean(x²) = μ² + σ²
/// ⇒ rms(y) = sqrt(ms / (ms + eps)),   mean(y) = μ / sqrt(μ² + σ² + eps)
/// ```
///
/// # Example
/// ```
/// use norm_experiments::{Study, StudyConfig};
/// use norm_experiments::studies::rmsnorm_distribution::{Config, RmsNormDistribution};
/// let m = RmsNormDistribution::measure(&Config::small(), 42)?;
/// assert!(m.max_abs_rms_minus_one < 1e-5);
/// assert!(m.max_abs_output_mean > 0.5); // the mean is kept
/// # Ok::<(), norm_experiments::StudyError>(())
/// ```
pub struct RmsNormDistribution;

impl Study for RmsNormDistribution {
    const ID: &'static str = ID;
    const TITLE: &'static str = "RMSNorm Distribution";
    const SUMMARY: &'static str = "Rescales to RMS~1 but does NOT subtract mean. Simpler, fewer ops.";
    type Config = Config;
    type Measurements = Measurements;

    fn measure(cfg: &Config, seed: u64) -> Result<Measurements, StudyError> {
        let d = cfg.dim;
        let mut rng = study_rng(seed, ID);
        let x = PerSampleGaussian::draw(&mut rng, cfg.samples, d, cfg.mean_range, cfg.std_range).x;
        let norm = RmsNorm::<f64>::new(d)?.with_eps(cfg.eps)?;
        let mut y = vec![0.0; x.len()];
        norm.forward_slice(&x, &mut y)?;

        let sx = row_stats(&x, d);
        let sy = row_stats(&y, d);
        let input_rms: Vec<f64> = sx.iter().map(|s| s.rms()).collect();
        let output_rms: Vec<f64> = sy.iter().map(|s| s.rms()).collect();
        let output_mean: Vec<f64> = sy.iter().map(|s| s.mean).collect();
        // μ/√(μ²+σ²) with the sample's own (measured) mean and population std.
        let predicted_mean: Vec<f64> = sx
            .iter()
            .map(|s| s.mean / (s.mean * s.mean + s.var).sqrt())
            .collect();
        let predicted_mean_eps = sx
            .iter()
            .map(|s| s.mean / (s.mean * s.mean + s.var + cfg.eps).sqrt());

        let (out_lo, out_hi) = min_max(y.iter().copied());
        Ok(Measurements {
            max_abs_rms_minus_one: max_abs(output_rms.iter().map(|r| r - 1.0)),
            rms_prediction_gap: max_abs(
                output_rms
                    .iter()
                    .zip(&sx)
                    .map(|(r, s)| r - (s.mean_sq / (s.mean_sq + cfg.eps)).sqrt()),
            ),
            max_abs_output_mean: max_abs(output_mean.iter().copied()),
            output_mean_range: min_max(output_mean.iter().copied()),
            mean_prediction_gap: max_abs(output_mean.iter().zip(&predicted_mean).map(|(a, b)| a - b)),
            mean_prediction_gap_eps: max_abs(output_mean.iter().zip(predicted_mean_eps).map(|(a, b)| a - b)),
            input_histogram: histogram("input (all samples)", &x, cfg.bins),
            output_histogram: histogram("RMSNorm output", &y, cfg.bins),
            normal_curve: normal_density(
                "N(0, 1) density (reference)",
                out_lo.min(-4.0),
                out_hi.max(4.0),
                200,
            ),
            kernels: KERNEL_COSTS,
            input_rms,
            output_rms,
            output_mean,
            predicted_mean,
        })
    }

    fn findings(cfg: &Config, m: &Measurements) -> Vec<Finding> {
        let (om_lo, om_hi) = m.output_mean_range;
        let (ln, rms) = (m.kernels.layer_norm, m.kernels.rms_norm);
        vec![
            summary_finding(
                "max_abs_rms_minus_one",
                m.max_abs_rms_minus_one,
                "",
                format!(
                    "Every sample is rescaled to RMS ≈ 1 (largest |RMS − 1| = {}), but its mean \
                     is kept, not subtracted: per-sample output means range over [{}, {}]. \
                     Fewer ops, counted in norm-core's kernels: {} passes over the row and {} \
                     operations per element, against LayerNorm's {} and {}.",
                    g(m.max_abs_rms_minus_one),
                    sig(om_lo, 3),
                    sig(om_hi, 3),
                    rms.passes,
                    rms.ops_per_element,
                    ln.passes,
                    ln.ops_per_element
                ),
            )
            .labelled("Largest |per-sample output RMS − 1|")
            .cite(&[Reference::ZhangSennrich2019]),
            finding(
                "rms_prediction_gap",
                m.rms_prediction_gap,
                "",
                format!(
                    "The RMS shortfall is all eps: output RMS equals √(ms/(ms+eps)) (eps = {}) \
                     within {} for every sample.",
                    g(cfg.eps),
                    g(m.rms_prediction_gap)
                ),
            )
            .labelled("Output RMS vs √(ms/(ms+eps)): largest gap"),
            finding(
                "max_abs_output_mean",
                m.max_abs_output_mean,
                "",
                format!(
                    "The largest |per-sample output mean| is {}: RMSNorm leaves a sample whose \
                     mean dominates its spread almost entirely on one side of 0.",
                    sig(m.max_abs_output_mean, 3)
                ),
            )
            .labelled("Largest |per-sample output mean|"),
            finding(
                "mean_prediction_gap",
                m.mean_prediction_gap,
                "",
                format!(
                    "Per-sample output mean matches μ/√(μ²+σ²) within {} (largest gap over {} \
                     samples); with eps under the root, μ/√(μ²+σ²+eps), within {}.",
                    g(m.mean_prediction_gap),
                    cfg.samples,
                    g(m.mean_prediction_gap_eps)
                ),
            )
            .labelled("Output mean vs μ/√(μ²+σ²): largest gap"),
            finding(
                "ops_per_element_rms_over_ln",
                rms.ops_per_element as f64 / ln.ops_per_element as f64,
                "ratio",
                format!(
                    "Counted from the code of norm-core's forward row kernel, not timed: RMSNorm \
                     reads the row in {} passes ({} reduction — the sum of squares — then the \
                     write) with {} vector operations per element; LayerNorm in {} passes ({} \
                     reductions — the shifted sum, then the centered sum of squares — then the \
                     write) with {}. Both read the row from memory once and write it once (the \
                     later passes find it in cache), so the time saved is smaller than the \
                     operations saved: the measured time ratio of this run is \
                     `rms_over_ln_time` in timings.md ({TIMING_STUDY}).",
                    rms.passes,
                    rms.reduction_passes,
                    rms.ops_per_element,
                    ln.passes,
                    ln.reduction_passes,
                    ln.ops_per_element
                ),
            )
            .labelled("Operations per element, RMSNorm ÷ LayerNorm kernel")
            .cite(&[Reference::ZhangSennrich2019]),
        ]
    }

    fn explanation(cfg: &Config, m: &Measurements) -> Vec<String> {
        let (ln, rms) = (m.kernels.layer_norm, m.kernels.rms_norm);
        vec![
            format!(
                "The same kind of batch as in the LayerNorm study ({} samples of {} features, \
                 mean uniform in [{}, {}], standard deviation uniform in [{}, {}]) goes through \
                 RMSNorm with weight 1 and eps = {}. RMSNorm divides each sample by its root mean \
                 square and does nothing else: no mean is computed or subtracted, one reduction \
                 over the row instead of two. In norm-core's kernels that is {} passes and {} \
                 operations per element instead of {} and {}.",
                cfg.samples,
                cfg.dim,
                cfg.mean_range.0,
                cfg.mean_range.1,
                cfg.std_range.0,
                cfg.std_range.1,
                g(cfg.eps),
                rms.passes,
                rms.ops_per_element,
                ln.passes,
                ln.ops_per_element
            ),
            "Since mean(x²) = μ² + σ², every output has RMS 1 but keeps a mean of \
             μ/√(μ²+σ²): near 0 for a sample centred on 0, near ±1 for a sample whose mean \
             dominates its spread. The output histogram is therefore not the standard normal \
             (drawn for reference) but a mixture of shifted, narrowed normals; the last panel \
             puts each sample's output mean on its prediction."
                .to_owned(),
        ]
    }

    fn caption(_: &Config, _: &Measurements) -> String {
        "Compare (b) with (a): RMSNorm rescales each sample but does not recentre it, so the \
         output keeps several centres where LayerNorm's (study 1) has one. In (c) the input's \
         per-sample RMS scatters and the output's lies on one line at 1; in (d) each point is \
         one sample's output mean against the closed form μ/√(μ²+σ²): points on the diagonal \
         mean the formula holds."
            .to_owned()
    }

    fn figure(_: &Config, m: &Measurements) -> Figure {
        let (p_lo, p_hi) = min_max(m.predicted_mean.iter().copied());
        let panels = vec![
            input_histogram_panel(&m.input_histogram),
            output_histogram_panel("Output: RMS 1, Mean Kept", &m.output_histogram, &m.normal_curve),
            before_after_panel(
                "Per-Sample RMS: Before vs After",
                "root mean square over features",
                (&m.input_rms, &m.output_rms),
                "RMSNorm output",
                ("RMS = 1", 1.0),
            ),
            Panel {
                title: "Per-Sample Output Mean vs μ/√(μ²+σ²)".to_owned(),
                x_label: "μ/√(μ²+σ²) of the input sample".to_owned(),
                y_label: "mean of the RMSNorm output".to_owned(),
                content: PanelContent::Scatter {
                    series: vec![ScatterSeries {
                        label: "samples".to_owned(),
                        x: m.predicted_mean.clone(),
                        y: m.output_mean.clone(),
                    }],
                    lines: vec![segment("y = x", p_lo, p_lo, p_hi, p_hi)],
                    x_scale: Scale::Linear,
                    y_scale: Scale::Linear,
                },
            },
        ];
        Figure {
            title: "RMSNorm: Rescales by Root-Mean-Square (No Mean Subtraction)".to_owned(),
            panels,
            columns: 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel_cost::{LAYER_NORM, RMS_NORM};
    use crate::testing::{check_determinism, check_invalid, check_shape};

    type S = RmsNormDistribution;

    /// Asserts every claim for one config and seed. The eps effects are bounded by
    /// eps/(2·ms) with ms ≥ σ²/2 for the smallest σ (a sample variance below half of σ²
    /// is many standard errors away at D ≥ 64).
    fn check(cfg: &Config, seed: u64) {
        let m = S::measure(cfg, seed).expect("measures");
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        let eps_effect = cfg.eps / (2.0 * 0.5 * cfg.std_range.0 * cfg.std_range.0);
        assert!(
            m.max_abs_rms_minus_one <= eps_effect + tol,
            "{:e}",
            m.max_abs_rms_minus_one
        );
        assert!(m.rms_prediction_gap < tol);
        assert!(m.mean_prediction_gap <= eps_effect + tol);
        assert!(m.mean_prediction_gap_eps < tol);
        // The mean is kept: samples with |μ| > σ exist in this input, whose output mean
        // μ/√(μ²+σ²) exceeds 1/√2.
        assert!(m.max_abs_output_mean > 0.5);
        let (lo, hi) = m.output_mean_range;
        assert!(lo < -0.5 && hi > 0.5, "[{lo}, {hi}]");
        // Per-sample output RMS is below 1 (eps) but within the eps effect; each output
        // mean sits on its prediction.
        assert_eq!(m.output_rms.len(), cfg.samples);
        assert!(
            m.output_rms
                .iter()
                .all(|v| *v <= 1.0 + tol && 1.0 - v <= eps_effect + tol)
        );
        assert!(
            m.predicted_mean
                .iter()
                .zip(&m.output_mean)
                .all(|(p, o)| (p - o).abs() <= eps_effect + tol)
        );
        // Statements are written from the values; the kernel counts reach the summary.
        let f = S::findings(cfg, &m);
        assert!(f[0].summary && f[0].statement.contains(&g(m.max_abs_rms_minus_one)));
        assert!(
            f[0].statement
                .contains("2 passes over the row and 3 operations per element")
        );
        assert!(f.iter().all(|f| !f.label.is_empty()));
        assert!(f[0].refs.contains(&Reference::ZhangSennrich2019));
        check_shape(&S::run(cfg, seed).expect("runs"), ID);
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
        let m = S::measure(&cfg, 5).expect("measures");
        let tol = cfg.dim as f64 * f64::EPSILON * 10.0;
        assert!(m.max_abs_rms_minus_one < tol);
        assert!(m.mean_prediction_gap < tol);
    }

    /// The counted work: RMSNorm's kernel does one reduction fewer and a third of the
    /// operations; the ratio finding is written from these counts.
    #[test]
    fn kernel_counts_reach_the_findings() {
        assert_eq!(RMS_NORM.passes + 1, LAYER_NORM.passes);
        assert_eq!(RMS_NORM.reduction_passes + 1, LAYER_NORM.reduction_passes);
        assert_eq!(3 * RMS_NORM.ops_per_element, LAYER_NORM.ops_per_element);
        let cfg = Config::small();
        let m = S::measure(&cfg, 1).expect("measures");
        assert_eq!(m.kernels, KERNEL_COSTS);
        let f = S::findings(&cfg, &m);
        let ops = f
            .iter()
            .find(|f| f.name == "ops_per_element_rms_over_ln")
            .expect("ops finding");
        assert_eq!(ops.value, 3.0 / 9.0);
        assert!(ops.statement.contains("timings.md"));
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
        check_invalid(run(Config { dim: 0, ..c() }), "dim");
        check_invalid(run(Config { bins: 0, ..c() }), "bins");
        check_invalid(run(Config { eps: -1.0, ..c() }), "eps");
        check_invalid(
            run(Config {
                std_range: (-1.0, 1.0),
                ..c()
            }),
            "std_range",
        );
        check_invalid(
            run(Config {
                mean_range: (0.0, f64::INFINITY),
                ..c()
            }),
            "mean_range",
        );
    }
}
