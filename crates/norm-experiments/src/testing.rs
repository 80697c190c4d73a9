//! Checks every study's tests share: the result's shape and the determinism contract.
//! Test-only.

use crate::result::PanelContent;
use crate::{StudyError, StudyResult};

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
