//! End-to-end tests of `cargo xtask report` (the built binary, small study configs):
//! the report is complete, its links resolve, its SVGs are XML, it shows every finding
//! and no stray NaN/inf, two runs give identical bytes, and bad input exits cleanly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use norm_experiments::{Size, StudyResult, registry};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

/// A fresh, empty folder under cargo's per-test temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("xtask-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every file under `dir`, by relative path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let p = entry.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The values of `attr="..."` in an HTML text.
fn attr_values<'a>(html: &'a str, attr: &str) -> Vec<&'a str> {
    let needle = format!(" {attr}=\"");
    html.match_indices(&needle)
        .filter_map(|(i, _)| {
            let rest = &html[i + needle.len()..];
            rest.find('"').map(|end| &rest[..end])
        })
        .collect()
}

/// HTML escaping as maud does it.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn run_small(out: &Path) -> Output {
    let o = xtask(&[
        "report",
        "--small",
        "--seed",
        "42",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "xtask failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

fn results() -> Vec<StudyResult> {
    registry()
        .iter()
        .map(|s| {
            s.run_sized(42, Size::Small)
                .unwrap_or_else(|e| panic!("{}: {e}", s.id))
        })
        .collect()
}

#[test]
fn report_is_complete_consistent_and_reproducible() {
    let base = scratch("full");
    let (a, b) = (base.join("a"), base.join("b"));
    let first = run_small(&a);
    run_small(&b);

    // One progress line per study, then the page's path.
    let stdout = String::from_utf8_lossy(&first.stdout);
    for s in registry() {
        assert!(
            stdout.lines().any(|l| l.starts_with(s.id)),
            "no progress line for {}",
            s.id
        );
    }
    assert!(
        stdout.trim_end().ends_with("index.html"),
        "last line is not the page path: {stdout}"
    );

    // Same seed, same bytes (the timings files excepted), and no temp folders left over.
    let (ta, tb) = (tree(&a), tree(&b));
    assert_eq!(ta.keys().collect::<Vec<_>>(), tb.keys().collect::<Vec<_>>());
    for (name, bytes) in &ta {
        if !name.starts_with("timings.") {
            assert!(
                bytes == &tb[name],
                "{name} differs between two runs with the same seed"
            );
        }
    }
    let leftovers: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "staging folders left behind: {leftovers:?}");

    let page = std::str::from_utf8(&ta["index.html"]).unwrap();
    let md = std::str::from_utf8(&ta["report.md"]).unwrap();
    let results = results();
    assert_eq!(
        results.len(),
        registry().len(),
        "the report has every registered study"
    );

    for r in &results {
        // Figures in both formats; each SVG is well-formed XML with no NaN coordinates.
        let svg = std::str::from_utf8(&ta[&format!("figures/{}.svg", r.id)]).unwrap();
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{}.svg is not XML: {e}", r.id));
        // No non-finite coordinate or size in any attribute (text may name NaN on purpose:
        // study 4 counts NaN outputs).
        for n in doc.descendants() {
            for a in n.attributes() {
                assert!(
                    !a.value().contains("NaN") && !a.value().contains("inf"),
                    "{}.svg: {}=\"{}\" is not finite",
                    r.id,
                    a.name(),
                    a.value()
                );
            }
        }
        assert!(
            ta[&format!("figures/{}.png", r.id)].starts_with(b"\x89PNG"),
            "{}.png",
            r.id
        );
        // The JSON is exactly this run's result.
        let json = norm_report::data::study_json(r).unwrap();
        assert_eq!(
            std::str::from_utf8(&ta[&format!("data/{}.json", r.id)]).unwrap(),
            json,
            "{}.json",
            r.id
        );
        // Every finding (statement and value) is on the page and in the Markdown.
        for f in &r.findings {
            assert!(
                page.contains(&escape(&f.statement)),
                "page lacks finding {}: {}",
                f.name,
                f.statement
            );
            assert!(
                f.label.is_empty() || page.contains(&escape(&f.label)),
                "page lacks the label of {}: {}",
                f.name,
                f.label
            );
            assert!(
                page.contains(&norm_report::format_value(f.value)),
                "page lacks value of {}",
                f.name
            );
            // report.md is plain text: only `|` (table cells) is escaped.
            let md_statement = f.statement.replace('|', "\\|");
            assert!(
                md.contains(&md_statement),
                "report.md lacks finding {}: {}",
                f.name,
                f.statement
            );
        }
        assert_eq!(
            r.findings.iter().filter(|f| f.summary).count(),
            1,
            "{}: one summary finding",
            r.id
        );
        assert!(
            page.contains(&format!("id=\"{}\"", r.id)),
            "no section for {}",
            r.id
        );
        // Timings never reach the deterministic files.
        for t in &r.timings {
            assert!(
                !page.contains(&escape(&t.statement)),
                "timing {} is on the page",
                t.name
            );
        }
    }

    assert!(
        !md.contains("&amp;") && !md.contains("&lt;") && !md.contains("&gt;"),
        "report.md shows HTML escapes"
    );

    // Every link and image resolves: files exist, anchors exist.
    let ids = attr_values(page, "id");
    for target in attr_values(page, "href")
        .into_iter()
        .chain(attr_values(page, "src"))
    {
        if let Some(anchor) = target.strip_prefix('#') {
            assert!(ids.contains(&anchor), "dangling anchor #{anchor}");
        } else {
            assert!(!target.contains("://"), "page links off the machine: {target}");
            assert!(a.join(target).is_file(), "dangling link {target}");
        }
    }
    for (i, _) in md.match_indices("](") {
        let rest = &md[i + 2..];
        let target = &rest[..rest.find(')').unwrap()];
        if !target.starts_with('#') {
            assert!(a.join(target).is_file(), "report.md: dangling link {target}");
        }
    }

    // No NaN or inf on the page except in text the studies wrote on purpose and in
    // the values of findings that are non-finite on purpose.
    let mut rest = page.to_string();
    for r in &results {
        for f in &r.findings {
            rest = rest.replace(&escape(&f.statement), "");
            rest = rest.replace(&escape(&f.label), "");
            // A finding without a label shows its id as words ("Constant row eps0 nan ...").
            let words = f.name.replace('_', " ");
            let mut chars = words.chars();
            let words: String = chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default();
            rest = rest.replace(&words, "");
            if !f.value.is_finite() {
                rest = rest.replace(&format!(">{}", norm_report::format_value(f.value)), ">");
            }
        }
        for p in &r.explanation {
            rest = rest.replace(&escape(p), "");
        }
    }
    // Inline figures are checked above (every attribute finite); their text (titles,
    // legends, tooltips) may name NaN on purpose, as study 4's constant-row panel does.
    while let Some(start) = rest.find("<svg") {
        let Some(len) = rest[start..].find("</svg>") else {
            break;
        };
        rest.replace_range(start..start + len + "</svg>".len(), "");
    }
    for r in &results {
        for p in &r.figure.panels {
            rest = rest.replace(&escape(&p.title), "");
        }
    }
    let bad: Vec<&str> = rest
        .split(|c: char| !c.is_alphanumeric() && c != '_')
        .filter(|w| ["NaN", "nan", "inf", "Inf", "infinity", "Infinity"].contains(w))
        .collect();
    assert!(bad.is_empty(), "page shows non-finite numbers: {bad:?}");
}

#[test]
fn formats_and_only_select_the_files() {
    let base = scratch("only");
    let Some(study) = registry().first() else { return };
    let out = base.join("r");
    let o = xtask(&[
        "report",
        "--small",
        "--only",
        study.id,
        "--format",
        "svg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let files = tree(&out);
    assert!(files.contains_key(&format!("figures/{}.svg", study.id)));
    assert!(
        !files.keys().any(|k| k.ends_with(".png")),
        "--format svg wrote PNGs"
    );
    let other_figures = files
        .keys()
        .filter(|k| k.starts_with("figures/") && !k.contains(study.id))
        .count();
    assert_eq!(other_figures, 0, "--only ran other studies");
    // Rerunning into the same folder replaces the earlier report.
    let o = xtask(&[
        "report",
        "--small",
        "--only",
        study.id,
        "--format",
        "png",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let files = tree(&out);
    assert!(files.keys().any(|k| k.ends_with(".png")) && !files.keys().any(|k| k.ends_with(".svg")));
}

#[test]
fn bad_flags_exit_with_code_2_and_one_line() {
    let check = |args: &[&str], needle: &str| {
        let o = xtask(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{args:?} exited {:?}: {err}",
            o.status.code()
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: not one line: {err}");
        assert!(err.contains(needle), "{args:?}: `{err}` lacks `{needle}`");
    };
    check(&[], "accepted: report");
    check(&["reprot"], "unknown task `reprot`; accepted: report");
    check(&["report", "--bogus"], "accepted: --out DIR, --seed N");
    check(&["report", "--seed", "forty-two"], "non-negative integer");
    check(&["report", "--seed"], "needs a value");
    check(&["report", "--format", "gif"], "svg, png or both");
    check(&["report", "--only", "no-such-study"], "accepted:");
    let help = xtask(&["report", "--help"]);
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).contains("--format"));
}

#[test]
fn unwritable_or_foreign_out_is_a_clear_error() {
    let base = scratch("bad-out");
    let file = base.join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let check = |out: &Path, needle: &str| {
        let o = xtask(&["report", "--small", "--out", out.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{}: {err}", out.display());
        assert!(err.contains(needle), "`{err}` lacks `{needle}`");
        assert!(
            o.stdout.is_empty(),
            "studies ran before the out folder was checked"
        );
    };
    check(&file.join("report"), "cannot write the report to");
    check(&file, "not a folder");
    // A folder with other things in it is never replaced.
    let foreign = base.join("mine");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
    check(&foreign, "refusing to replace");
    assert_eq!(std::fs::read(foreign.join("notes.txt")).unwrap(), b"keep me");
}

#[test]
fn repeated_flags_exit_with_code_2() {
    for (args, flag) in [
        (&["report", "--seed", "1", "--seed", "2"][..], "--seed"),
        (&["report", "--out", "A", "--out=B"][..], "--out"),
        (&["report", "--format", "svg", "--format", "png"][..], "--format"),
    ] {
        let o = xtask(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(&format!("`{flag}` given twice")), "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?} ran something");
    }
}

/// The reproduction from issue 12: a stale `.X.old` folder (left when a run is killed
/// between its two renames) made every later run into `X` fail with "Directory not
/// empty". Leftover staging folders of dead processes are removed; folders holding
/// anything but report files are never touched.
#[test]
fn stale_leftovers_beside_out_neither_block_nor_linger() {
    let base = scratch("stale");
    let out = base.join("X");
    run_small(&out);
    // The issue's reproduction: `mkdir P/.X.old && touch P/.X.old/f`.
    let stale_old = base.join(".X.old");
    std::fs::create_dir_all(&stale_old).unwrap();
    std::fs::write(stale_old.join("f"), b"").unwrap();
    // A staging folder of a process that is gone (PIDs never reach u32::MAX), holding
    // report files only; one of a dead process holding a foreign file; one of a live
    // process (this test).
    let dead = base.join(format!(".X.tmp-{}", u32::MAX));
    std::fs::create_dir_all(dead.join("figures")).unwrap();
    std::fs::write(dead.join("report.md"), b"partial").unwrap();
    let dead_foreign = base.join(format!(".X.tmp-{}", u32::MAX - 1));
    std::fs::create_dir_all(&dead_foreign).unwrap();
    std::fs::write(dead_foreign.join("notes.txt"), b"keep me").unwrap();
    let live = base.join(format!(".X.tmp-{}", std::process::id()));
    std::fs::create_dir_all(live.join("data")).unwrap();
    // A replaced report of a dead run (killed between the renames).
    let dead_old = base.join(format!(".X.old-{}", u32::MAX));
    std::fs::create_dir_all(dead_old.join("data")).unwrap();
    std::fs::write(dead_old.join("index.html"), b"<!doctype html>").unwrap();

    let o = run_small(&out);
    assert!(o.status.success());
    assert!(out.join("index.html").is_file());
    assert!(!dead.exists(), "a dead run's staging folder was left");
    assert!(!dead_old.exists(), "a dead run's replaced report was left");
    assert_eq!(
        std::fs::read(stale_old.join("f")).unwrap(),
        b"",
        "a folder with a non-report file was touched"
    );
    assert!(
        dead_foreign.join("notes.txt").is_file(),
        "a foreign folder was deleted"
    );
    assert!(live.is_dir(), "a live process's staging folder was deleted");
    // And the run left nothing of its own beside `X`.
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut expected = vec![
        ".X.old".to_string(),
        format!(".X.tmp-{}", std::process::id()),
        format!(".X.tmp-{}", u32::MAX - 1),
        "X".to_string(),
    ];
    expected.sort();
    assert_eq!(names, expected);
}

#[test]
fn a_report_holds_only_the_entries_cleanup_may_delete() {
    let base = scratch("entries");
    let out = base.join("r");
    run_small(&out);
    for e in std::fs::read_dir(&out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            norm_report::REPORT_ENTRIES.contains(&name.as_str()),
            "`{name}` is not in REPORT_ENTRIES: leftover cleanup would keep such folders"
        );
    }
}
