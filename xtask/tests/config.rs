//! End-to-end tests of the config flags of `cargo xtask report`: `--print-config` prints
//! TOML that `--config` reads back, `--set` changes a study (and the page and data say
//! so), and every kind of refusal exits 2 with one line and writes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use norm_experiments::Study;
use norm_experiments::studies::{epsilon::Epsilon, pre_vs_post_norm::PreVsPostNorm};
use norm_experiments::{RunConfig, Size, registry};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .output()
        .expect("xtask runs")
}

/// A fresh, empty folder under cargo's per-test temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("config-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn print_config_is_toml_that_config_reads_back() {
    let o = xtask(&["report", "--print-config"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8(o.stdout).unwrap();
    let doc: toml::Table = text.parse().expect("valid TOML");
    for e in registry() {
        let t = doc.get(e.id).and_then(toml::Value::as_table);
        assert_eq!(t, Some(&e.config(Size::Full).unwrap()), "{}", e.id);
    }
    assert_eq!(doc.len(), registry().len());
    // Read back unchanged: no differences from the defaults.
    let mut cfg = RunConfig::new(Size::Full).unwrap();
    cfg.apply_toml(&text, "printed").unwrap();
    assert!(cfg.changes().is_empty());
}

#[test]
fn set_runs_the_deeper_study_and_the_report_says_so() {
    let base = scratch("deeper");
    let out = base.join("r");
    let set = format!("{}.depths=[3,6,12,24,48]", PreVsPostNorm::ID);
    let o = xtask(&[
        "report",
        "--small",
        "--only",
        PreVsPostNorm::ID,
        "--format",
        "svg",
        "--set",
        &set,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let json = std::fs::read_to_string(out.join(format!("data/{}.json", PreVsPostNorm::ID))).unwrap();
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        data["config"]["depths"],
        serde_json::json!([3, 6, 12, 24, 48]),
        "the data file carries the config used"
    );
    let page = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        page.contains("Changed from the defaults"),
        "About this run lists the change"
    );
    assert!(page.contains(&format!("{}.depths", PreVsPostNorm::ID)));
    assert!(
        page.contains("--set &#39;") || page.contains("--set '"),
        "the command reproduces it"
    );
}

#[test]
fn a_config_file_changes_values_and_defaults_are_named_when_unchanged() {
    let base = scratch("file");
    let file = base.join("c.toml");
    std::fs::write(&file, format!("[{}]\nper_decade = 3\n", Epsilon::ID)).unwrap();
    let (a, b) = (base.join("a"), base.join("b"));
    let args = |out: &Path, with_file: bool| {
        let mut v = vec![
            "report".to_owned(),
            "--small".into(),
            "--only".into(),
            Epsilon::ID.into(),
            "--format".into(),
            "svg".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ];
        if with_file {
            v.extend(["--config".into(), file.to_str().unwrap().into()]);
        }
        v
    };
    let run = |v: Vec<String>| {
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&v)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    };
    run(args(&a, true));
    run(args(&b, false));
    let page_a = std::fs::read_to_string(a.join("index.html")).unwrap();
    let page_b = std::fs::read_to_string(b.join("index.html")).unwrap();
    assert!(page_a.contains(&format!("{}.per_decade = 3", Epsilon::ID)));
    assert!(page_b.contains("default configuration"));
    let json = std::fs::read_to_string(a.join(format!("data/{}.json", Epsilon::ID))).unwrap();
    let data: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(data["config"]["per_decade"], serde_json::json!(3));
}

#[test]
fn every_refusal_exits_2_with_one_line_and_writes_nothing() {
    let base = scratch("refusals");
    let bad_file = base.join("bad.toml");
    std::fs::write(&bad_file, "[no-such-study]\nx = 1\n").unwrap();
    let not_toml = base.join("not.toml");
    std::fs::write(&not_toml, "this is = not [ toml").unwrap();
    let id = Epsilon::ID;
    let cases: Vec<(Vec<String>, Vec<String>)> = vec![
        // unknown study
        (
            vec!["--set".into(), "no-such-study.dim=3".into()],
            vec!["no-such-study".into(), id.into()],
        ),
        // unknown field: the message lists the fields there are
        (
            vec!["--set".into(), format!("{id}.no_such_field=3")],
            vec!["no_such_field".into(), "dim".into()],
        ),
        // wrong types
        (
            vec!["--set".into(), format!("{id}.dim=\"wide\"")],
            vec![format!("{id}.dim"), "wide".into(), "an integer".into()],
        ),
        (
            vec!["--set".into(), format!("{id}.dim=1.5")],
            vec![format!("{id}.dim"), "1.5".into(), "an integer".into()],
        ),
        (
            vec!["--set".into(), format!("{id}.dim=-4")],
            vec![format!("{id}.dim"), "-4".into()],
        ),
        // a value validate() refuses: names study, field, value and the reason
        (
            vec!["--set".into(), format!("{id}.dim=1")],
            vec![id.into(), "dim".into(), "= 1".into(), "at least 2".into()],
        ),
        // no = sign
        (
            vec!["--set".into(), format!("{id}.dim")],
            vec!["ID.FIELD=VALUE".into()],
        ),
        // config files: unknown study, not TOML, missing
        (
            vec!["--config".into(), bad_file.to_str().unwrap().into()],
            vec!["no-such-study".into()],
        ),
        (
            vec!["--config".into(), not_toml.to_str().unwrap().into()],
            vec!["not TOML".into()],
        ),
        (
            vec![
                "--config".into(),
                base.join("missing.toml").to_str().unwrap().into(),
            ],
            vec!["missing.toml".into()],
        ),
    ];
    for (i, (flags, needles)) in cases.into_iter().enumerate() {
        let out = base.join(format!("out{i}"));
        let mut args = vec![
            "report".to_owned(),
            "--small".into(),
            "--out".into(),
            out.to_str().unwrap().into(),
        ];
        args.extend(flags.iter().cloned());
        let o = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .output()
            .unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {err}");
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "{flags:?}: one line, got {err}"
        );
        for n in needles {
            assert!(err.contains(&n), "{flags:?}: {err:?} does not name {n:?}");
        }
        assert!(!out.exists(), "{flags:?}: nothing is written");
        let leftovers: Vec<_> = std::fs::read_dir(&base)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
            .collect();
        assert!(
            leftovers.is_empty(),
            "{flags:?}: no staging folder left: {leftovers:?}"
        );
    }
}
