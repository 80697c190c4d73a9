//! Criterion group `studies/full`: each registered study at its full-size config (seed
//! 42), to check that every one runs well under a second in release.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use norm_experiments::{Size, registry};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("studies/full");
    g.sample_size(10).measurement_time(Duration::from_secs(3));
    for study in registry() {
        g.bench_function(study.id, |b| {
            b.iter(|| black_box(study.run_sized(42, Size::Full)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
