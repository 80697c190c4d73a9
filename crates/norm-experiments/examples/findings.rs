//! Prints every registered study's findings and timings at full size for one seed
//! (default 42): `cargo run --release -p norm-experiments --example findings [-- SEED]`.

use std::time::Instant;

use norm_experiments::{Size, registry};

fn main() {
    let seed = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(42u64);
    for study in registry() {
        let t = Instant::now();
        match study.run_sized(seed, Size::Full) {
            Ok(r) => {
                println!("== {} ({:.0} ms)", r.id, t.elapsed().as_secs_f64() * 1e3);
                for f in r.findings.iter().chain(&r.timings) {
                    let mark = if f.summary { "*" } else { " " };
                    println!(
                        "{mark} {} = {:e} {}\n    {}",
                        f.name, f.value, f.unit, f.statement
                    );
                }
            }
            Err(e) => println!("== {}: error: {e}", study.id),
        }
    }
}
