//! Criterion groups `prefetching/*`: the f32 rows of LayerNorm and RmsNorm, plain and
//! fused with the residual add, run one after another (`Pipelining::Never`: the rows
//! whose prefetch this measures) with and without software prefetches of the rows ahead
//! (`Prefetching::Always` / `Never`) side by side, on every kernel path this CPU
//! supports, one thread. The rule `Prefetching::Auto` applies
//! (`simd::software_prefetch_pays`: not on AMD CPUs) came from these groups; run them to
//! check it on another CPU. Both ways compute the same bits (tests/pipelining.rs), so
//! only the time differs.
//!
//! Groups `prefetch_reach/*`: the same rows as the public functions run them
//! (`Pipelining::Auto`), prefetching the rows ahead into L1 (`Prefetching::IntoL1`,
//! `prefetcht0`) against into L2 only (`IntoL2`, `prefetcht1`), side by side: the
//! measurement behind the forward's rule (L1 for calls with plain stores, in cache; L2
//! for calls whose outputs stream, out of cache).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::dispatch::ForcedPath;
use norm_core::simd::{Pipelining, Prefetching, set_pipelining, set_prefetching};
use norm_core::{KernelPath, LayerNorm, RmsNorm};

/// The forward groups' in-cache shape, and rows of 2 KiB and 16 KiB far beyond the
/// caches (128 MiB per array, outputs streamed).
const SHAPES: [(usize, usize); 3] = [(512, 768), (65536, 512), (8192, 4096)];

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Times `iters` calls of `f` on `pool` with `modes` in force (criterion's `Criterion`
/// is not `Send`, so the pool runs the timing loop), restoring `Auto` after.
fn timed(
    pool: &rayon::ThreadPool,
    modes: (Prefetching, Pipelining),
    iters: u64,
    mut f: impl FnMut() + Send,
) -> Duration {
    set_pipelining(modes.1);
    set_prefetching(modes.0);
    let t = pool.install(|| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed()
    });
    set_pipelining(Pipelining::Auto);
    set_prefetching(Prefetching::Auto);
    t
}

/// `prefetching/*`: rows one after another, without and with the prefetch.
fn bench(c: &mut Criterion) {
    groups(
        c,
        "prefetching",
        [
            ((Prefetching::Never, Pipelining::Never), "no-prefetch"),
            ((Prefetching::Always, Pipelining::Never), "prefetch"),
        ],
        true,
    );
}

/// `prefetch_reach/*`: the rows as the public functions run them, prefetched into L1
/// and into L2.
fn bench_reach(c: &mut Criterion) {
    groups(
        c,
        "prefetch_reach",
        [
            ((Prefetching::IntoL1, Pipelining::Auto), "l1"),
            ((Prefetching::IntoL2, Pipelining::Auto), "l2"),
        ],
        false,
    );
}

/// One group `{prefix}/{norm}` per norm (plain and fused), each shape and path timed
/// under both `modes` side by side.
/// `portable`: whether the portable path runs too (its prefetches are no-ops, so it has
/// no reach to compare).
fn groups(c: &mut Criterion, prefix: &str, modes: [((Prefetching, Pipelining), &str); 2], portable: bool) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("1-thread pool");
    for (name, is_ln, fused) in [
        ("layer_norm", true, false),
        ("rms_norm", false, false),
        ("layer_norm_add", true, true),
        ("rms_norm_add", false, true),
    ] {
        let mut g = c.benchmark_group(format!("{prefix}/{name}"));
        for (rows, d) in SHAPES {
            let n = rows * d;
            let (x, r) = (data(n, 1), data(n, 2));
            let (mut res, mut h, mut y) = (r.clone(), vec![0.0f32; n], vec![0.0f32; n]);
            let (mut s0, mut s1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
            let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
            let id = format!("{rows}x{d}");
            // Bytes read plus written: x and y, and for the fused rows r and h too.
            let arrays = if fused { 4 } else { 2 };
            g.throughput(Throughput::BytesDecimal((arrays * n * 4) as u64));
            for p in ForcedPath::all() {
                if !portable && p.path() == KernelPath::Portable {
                    continue;
                }
                for (mode, label) in modes {
                    let fname = format!("{}-{label}", p.path().name());
                    g.bench_function(BenchmarkId::new(fname, &id), |b| {
                        b.iter_custom(|it| {
                            timed(&pool, mode, it, || {
                                match (is_ln, fused) {
                                    (true, false) => p.layer_norm_slice(&ln, &x, &mut y, &mut s0, &mut s1),
                                    (false, false) => p.rms_norm_slice(&rms, &x, &mut y, &mut s0),
                                    (true, true) => {
                                        p.layer_norm_add_slice(&ln, &x, &mut res, Some(&mut h), &mut y)
                                    }
                                    (false, true) => {
                                        p.rms_norm_add_slice(&rms, &x, &mut res, Some(&mut h), &mut y)
                                    }
                                }
                                .expect("valid shapes");
                                black_box(&y);
                            })
                        })
                    });
                }
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench, bench_reach
}
criterion_main!(benches);
