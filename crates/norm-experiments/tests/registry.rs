//! Registry-wide checks: ids unique and in report order, `find` agrees with the list,
//! and every registered study runs at test size with exactly one summary finding.

use norm_experiments::{Size, find, registry};

/// The report order of the eight studies.
const ORDER: [&str; 8] = [
    "layernorm-distribution",
    "rmsnorm-distribution",
    "layernorm-vs-rmsnorm",
    "epsilon",
    "learnable-affine",
    "gradient-flow",
    "pre-vs-post-norm",
    "sequence-3d",
];

#[test]
fn ids_are_known_unique_and_in_report_order() {
    let positions: Vec<usize> = registry()
        .iter()
        .map(|s| {
            ORDER
                .iter()
                .position(|id| *id == s.id)
                .unwrap_or_else(|| panic!("unknown study id {}", s.id))
        })
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "order {positions:?}");
    for s in registry() {
        assert_eq!(find(s.id).map(|f| f.id), Some(s.id));
        assert!(!s.title.is_empty() && !s.summary.is_empty());
    }
    assert!(find("no-such-study").is_none());
}

#[test]
fn every_study_runs_small_with_one_summary_finding() {
    for s in registry() {
        let r = (s.run)(42, Size::Small).unwrap_or_else(|e| panic!("{}: {e}", s.id));
        assert_eq!(r.id, s.id);
        assert_eq!(r.title, s.title);
        assert_eq!(r.findings.iter().filter(|f| f.summary).count(), 1, "{}", s.id);
        assert!(r.findings.iter().all(|f| !f.statement.is_empty()), "{}", s.id);
    }
}

/// Same bytes on one thread and on two: the kernels split large batches across the
/// rayon pool, and the full-size LayerNorm study (1000 × 512 f64) is large enough to.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    for id in ["layernorm-distribution", "sequence-3d"] {
        let Some(study) = find(id) else { continue };
        let json = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("thread pool");
            let r = pool.install(|| (study.run)(42, Size::Full)).expect("runs");
            serde_json::to_string(&r).expect("serializes")
        };
        assert_eq!(json(1), json(2), "{id}");
    }
}
