//! `cargo xtask report`: runs the chosen studies in parallel (each on its own seeded
//! stream, so threads never change a number), renders their figures, writes the report
//! into a temporary folder beside `--out`, and only then moves it into place.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use norm_experiments::{Progress, RunConfig, Size};
use norm_report::{Format, RunInfo, StudyOutput, format_value, write_report};

use crate::flags::Options;

/// The run's study configs: the defaults (or the small test configs), then the
/// `--config` file, then each `--set` in order, all checked by the studies' own types and
/// `validate()`. Any refusal is one line (exit code 2), before anything is written.
pub fn configure(opts: &Options) -> Result<RunConfig, String> {
    let mut cfg = RunConfig::new(opts.size).map_err(|e| e.to_string())?;
    if let Some(path) = &opts.config {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read --config `{}`: {e}", path.display()))?;
        cfg.apply_toml(&text, &format!("--config `{}`", path.display()))
            .map_err(|e| e.to_string())?;
    }
    for s in &opts.sets {
        cfg.apply_set(s).map_err(|e| e.to_string())?;
    }
    cfg.validate().map_err(|e| e.to_string())?;
    Ok(cfg)
}

/// Runs the report with the configs from [`configure`]; returns the path of
/// `index.html` or a one-line error.
pub fn run(opts: &Options, cfg: &RunConfig) -> Result<PathBuf, String> {
    let out =
        std::path::absolute(&opts.out).map_err(|e| format!("bad --out `{}`: {e}", opts.out.display()))?;
    let staging = Staging::create(&out)?;
    let started = Instant::now();
    let outputs = run_studies(opts, cfg, &out)?;
    let info = RunInfo {
        seed: opts.seed,
        size: match opts.size {
            Size::Full => "full (each study's default config)".into(),
            Size::Small => "small (test configs)".into(),
        },
        versions: versions(),
        command: command(opts, cfg),
        config_changes: cfg.changes(),
    };
    write_report(&staging.dir, &info, &outputs).map_err(|e| e.to_string())?;
    staging.publish()?;
    eprintln!(
        "{} studies in {:.2} s",
        outputs.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(out.join("index.html"))
}

/// The command that reproduces this report's bytes (the output folder does not matter).
fn command(opts: &Options, cfg: &RunConfig) -> String {
    let mut c = format!("cargo xtask report --seed {}", opts.seed);
    if opts.only {
        let ids: Vec<&str> = opts.studies.iter().map(|s| s.id).collect();
        c.push_str(&format!(" --only {}", ids.join(",")));
    }
    match opts.format {
        Format::Both => {}
        Format::Svg => c.push_str(" --format svg"),
        Format::Png => c.push_str(" --format png"),
    }
    if opts.size == Size::Small {
        c.push_str(" --small");
    }
    // Every changed value as a --set, so the command stands alone without the --config
    // file. Values are TOML; single quotes keep a shell from reading them.
    for ch in cfg.changes() {
        c.push_str(&format!(" --set '{}.{}={}'", ch.study, ch.field, ch.value));
    }
    c
}

/// Runs and renders every chosen study on a small pool of scoped threads, slowest first
/// by the previous report's timings; prints one line per study as it finishes. Outputs
/// come back in registry order.
fn run_studies(opts: &Options, cfg: &RunConfig, out: &Path) -> Result<Vec<StudyOutput>, String> {
    let n = opts.studies.len();
    // Start the studies that took longest last time first (the order changes no number).
    let previous = norm_report::page::previous_run_seconds(&out.join("timings.json"));
    let cost = |id: &str| {
        previous
            .iter()
            .find(|(p, _)| p == id)
            .map_or(f64::INFINITY, |p| p.1)
    };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| cost(opts.studies[b].id).total_cmp(&cost(opts.studies[a].id)));
    let threads = std::thread::available_parallelism()
        .map_or(2, |p| p.get())
        .min(n)
        .max(1);
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<Result<StudyOutput, String>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let study = opts.studies[i];
                    let t = Instant::now();
                    let result = cfg.run_with_progress(study.id, opts.seed, &progress_printer(study.id));
                    let run_time = t.elapsed();
                    let output = result
                        .map_err(|e| format!("study `{}` failed: {e}", study.id))
                        .and_then(|r| {
                            StudyOutput::render(r, opts.format, run_time)
                                .map_err(|e| format!("rendering study `{}` failed: {e}", study.id))
                        });
                    match &output {
                        Ok(o) => {
                            let key = o
                                .result
                                .findings
                                .iter()
                                .find(|f| f.summary)
                                .map_or_else(String::new, |f| {
                                    format!("{} [{}]", f.statement, format_value(f.value))
                                });
                            println!(
                                "{:<24} {:>6.2} s  {key}",
                                study.id,
                                (o.run_time + o.render_time).as_secs_f64()
                            );
                        }
                        Err(e) => println!("{:<24} failed: {e}", study.id),
                    }
                    if let Ok(mut s) = slots.lock() {
                        s[i] = Some(output);
                    }
                }
            });
        }
    });
    let slots = slots
        .into_inner()
        .map_err(|_| "a study thread panicked".to_string())?;
    let mut outputs = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for (slot, study) in slots.into_iter().zip(&opts.studies) {
        match slot {
            Some(Ok(o)) => outputs.push(o),
            Some(Err(e)) => errors.push(e),
            None => errors.push(format!(
                "study `{}` did not finish (its thread panicked)",
                study.id
            )),
        }
    }
    if errors.is_empty() {
        Ok(outputs)
    } else {
        Err(errors.join("; "))
    }
}

