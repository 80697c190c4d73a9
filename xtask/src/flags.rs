//! The flags of `cargo xtask report`, lexed by `lexopt` (maintained, no dependencies,
//! quick to build; `--flag value` and `--flag=value` alike). Every mistake is one line
//! naming what is accepted, and a flag given twice is refused rather than silently
//! overridden; `main` turns the error into exit code 2.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

use lexopt::{Arg, ValueExt};
use norm_experiments::{Entry, Size, find, registry};
use norm_report::Format;

/// What `cargo xtask report` was asked to do.
#[derive(Debug)]
pub enum Parsed {
    /// Print help.
    Help,
    /// Write a report.
    Run(Options),
}

/// Options of one report run.
#[derive(Debug)]
pub struct Options {
    /// Output folder.
    pub out: PathBuf,
    /// Run seed.
    pub seed: u64,
    /// Studies to run, in registry order.
    pub studies: Vec<&'static Entry>,
    /// Whether `--only` was given (recorded in the reproduce command).
    pub only: bool,
    /// Figure files to write.
    pub format: Format,
    /// Study size; `--small` (hidden, for tests) selects the small configs.
    pub size: Size,
    /// `--set ID.FIELD=VALUE` overrides, in the order given (repeatable).
    pub sets: Vec<String>,
    /// `--config FILE.toml`: a file of per-study config tables.
    pub config: Option<PathBuf>,
    /// `--print-config`: print the configuration as TOML instead of running.
    pub print_config: bool,
}

const ACCEPTED: &str = "--out DIR, --seed N, --only ID[,ID...], --format svg|png|both, \
                        --set ID.FIELD=VALUE, --config FILE.toml, --print-config, --help";

/// The registered study ids, comma-separated.
pub fn study_ids() -> String {
    let ids: Vec<&str> = registry().iter().map(|s| s.id).collect();
    if ids.is_empty() {
        "(none registered)".to_string()
    } else {
        ids.join(", ")
    }
}

/// The default output folder: `target/report` in the workspace.
fn default_out() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or_else(
        || PathBuf::from("target/report"),
        |root| root.join("target").join("report"),
    )
}

