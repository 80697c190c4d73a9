//! `cargo xtask`: the project's tasks, run with `cargo xtask <task>`: `report` runs the
//! studies, renders the figures and writes the report folder; `bench-peers` times
//! norm-core against candle-nn and naive ndarray. Flags are lexed by `lexopt` (small, so
//! this binary stays quick to build) in `flags.rs`.

mod bench_peers;
mod flags;
mod report;
#[cfg(test)]
mod tidy;

use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  report       run the studies and write the report (index.html, report.md, figures, data)
  bench-peers  time norm-core vs candle-nn vs naive ndarray vs a copy (release build;
               the first build compiles candle; flags: --quick, --budget-ms N, --out DIR)

cargo xtask report [--out DIR] [--seed N] [--only ID[,ID...]] [--format svg|png|both]
                   [--set ID.FIELD=VALUE]... [--config FILE.toml] [--print-config]
  --out DIR             where to write the report (default: target/report in the workspace)
  --seed N              run seed, a non-negative integer (default: 42)
  --only ID,...         run only these studies (ids below)
  --format F            figure files: svg, png or both (default: both)
  --set ID.FIELD=VALUE  change one field of a study's config (repeatable; later wins)
  --config FILE.toml    read study configs from a file (one table per study id)
  --print-config        print the configuration as TOML and exit
  --help                print this help
Each flag but --set may be given once.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("report") => match flags::parse(&args[1..]) {
            Ok(flags::Parsed::Help) => {
                println!("{USAGE}\n\nstudy ids: {}", flags::study_ids());
                ExitCode::SUCCESS
            }
            Ok(flags::Parsed::Run(opts)) => match report::configure(&opts) {
                // A config that does not fit is a usage error: exit 2, nothing written.
                Err(msg) => {
                    eprintln!("error: {msg}");
                    ExitCode::from(2)
                }
                Ok(cfg) if opts.print_config => {
                    print!("{}", cfg.to_toml());
                    ExitCode::SUCCESS
                }
                Ok(cfg) => match report::run(&opts, &cfg) {
                    Ok(index) => {
                        println!("{}", index.display());
                        ExitCode::SUCCESS
                    }
                    Err(msg) => {
                        eprintln!("error: {msg}");
                        ExitCode::FAILURE
                    }
                },
            },
            Err(msg) => {
                eprintln!("error: {msg}");
                ExitCode::from(2)
            }
        },
        Some("bench-peers") => bench_peers::run(&args[1..]),
        Some("--help" | "-h" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!(
                "error: unknown task `{other}`; accepted: report, bench-peers (see `cargo xtask --help`)"
            );
            ExitCode::from(2)
        }
        None => {
            eprintln!("error: no task given; accepted: report, bench-peers (see `cargo xtask --help`)");
            ExitCode::from(2)
        }
    }
}