/// Prints a study's progress on stderr (stdout and the report never see it): at most one
/// line every 2 s, and the last unit, so a long study shows it is alive without flooding
/// the terminal. Plain lines rather than a progress-bar crate: xtask stays light, and the
/// lines read the same in a terminal, a CI log or a pipe.
fn progress_printer(id: &'static str) -> impl Fn(Progress<'_>) + Sync {
    let last: Mutex<Option<Instant>> = Mutex::new(None);
    move |p: Progress<'_>| {
        let Ok(mut last) = last.lock() else {
            return;
        };
        if p.done == p.total || last.is_none_or(|t| t.elapsed().as_secs_f64() >= 2.0) {
            *last = Some(Instant::now());
            eprintln!("  {id}: {}/{} done ({})", p.done, p.total, p.what);
        }
    }
}

/// Versions of the workspace crates and the main dependencies, read from `Cargo.lock`.
fn versions() -> Vec<(String, String)> {
    const CRATES: [&str; 10] = [
        "norm-core",
        "norm-autograd",
        "norm-experiments",
        "norm-report",
        "ndarray",
        "rand",
        "rand_chacha",
        "rand_distr",
        "resvg",
        "maud",
    ];
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let Ok(text) = std::fs::read_to_string(lock) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut name: Option<&str> = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("name = ") {
            name = Some(v.trim_matches('"'));
        } else if let (Some(n), Some(v)) = (name, line.strip_prefix("version = ")) {
            if CRATES.contains(&n) {
                found.push((n.to_string(), v.trim_matches('"').to_string()));
            }
            name = None;
        }
    }
    // Several versions of one crate can be locked (e.g. a dev-dependency's older rand):
    // list the newest, which is the one the workspace pins.
    let key = |v: &str| {
        v.split(['.', '-'])
            .map(|p| p.parse::<u64>().unwrap_or(0))
            .collect::<Vec<_>>()
    };
    found.sort_by(|a, b| {
        let pos = |n: &str| CRATES.iter().position(|c| *c == n);
        pos(&a.0).cmp(&pos(&b.0)).then_with(|| key(&b.1).cmp(&key(&a.1)))
    });
    found.dedup_by(|later, earlier| later.0 == earlier.0);
    found
}

