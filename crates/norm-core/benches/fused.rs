//! Criterion group `fused_add_norm`: fused residual add + norm (`h = x + r; y = norm(h)`)
//! against an add followed by the norm, for LayerNorm and RmsNorm, f32, one thread, plus
//! the simplest kernel with the same traffic (read two arrays, write two) as the ceiling,
//! with plain and with non-temporal stores (`norm_core::ceiling`; the norms stream
//! outputs of at least `simd::stream_min_bytes()`, the out-of-cache shapes here).
//!
//! Throughput counts the fused minimum traffic (x, r read; h, y written) for every entry,
//! so GB/s compare directly: more GB/s is less time for the same job.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::{LayerNorm, RmsNorm, ceiling};

/// (rows, d): a decode-sized batch (all four arrays in L2), the forward groups' in-cache
/// shape, and two shapes far beyond the caches.
const SHAPES: [(usize, usize); 4] = [(64, 768), (512, 768), (65536, 512), (8192, 4096)];

fn data(n: usize, seed: u32) -> Vec<f32> {
    // A cheap deterministic pattern with per-row structure; values of order 1.
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn add(x: &[f32], r: &[f32], h: &mut [f32]) {
    for ((h, &a), &b) in h.iter_mut().zip(x).zip(r) {
        *h = a + b;
    }
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
            let mut g = c.benchmark_group(format!("fused_add_norm/{name}"));
            for (rows, d) in SHAPES {
                let n = rows * d;
                let x = data(n, 1);
                let r0 = data(n, 2);
                let (mut h, mut y) = (vec![0.0f32; n], vec![0.0f32; n]);
                let mut stream = r0.clone();
                let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
                let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
                let norm = |h: &[f32], y: &mut [f32]| {
                    if is_ln {
                        ln.forward_slice(h, y)
                    } else {
                        rms.forward_slice(h, y)
                    }
                    .expect("valid shapes")
                };
                let id = format!("{rows}x{d}");
                g.throughput(Throughput::BytesDecimal((4 * n * 4) as u64));
                g.bench_function(BenchmarkId::new("fused", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            if is_ln {
                                ln.add_forward_slice(&x, &r0, &mut h, &mut y)
                            } else {
                                rms.add_forward_slice(&x, &r0, &mut h, &mut y)
                            }
                            .expect("valid shapes");
                            black_box(&y);
                        })
                    })
                });
                g.bench_function(BenchmarkId::new("add_then_norm", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            add(&x, &r0, &mut h);
                            norm(&h, &mut y);
                            black_box(&y);
                        })
                    })
                });
                g.bench_function(BenchmarkId::new("fused_inplace", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            if is_ln {
                                ln.add_forward_slice_inplace(&x, &mut stream, &mut y)
                            } else {
                                rms.add_forward_slice_inplace(&x, &mut stream, &mut y)
                            }
                            .expect("valid shapes");
                            black_box(&y);
                        })
                    })
                });
                stream.copy_from_slice(&r0);
                g.bench_function(BenchmarkId::new("add_inplace_then_norm", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            for (s, &a) in stream.iter_mut().zip(&x) {
                                *s += a;
                            }
                            norm(&stream, &mut y);
                            black_box(&y);
                        })
                    })
                });
                // Ceiling: the same bytes moved by the simplest kernel (2 in, 2 out).
                g.bench_function(BenchmarkId::new("copy_2in_2out", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            ceiling::add_scale(&x, &r0, &mut h, &mut y, 1.5);
                            black_box(&y);
                        })
                    })
                });
                g.bench_function(BenchmarkId::new("copy_2in_2out_streaming", &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            ceiling::add_scale_streaming(&x, &r0, &mut h, &mut y, 1.5);
                            black_box(&y);
                        })
                    })
                });
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
