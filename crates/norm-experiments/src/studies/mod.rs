//! The study modules, one per study, and the small helpers they share: config checks
//! that return typed errors, finding constructors, and the per-sample Gaussian input.
//! Each module exposes `Config`, `run(&Config, seed)` and its registry entry `STUDY`.

use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use crate::StudyError;
use crate::result::{Finding, ScatterSeries};

pub mod epsilon;
pub mod gradient_flow;
pub mod layernorm_distribution;
pub mod layernorm_vs_rmsnorm;
pub mod learnable_affine;
pub mod pre_vs_post_norm;
pub mod rmsnorm_distribution;
pub mod sequence_3d;

/// Runs a study module at the registry's size: `Config::default()` or `Config::small()`.
macro_rules! sized_runner {
    () => {
        /// Runs this study with `seed` at full or test size (the registry's entry point).
        ///
        /// # Errors
        /// As [`run`].
        pub fn run_sized(seed: u64, size: crate::Size) -> Result<crate::StudyResult, crate::StudyError> {
            match size {
                crate::Size::Full => run(&Config::default(), seed),
                crate::Size::Small => run(&Config::small(), seed),
            }
        }
    };
}
pub(crate) use sized_runner;

/// A finding that does not back the summary line.
pub(crate) fn finding(name: &str, value: f64, unit: &str, statement: String) -> Finding {
    Finding {
        name: name.to_owned(),
        value,
        unit: unit.to_owned(),
        statement,
        summary: false,
    }
}

/// The one finding that backs the study's summary line.
pub(crate) fn summary_finding(name: &str, value: f64, unit: &str, statement: String) -> Finding {
    Finding {
        summary: true,
        ..finding(name, value, unit, statement)
    }
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

/// Checks every study's tests share: the result's shape and the determinism contract.
#[cfg(test)]
pub(crate) mod testing {
    use crate::result::PanelContent;
    use crate::{StudyError, StudyResult};

    /// The value of finding `name` (panics with the list of names if absent).
    pub(crate) fn value(r: &StudyResult, name: &str) -> f64 {
        match r.findings.iter().find(|f| f.name == name) {
            Some(f) => f.value,
            None => panic!(
                "no finding {name:?} in {:?}",
                r.findings.iter().map(|f| &f.name).collect::<Vec<_>>()
            ),
        }
    }

    /// The statement of finding `name`.
    pub(crate) fn statement<'a>(r: &'a StudyResult, name: &str) -> &'a str {
        r.findings
            .iter()
            .find(|f| f.name == name)
            .map_or("", |f| f.statement.as_str())
    }

    /// Structural invariants of any result: id, exactly one summary finding, named and
    /// stated findings, titled and labelled panels, consistent series lengths.
    pub(crate) fn check_shape(r: &StudyResult, id: &str) {
        assert_eq!(r.id, id);
        assert!(!r.title.is_empty() && !r.figure.title.is_empty());
        assert!(!r.explanation.is_empty());
        assert_eq!(
            r.findings.iter().filter(|f| f.summary).count(),
            1,
            "exactly one summary finding"
        );
        for f in r.findings.iter().chain(&r.timings) {
            assert!(!f.name.is_empty() && !f.statement.is_empty(), "{f:?}");
        }
        let mut names: Vec<&str> = r.findings.iter().map(|f| f.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), r.findings.len(), "finding names are unique");
        assert!(r.figure.columns >= 1 && !r.figure.panels.is_empty());
        for p in &r.figure.panels {
            assert!(!p.title.is_empty());
            let diagram = matches!(p.content, PanelContent::Diagram(_));
            assert!(
                diagram || (!p.x_label.is_empty() && !p.y_label.is_empty()),
                "{}",
                p.title
            );
            match &p.content {
                PanelContent::Histogram { series, overlays } => {
                    for h in series {
                        assert_eq!(h.edges.len(), h.density.len() + 1);
                        let area: f64 = h
                            .density
                            .iter()
                            .zip(h.edges.windows(2))
                            .map(|(d, e)| d * (e[1] - e[0]))
                            .sum();
                        assert!((area - 1.0).abs() < 1e-9, "{}: area {area}", p.title);
                    }
                    for l in overlays {
                        assert_eq!(l.x.len(), l.y.len());
                    }
                }
                PanelContent::Scatter { series, lines, .. } => {
                    for s in series {
                        assert_eq!(s.x.len(), s.y.len());
                        assert!(!s.x.is_empty());
                    }
                    for l in lines {
                        assert_eq!(l.x.len(), l.y.len());
                    }
                }
                PanelContent::Lines { series, .. } => {
                    for l in series {
                        assert_eq!(l.x.len(), l.y.len());
                        assert!(!l.x.is_empty());
                    }
                }
                PanelContent::Bars {
                    categories, series, ..
                } => {
                    for s in series {
                        assert_eq!(s.values.len(), categories.len());
                    }
                }
                PanelContent::Heatmap(h) => assert_eq!(h.values.len(), h.rows * h.cols),
                PanelContent::Diagram(_) => {}
            }
        }
    }

    /// Same seed → identical JSON; another seed → different JSON (different data).
    pub(crate) fn check_determinism(run: impl Fn(u64) -> Result<StudyResult, StudyError>) {
        let json = |seed| serde_json::to_string(&run(seed).expect("study runs")).expect("serializes");
        let a = json(42);
        assert_eq!(a, json(42), "same seed, same bytes");
        assert_ne!(a, json(43), "another seed, other data");
    }

    /// `run` on a config with one field broken gives `InvalidConfig` naming that field.
    pub(crate) fn check_invalid(result: Result<StudyResult, StudyError>, field: &str) {
        match result {
            Err(StudyError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidConfig for `{field}`, got {other:?}"),
        }
    }
}