/// A temporary folder beside the output folder; removed unless published.
struct Staging {
    dir: PathBuf,
    out: PathBuf,
    /// The file name of `out`.
    name: String,
    published: bool,
}

impl Staging {
    /// Creates `.<name>.tmp-<pid>` beside `out`. Fails early (before any study runs) if
    /// `out` cannot be written or is an existing folder that is not a report.
    fn create(out: &Path) -> Result<Self, String> {
        let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
            return Err(format!(
                "cannot write the report to `{}`: not a folder path",
                out.display()
            ));
        };
        let name = name.to_string_lossy();
        if out.exists() {
            if !out.is_dir() {
                return Err(format!(
                    "cannot write the report to `{}`: it exists and is not a folder",
                    out.display()
                ));
            }
            let empty = std::fs::read_dir(out)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty && !out.join("index.html").is_file() {
                return Err(format!(
                    "refusing to replace `{}`: it is a non-empty folder without index.html (not a report); choose another --out",
                    out.display()
                ));
            }
        }
        std::fs::create_dir_all(parent).map_err(|e| {
            format!(
                "cannot write the report to `{}`: cannot create `{}`: {e}",
                out.display(),
                parent.display()
            )
        })?;
        remove_leftovers(parent, &name);
        let dir = parent.join(format!(".{name}.tmp-{}", std::process::id()));
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir(&dir)
            .map_err(|e| format!("cannot write the report to `{}`: {e}", out.display()))?;
        Ok(Self {
            dir,
            out: out.to_path_buf(),
            name: name.into_owned(),
            published: false,
        })
    }

    /// Moves the finished report into place, replacing an earlier report.
    fn publish(mut self) -> Result<(), String> {
        let fail = |e: std::io::Error| format!("cannot move the report into `{}`: {e}", self.out.display());
        if self.out.exists() {
            // A name of this run's own: a stale `.NAME.old*` left by a killed run can
            // never make the rename fail.
            let old = self
                .dir
                .with_file_name(format!(".{}.old-{}", self.name, std::process::id()));
            std::fs::rename(&self.out, &old).map_err(fail)?;
            if let Err(e) = std::fs::rename(&self.dir, &self.out) {
                // Put the earlier report back rather than leave nothing.
                let _ = std::fs::rename(&old, &self.out);
                return Err(fail(e));
            }
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&self.dir, &self.out).map_err(fail)?;
        }
        self.published = true;
        Ok(())
    }
}

/// Removes what killed runs left beside the output folder `NAME`: staging folders
/// `.NAME.tmp-PID` and replaced reports `.NAME.old-PID` (and the `.NAME.old` of earlier
/// versions) whose process is gone, if they hold report files only (`norm_report::REPORT_ENTRIES`), so a folder that is
/// not a report is never deleted. Best effort: a
/// folder that cannot be read or removed is left alone.
fn remove_leftovers(parent: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(&prefix)) else {
            continue;
        };
        let owner = match rest {
            "old" => None,
            _ => match rest.strip_prefix("tmp-").or_else(|| rest.strip_prefix("old-")) {
                Some(pid) => match pid.parse::<u32>() {
                    Ok(pid) => Some(pid),
                    Err(_) => continue,
                },
                None => continue,
            },
        };
        if owner.is_some_and(process_may_be_alive) {
            continue;
        }
        let path = entry.path();
        if holds_report_files_only(&path) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Whether process `pid` may still be running (it may be writing its staging folder).
/// Without `/proc` there is no way to know, so the answer is yes and nothing is removed.
fn process_may_be_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

/// Whether `dir` is a folder (not a symlink) whose entries are all report entries.
fn holds_report_files_only(dir: &Path) -> bool {
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    is_dir
        && entries.into_iter().all(|e| {
            e.ok()
                .and_then(|e| {
                    e.file_name()
                        .to_str()
                        .map(|n| norm_report::REPORT_ENTRIES.contains(&n))
                })
                .unwrap_or(false)
        })
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
