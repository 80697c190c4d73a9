//! Hand-parsed flags of `cargo xtask report`. Every mistake is one line naming what is
//! accepted; `main` turns it into exit code 2.

use std::path::PathBuf;

use norm_experiments::{Size, Study, find, registry};
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
    pub studies: Vec<&'static Study>,
    /// Whether `--only` was given (recorded in the reproduce command).
    pub only: bool,
    /// Figure files to write.
    pub format: Format,
    /// Study size; `--small` (hidden, for tests) selects the small configs.
    pub size: Size,
}

const ACCEPTED: &str = "--out DIR, --seed N, --only ID[,ID...], --format svg|png|both, --help";

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
    let mut only: Option<Vec<&'static Study>> = None;
    let mut format = Format::Both;
    let mut size = Size::Full;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |what: &str| -> Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("`{flag}` needs a value ({what})"))
        };
        match flag {
            "--help" | "-h" => return Ok(Parsed::Help),
            "--small" => size = Size::Small,
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
            _ if flag.starts_with('-') => return Err(format!("unknown flag `{arg}`; accepted: {ACCEPTED}")),
            _ => return Err(format!("unexpected argument `{arg}`; accepted: {ACCEPTED}")),
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn err(s: &str) -> String {
        match parse(&args(s)) {
            Err(e) => e,
            Ok(p) => panic!("`{s}` parsed as {p:?}"),
        }
    }

    #[test]
    fn parses_flags() {
        let Ok(Parsed::Run(o)) = parse(&args("--seed 7 --out x/y --format=svg --small")) else {
            panic!("did not parse")
        };
        assert_eq!((o.seed, o.format, o.size), (7, Format::Svg, Size::Small));
        assert_eq!(o.out, PathBuf::from("x/y"));
        assert_eq!(o.studies.len(), registry().len());
        assert!(matches!(parse(&args("--seed 1 --help")), Ok(Parsed::Help)));
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
    }
}
