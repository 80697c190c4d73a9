//! Helpers the studies share: finding constructors, config checks that return typed
//! errors, and the random inputs several studies draw (the per-sample Gaussian batch).
//! No study lives here, and no study imports another.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::StudyError;
use crate::result::{Finding, HistogramSeries, LineSeries, Panel, PanelContent, Scale, ScatterSeries};
use crate::stats::segment;

/// A finding that does not back the summary line.
pub(crate) fn finding(name: &str, value: f64, unit: &str, statement: String) -> Finding {
    Finding::new(name, value, unit, statement)
}

/// The one finding that backs the study's summary line.
pub(crate) fn summary_finding(name: &str, value: f64, unit: &str, statement: String) -> Finding {
    finding(name, value, unit, statement).summary()
}

/// Builds the `InvalidConfig` error.
fn invalid(study: &'static str, field: &'static str, value: String, reason: &'static str) -> StudyError {
    StudyError::InvalidConfig {
        study,
        field,
        value,
        reason,
    }
}

/// `value >= min`.
pub(crate) fn require_at_least(
    study: &'static str,
    field: &'static str,
    value: usize,
    min: usize,
    reason: &'static str,
) -> Result<(), StudyError> {
    if value < min {
        return Err(invalid(study, field, value.to_string(), reason));
    }
    Ok(())
}

/// `value` finite and `> 0`.
pub(crate) fn require_positive(
    study: &'static str,
    field: &'static str,
    value: f64,
) -> Result<(), StudyError> {
    if !(value.is_finite() && value > 0.0) {
        return Err(invalid(study, field, value.to_string(), "must be finite and > 0"));
    }
    Ok(())
}

/// `value` finite and `>= 0` (e.g. eps).
pub(crate) fn require_non_negative(
    study: &'static str,
    field: &'static str,
    value: f64,
) -> Result<(), StudyError> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(invalid(
            study,
            field,
            value.to_string(),
            "must be finite and >= 0",
        ));
    }
    Ok(())
}

/// `value` finite.
pub(crate) fn require_finite(study: &'static str, field: &'static str, value: f64) -> Result<(), StudyError> {
    if !value.is_finite() {
        return Err(invalid(study, field, value.to_string(), "must be finite"));
    }
    Ok(())
}

/// A range `(lo, hi)` with finite ends, `lo <= hi`, and (if `positive`) `lo > 0`.
pub(crate) fn require_range(
    study: &'static str,
    field: &'static str,
    (lo, hi): (f64, f64),
    positive: bool,
) -> Result<(), StudyError> {
    let value = format!("({lo}, {hi})");
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(invalid(study, field, value, "must be finite with lo <= hi"));
    }
    if positive && lo <= 0.0 {
        return Err(invalid(study, field, value, "must lie above 0"));
    }
    Ok(())
}

/// The range of each sample's mean in the input of studies 1 and 2 (and of the second
/// batch of study 3, "the input of studies 1–2"): means as large as the spread.
pub(crate) const PER_SAMPLE_MEAN_RANGE: (f64, f64) = (-4.0, 4.0);
/// The range of each sample's standard deviation in that input.
pub(crate) const PER_SAMPLE_STD_RANGE: (f64, f64) = (0.5, 3.0);

/// A batch of `n` rows of `d` values where row `i` is `mu_i + sigma_i · z` with
/// `z ~ N(0, 1)`, `mu_i ~ U(mean_range)`, `sigma_i ~ U(std_range)`: samples that each
/// have their own mean and spread. Drawn row by row in a fixed order.
pub(crate) struct PerSampleGaussian {
    /// Row-major values, `n · d`.
    pub x: Vec<f64>,
}

impl PerSampleGaussian {
    /// Draws the batch from `rng`.
    pub(crate) fn draw(
        rng: &mut ChaCha8Rng,
        n: usize,
        d: usize,
        mean_range: (f64, f64),
        std_range: (f64, f64),
    ) -> Self {
        let mut x = Vec::with_capacity(n * d);
        for _ in 0..n {
            let mu = uniform(rng, mean_range);
            let sigma = uniform(rng, std_range);
            for _ in 0..d {
                let z: f64 = rng.sample(StandardNormal);
                x.push(mu + sigma * z);
            }
        }
        Self { x }
    }
}

/// A uniform draw on `[lo, hi)` (exactly `lo` when `lo == hi`).
pub(crate) fn uniform(rng: &mut ChaCha8Rng, (lo, hi): (f64, f64)) -> f64 {
    let u: f64 = rng.random();
    lo + (hi - lo) * u
}

/// A standard normal draw.
pub(crate) fn normal(rng: &mut ChaCha8Rng) -> f64 {
    rng.sample(StandardNormal)
}

/// Points `(i, values[i])`: a per-sample statistic against the sample index.
pub(crate) fn by_index(label: &str, values: &[f64]) -> ScatterSeries {
    ScatterSeries {
        label: label.to_owned(),
        x: (0..values.len()).map(|i| i as f64).collect(),
        y: values.to_vec(),
    }
}

/// Studies 1 and 2's first panel: every input value, pooled over samples.
pub(crate) fn input_histogram_panel(input: &HistogramSeries) -> Panel {
    Panel {
        title: "Input: Each Sample Has Its Own Mean and Spread".to_owned(),
        x_label: "value".to_owned(),
        y_label: "density".to_owned(),
        content: PanelContent::Histogram {
            series: vec![input.clone()],
            overlays: vec![],
        },
    }
}

/// Studies 1 and 2's second panel: every output value, with a reference density.
pub(crate) fn output_histogram_panel(title: &str, output: &HistogramSeries, overlay: &LineSeries) -> Panel {
    Panel {
        title: title.to_owned(),
        x_label: "normalized value".to_owned(),
        y_label: "density".to_owned(),
        content: PanelContent::Histogram {
            series: vec![output.clone()],
            overlays: vec![overlay.clone()],
        },
    }
}

/// A per-sample statistic before and after a norm, by sample index, with a horizontal
/// reference line (`reference` = (label, level)).
pub(crate) fn before_after_panel(
    title: &str,
    y_label: &str,
    (input, output): (&[f64], &[f64]),
    output_label: &str,
    (reference, level): (&str, f64),
) -> Panel {
    let last = input.len().saturating_sub(1) as f64;
    Panel {
        title: title.to_owned(),
        x_label: "sample index".to_owned(),
        y_label: y_label.to_owned(),
        content: PanelContent::Scatter {
            series: vec![by_index("input", input), by_index(output_label, output)],
            lines: vec![segment(reference, 0.0, level, last, level)],
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
        },
    }
}
