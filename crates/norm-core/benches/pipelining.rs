//! Criterion groups `pipelining/*`: the f32 rows of LayerNorm and RmsNorm, plain and
//! fused with the residual add, run one after another (`Pipelining::Never`) and
//! pipelined (`Pipelining::Always`: the next row's first reduction beside this row's
//! write pass) side by side, on every kernel path this CPU supports, one thread. The
//! rule `Pipelining::Auto` applies (rows in cache: `simd::pipelines_wide_rows`,
//! pipelined on AMD CPUs; rows out of cache: pipelined on the x86-64 paths where
//! `simd::software_prefetch_pays`) came from these groups and from the one-binary runs
//! quoted at `kernels/mod.rs` `pipelines`; run them to check it on another CPU. Both
//! ways compute the same bits (tests/pipelining.rs), so only the time differs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::dispatch::ForcedPath;
use norm_core::simd::{Pipelining, set_pipelining};
use norm_core::{LayerNorm, RmsNorm};

/// A decode-sized batch (in L2), the forward groups' in-cache shape, and rows of 2 KiB
/// far beyond the caches (128 MiB per array). Rows over 8 KiB never run pipelined.
const SHAPES: [(usize, usize); 3] = [(64, 768), (512, 768), (65536, 512)];

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// Times `iters` calls of `f` on `pool` with `mode` in force (criterion's `Criterion`
/// is not `Send`, so the pool runs the timing loop), restoring `Auto` after.
fn timed(pool: &rayon::ThreadPool, mode: Pipelining, iters: u64, mut f: impl FnMut() + Send) -> Duration {
    set_pipelining(mode);
    let t = pool.install(|| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed()
    });
    set_pipelining(Pipelining::Auto);
    t
}

fn bench(c: &mut Criterion) {
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
        let mut g = c.benchmark_group(format!("pipelining/{name}"));
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
                for (mode, label) in [
                    (Pipelining::Never, "one-by-one"),
                    (Pipelining::Always, "pipelined"),
                ] {
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
    targets = bench
}
criterion_main!(benches);
