//! Registry-wide checks: ids unique and in report order, `find` agrees with the list,
//! and every registered study runs at test size with exactly one summary finding.

use norm_experiments::{Size, find, registry};

#[test]
fn ids_are_unique_kebab_case_and_found() {
    let mut ids: Vec<&str> = registry().iter().map(|s| s.id).collect();
    assert!(!ids.is_empty());
    for s in registry() {
        assert!(
            s.id.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "id {:?} is not kebab-case",
            s.id
        );
        assert_eq!(find(s.id).map(|f| f.id), Some(s.id));
        assert!(!s.title.is_empty() && !s.summary.is_empty());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), registry().len(), "ids are unique");
    assert!(find("no-such-study").is_none());
}

/// Every key point links to a registered study.
#[test]
fn key_points_link_to_registered_studies() {
    for (text, ids) in norm_experiments::KEY_POINTS {
        assert!(!ids.is_empty(), "{text}");
        for id in ids {
            assert!(find(id).is_some(), "{text}: {id}");
        }
    }
}

#[test]
fn every_study_runs_small_with_one_summary_finding() {
    for s in registry() {
        let r = s
            .run_sized(42, Size::Small)
            .unwrap_or_else(|e| panic!("{}: {e}", s.id));
        assert_eq!(r.id, s.id);
        assert_eq!(r.title, s.title);
        assert_eq!(r.findings.iter().filter(|f| f.summary).count(), 1, "{}", s.id);
        assert_eq!(Some(&r.config), s.config(Size::Small).ok().as_ref(), "{}", s.id);
        assert!(r.findings.iter().all(|f| !f.statement.is_empty()), "{}", s.id);
        // A reading guide that names only panels the figure has: (a) .. up to the count.
        assert!(!r.caption.is_empty(), "{}: no caption", s.id);
        // "(b)" names a panel; "var(x)" does not (a letter or digit before the bracket).
        let chars: Vec<char> = r.caption.chars().collect();
        let letters: Vec<char> = (0..chars.len().saturating_sub(2))
            .filter(|&i| chars[i] == '(' && chars[i + 2] == ')' && chars[i + 1].is_ascii_lowercase())
            .filter(|&i| i == 0 || !chars[i - 1].is_alphanumeric())
            .map(|i| chars[i + 1])
            .collect();
        assert!(!letters.is_empty(), "{}: the caption names no panel", s.id);
        for l in letters {
            let i = (l as u8 - b'a') as usize;
            assert!(
                i < r.figure.panels.len(),
                "{}: caption names ({l}) of {} panels",
                s.id,
                r.figure.panels.len()
            );
        }
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
            let r = pool.install(|| study.run_sized(42, Size::Full)).expect("runs");
            serde_json::to_string(&r).expect("serializes")
        };
        assert_eq!(json(1), json(2), "{id}");
    }
}