/// Parses the arguments after `report`.
pub fn parse(args: &[String]) -> Result<Parsed, String> {
    let mut out = default_out();
    let mut seed = 42u64;
    let mut only: Option<Vec<&'static Entry>> = None;
    let mut format = Format::Both;
    let mut size = Size::Full;
    let mut sets = Vec::new();
    let mut config = None;
    let mut print_config = false;
    // Flags that may be given once; a second one is an error, not a silent override.
    let mut seen = BTreeSet::new();
    let mut parser = lexopt::Parser::from_args(args);
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        let flag = match &arg {
            Arg::Long(name) => format!("--{name}"),
            Arg::Short(c) => format!("-{c}"),
            Arg::Value(v) => {
                return Err(format!(
                    "unexpected argument `{}`; accepted: {ACCEPTED}",
                    v.to_string_lossy()
                ));
            }
        };
        if flag != "--set" && !seen.insert(flag.clone()) {
            return Err(format!("`{flag}` given twice; give it once (only --set repeats)"));
        }
        // The flag's value, from `--flag value` or `--flag=value`, as UTF-8.
        let mut value = |what: &str| -> Result<String, String> {
            let v: OsString = parser
                .value()
                .map_err(|_| format!("`{flag}` needs a value ({what})"))?;
            v.string()
                .map_err(|_| format!("`{flag}` needs UTF-8 text ({what})"))
        };
        match flag.as_str() {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--small" => size = Size::Small,
            "--print-config" => print_config = true,
            "--out" => {
                let v = value("a folder")?;
                if v.is_empty() {
                    return Err("`--out` needs a folder, got an empty string".into());
                }
                out = PathBuf::from(v);
            }
            "--seed" => {
                let v = value("a non-negative integer")?;
                seed = v.parse().map_err(|_| {
                    format!(
                        "`--seed` takes a non-negative integer (0 to {}), got `{v}`",
                        u64::MAX
                    )
                })?;
            }
            "--format" => {
                let v = value("svg, png or both")?;
                format = Format::parse(&v)
                    .ok_or_else(|| format!("`--format` takes svg, png or both, got `{v}`"))?;
            }
            "--only" => {
                let v = value("study ids, comma-separated")?;
                let mut chosen = Vec::new();
                for id in v.split(',').map(str::trim) {
                    let study = find(id)
                        .ok_or_else(|| format!("unknown study id `{id}`; accepted: {}", study_ids()))?;
                    chosen.push(study);
                }
                only = Some(chosen);
            }
            "--set" => {
                let v = value("ID.FIELD=VALUE")?;
                if !v.contains('=') {
                    return Err(format!("`--set` takes ID.FIELD=VALUE, got `{v}`"));
                }
                sets.push(v);
            }
            "--config" => {
                let v = value("a TOML file")?;
                if v.is_empty() {
                    return Err("`--config` needs a file, got an empty string".into());
                }
                config = Some(PathBuf::from(v));
            }
            _ => return Err(format!("unknown flag `{flag}`; accepted: {ACCEPTED}")),
        }
    }
    let studies = match &only {
        // Registry order, each once, whatever order --only named them in.
        Some(chosen) => registry()
            .iter()
            .filter(|s| chosen.iter().any(|c| c.id == s.id))
            .collect(),
        None => registry().iter().collect(),
    };
    Ok(Parsed::Run(Options {
        out,
        seed,
        studies,
        only: only.is_some(),
        format,
        size,
        sets,
        config,
        print_config,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn run(s: &str) -> Options {
        match parse(&args(s)) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("`{s}` parsed as {other:?}"),
        }
    }

    fn err(s: &str) -> String {
        match parse(&args(s)) {
            Err(e) => e,
            Ok(p) => panic!("`{s}` parsed as {p:?}"),
        }
    }

    #[test]
    fn parses_flags() {
        let o = run("--seed 7 --out x/y --format=svg --small");
        assert_eq!((o.seed, o.format, o.size), (7, Format::Svg, Size::Small));
        assert_eq!(o.out, PathBuf::from("x/y"));
        assert_eq!(o.studies.len(), registry().len());
        assert!(o.sets.is_empty() && o.config.is_none() && !o.print_config);
        assert!(matches!(parse(&args("--seed 1 --help")), Ok(Parsed::Help)));
        assert!(matches!(parse(&args("-h")), Ok(Parsed::Help)));
    }

    #[test]
    fn config_flags_are_collected_in_order() {
        let o = run("--set a.x=1 --config c.toml --set=b.y=[2,3] --print-config --set a.x=4");
        assert_eq!(o.sets, ["a.x=1", "b.y=[2,3]", "a.x=4"]);
        assert_eq!(o.config, Some(PathBuf::from("c.toml")));
        assert!(o.print_config);
    }

    #[test]
    fn rejects_bad_input_with_one_line() {
        let check = |s: &str, needle: &str| {
            let e = err(s);
            assert!(e.contains(needle), "`{s}` -> `{e}` lacks `{needle}`");
            assert!(!e.contains('\n'), "multi-line error for `{s}`");
        };
        check("--bogus", "accepted: --out DIR");
        check("--seed", "needs a value");
        check("--seed -1", "non-negative integer");
        check("--seed 1.5", "got `1.5`");
        check("--format jpg", "svg, png or both");
        check(
            "--only no-such-study",
            "unknown study id `no-such-study`; accepted:",
        );
        check("stray", "unexpected argument `stray`");
        check("--out=", "empty");
        check("--set", "needs a value");
        check("--set a.b", "ID.FIELD=VALUE");
        check("--config=", "empty");
        check("--print-config=yes", "print-config");
        check("-x", "unknown flag `-x`");
    }

    #[test]
    fn refuses_repeated_flags() {
        for s in [
            "--seed 1 --seed 2",
            "--out a --out=b",
            "--format svg --format png",
            "--config a.toml --config b.toml",
            "--print-config --print-config",
            "--small --small",
        ] {
            let flag = s.split([' ', '=']).next().unwrap_or_default();
            let e = err(s);
            assert!(e.contains(&format!("`{flag}` given twice")), "`{s}` -> `{e}`");
            assert!(!e.contains('\n'));
        }
        let first = registry().first().map_or("", |s| s.id);
        if !first.is_empty() {
            let e = err(&format!("--only {first} --only {first}"));
            assert!(e.contains("`--only` given twice"), "{e}");
        }
    }
}
