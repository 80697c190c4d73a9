//! Criterion groups `paths/*`: LayerNorm and RmsNorm forward (f32, one thread) on every
//! kernel path this CPU supports (portable, AVX2+FMA, AVX-512F), beside a copy kernel
//! (`y = x · c`) as the ceiling, with plain and with non-temporal stores
//! (`norm_core::ceiling`), in cache and out of cache.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::dispatch::ForcedPath;
use norm_core::{LayerNorm, RmsNorm, ceiling};

const SHAPES: [(usize, usize); 4] = [(64, 768), (512, 768), (65536, 512), (8192, 4096)];

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
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("1-thread pool");
    {
        for (name, is_ln) in [("layer_norm", true), ("rms_norm", false)] {
            let mut g = c.benchmark_group(format!("paths/{name}"));
            for (rows, d) in SHAPES {
                let n = rows * d;
                let x = data(n);
                let mut y = vec![0.0f32; n];
                let (mut s0, mut s1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
                let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
                let id = format!("{rows}x{d}");
                g.throughput(Throughput::BytesDecimal((2 * n * 4) as u64));
                g.bench_function(BenchmarkId::new("copy", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            ceiling::scale(&x, &mut y, 1.5);
                            black_box(&y);
                        })
                    })
                });
                g.bench_function(BenchmarkId::new("copy_streaming", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            ceiling::scale_streaming(&x, &mut y, 1.5);
                            black_box(&y);
                        })
                    })
                });
                for p in ForcedPath::all() {
                    g.bench_function(BenchmarkId::new(p.path().name(), &id), |b| {
                        b.iter_custom(|it| {
                            on_pool(&pool, it, || {
                                if is_ln {
                                    p.layer_norm_slice(&ln, &x, &mut y, &mut s0, &mut s1)
                                } else {
                                    p.rms_norm_slice(&rms, &x, &mut y, &mut s0)
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
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
