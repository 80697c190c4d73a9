//! Criterion groups `threads/*`: LayerNorm and RmsNorm forward (f32) on a rayon pool of 1
//! and of 2 threads, beside a copy kernel (`y = x · c`, one thread) as the bandwidth
//! ceiling, on an in-cache shape, a small batch that stays serial, and an out-of-cache shape;
//! and `threads/layer_norm_strided`: a transposed (strided-lane) input against the same
//! values contiguous, on 1 and 2 threads.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::{LayerNorm, RmsNorm, ceiling};

/// (rows, d): a decode-sized batch (serial path), in cache, and out of cache.
const SHAPES: [(usize, usize); 3] = [(4, 768), (512, 768), (65536, 512)];

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0)
        .collect()
}

/// Times `iters` calls of `f` on `pool` (criterion's `Criterion` is not `Send`, so the
/// pool runs the timing loop, not the benchmark harness).
fn on_pool(pool: &rayon::ThreadPool, iters: u64, mut f: impl FnMut() + Send) -> Duration {
    pool.install(|| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed()
    })
}

fn bench(c: &mut Criterion) {
    let pools: Vec<_> = [1usize, 2]
        .into_iter()
        .map(|n| {
            (
                n,
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .expect("pool"),
            )
        })
        .collect();
    for (name, is_ln) in [("layer_norm", true), ("rms_norm", false)] {
        let mut g = c.benchmark_group(format!("threads/{name}"));
        for (rows, d) in SHAPES {
            let n = rows * d;
            let x = data(n);
            let mut y = vec![0.0f32; n];
            let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
            let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
            let id = format!("{rows}x{d}");
            g.throughput(Throughput::BytesDecimal((2 * n * 4) as u64));
            g.bench_function(BenchmarkId::new("copy", &id), |b| {
                b.iter(|| {
                    ceiling::scale(&x, &mut y, 1.5);
                    black_box(&y);
                })
            });
            for (t, pool) in &pools {
                g.bench_function(BenchmarkId::new(format!("{t}_threads"), &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(pool, it, || {
                            if is_ln {
                                ln.forward_slice(&x, &mut y)
                            } else {
                                rms.forward_slice(&x, &mut y)
                            }
                            .expect("valid shapes");
                            black_box(&y);
                        })
                    })
                });
            }
        }
        g.finish();
    }
    // Strided lanes: LayerNorm over the columns of a 768×4096 array (a transposed view,
    // 4096 lanes of 768 with stride 4096; each lane gathered through scratch rows), into
    // a contiguous output, on 1 and 2 threads, beside the contiguous 4096×768 input.
    let mut g = c.benchmark_group("threads/layer_norm_strided");
    let (rows, d) = (4096usize, 768usize);
    let a = ndarray::Array2::from_shape_vec((d, rows), data(rows * d)).expect("shape");
    let dense = a.t().as_standard_layout().into_owned();
    let mut y = ndarray::Array2::<f32>::zeros((rows, d));
    let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
    let id = format!("{rows}x{d}");
    g.throughput(Throughput::BytesDecimal((2 * rows * d * 4) as u64));
    for (t, pool) in &pools {
        for (what, x) in [("transposed", a.t()), ("contiguous", dense.view())] {
            g.bench_function(BenchmarkId::new(format!("{what}_{t}_threads"), &id), |b| {
                b.iter_custom(|it| {
                    on_pool(pool, it, || {
                        ln.forward_into(&x, &mut y).expect("valid shapes");
                        black_box(&y);
                    })
                })
            });
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
