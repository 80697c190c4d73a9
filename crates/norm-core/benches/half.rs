//! Criterion groups `half/*`: the bf16 and f16 forward (LayerNorm and RmsNorm, one
//! thread) on the AVX-512 and AVX2 paths (forced), beside the f32 forward of the same
//! shape on the same path and the copies of the same 16-bit bytes (`copy_u16`: memcpy;
//! `copy_u16_streaming`: non-temporal stores). Shapes: in cache (512×768); beyond the L2
//! caches (65536×512, 8192×4096: 64 MiB of bf16 input, which a large L3 still holds, as
//! the 260 MiB of the Xeon in docs/performance.md does); beyond every cache (262144×1024:
//! 512 MiB of bf16 input and as much output, 1 GiB each for f32, so both run from
//! memory). From 32 MiB of bf16 output the bf16 norm runs again with every output
//! streamed (`bf16-PATH-streaming`, to judge `Stores::Auto`'s choice). Throughput counts
//! bytes read + written (2 per element for the half types, 4 for f32), so the half rows
//! run at twice the GB/s of f32 rows at equal rows per second; the rows/s ratio is the
//! f32 time over the half time.
//!
//! Groups `widening/*`: the same bf16 and f16 forward per path with each row widened
//! once into an f32 scratch row by its first pass (`simd::Widening::Once`) and widened
//! again on every pass (`EveryPass`) side by side, at 512×768, 1024×768 and 4096×768
//! (3 and 12 MiB moved, either side of the 4 MiB up to which `Auto` widens once),
//! 65536×512 and 8192×4096: the measurement behind `Widening::Auto`. Same bits either
//! way. Out of cache each runs twice more with every output written with plain stores
//! (`-plain`, where `Stores::Auto` streams them): the measurement a store policy for
//! 16-bit outputs would rest on (streamed 16-bit stores are half or a quarter of a line
//! each).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_core::dispatch::ForcedPath;
use norm_core::simd::{Stores, Widening, set_widening};
use norm_core::{Element, KernelPath, LayerNorm, RmsNorm, bf16, ceiling, f16};

const SHAPES: [(usize, usize); 4] = [(512, 768), (65536, 512), (8192, 4096), (262144, 1024)];

fn data(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0)
        .collect()
}

/// Times `iters` calls of `f` on a one-thread pool.
fn on_pool(pool: &rayon::ThreadPool, iters: u64, mut f: impl FnMut() + Send) -> Duration {
    pool.install(|| {
        let t = Instant::now();
        for _ in 0..iters {
            f();
        }
        t.elapsed()
    })
}

/// The forward of norm `ln` (else RmsNorm) over `x` of element `E` on path `p`.
fn forward<E: Element>(
    p: ForcedPath,
    ln: bool,
    d: usize,
    x: &[E],
    y: &mut [E],
    s0: &mut [E::Acc],
    s1: &mut [E::Acc],
) {
    if ln {
        let n = LayerNorm::<E>::new(d).expect("d > 0");
        p.layer_norm_slice(&n, x, y, s0, s1)
    } else {
        let n = RmsNorm::<E>::new(d).expect("d > 0");
        p.rms_norm_slice(&n, x, y, s0)
    }
    .expect("valid shapes");
}

/// The pool every timing loop runs on: one thread.
fn one_thread_pool() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("1-thread pool")
}

/// The vector paths this CPU has (AVX-512F, AVX2+FMA), forced.
fn vector_paths() -> Vec<ForcedPath> {
    [KernelPath::Avx512, KernelPath::Avx2Fma]
        .into_iter()
        .filter_map(ForcedPath::new)
        .collect()
}

fn bench(c: &mut Criterion) {
    let (pool, paths) = (one_thread_pool(), vector_paths());
    for (name, ln) in [("layer_norm", true), ("rms_norm", false)] {
        let mut g = c.benchmark_group(format!("half/{name}"));
        for (rows, d) in SHAPES {
            let n = rows * d;
            let x32 = data(n);
            let xb: Vec<bf16> = x32.iter().map(|&v| bf16::from_f32(v)).collect();
            let xh: Vec<f16> = x32.iter().map(|&v| f16::from_f32(v)).collect();
            let xu: Vec<u16> = xb.iter().map(|v| v.to_bits()).collect();
            let (mut y32, mut yb, mut yh, mut yu) = (
                vec![0.0f32; n],
                vec![bf16::ZERO; n],
                vec![f16::ZERO; n],
                vec![0u16; n],
            );
            let (mut s0, mut s1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            let id = format!("{rows}x{d}");
            g.throughput(Throughput::BytesDecimal((2 * n * 2) as u64));
            g.bench_function(BenchmarkId::new("copy_u16", &id), |b| {
                b.iter_custom(|it| on_pool(&pool, it, || ceiling::copy_u16(black_box(&xu), &mut yu)))
            });
            g.bench_function(BenchmarkId::new("copy_u16_streaming", &id), |b| {
                b.iter_custom(|it| {
                    on_pool(&pool, it, || ceiling::copy_u16_streaming(black_box(&xu), &mut yu))
                })
            });
            for &p in &paths {
                let pn = p.path().name();
                g.throughput(Throughput::BytesDecimal((2 * n * 2) as u64));
                g.bench_function(BenchmarkId::new(format!("bf16-{pn}"), &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            forward(p, ln, d, black_box(&xb), &mut yb, &mut s0, &mut s1)
                        })
                    })
                });
                g.bench_function(BenchmarkId::new(format!("f16-{pn}"), &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            forward(p, ln, d, black_box(&xh), &mut yh, &mut s0, &mut s1)
                        })
                    })
                });
                if rows * d * 2 >= 32 << 20 {
                    // The same bf16 norm with every output streamed, whatever `Stores::Auto`
                    // decides for this size: what the store policy costs or saves here.
                    let ps = p.with_stores(Stores::Streaming);
                    g.bench_function(BenchmarkId::new(format!("bf16-{pn}-streaming"), &id), |b| {
                        b.iter_custom(|it| {
                            on_pool(&pool, it, || {
                                forward(ps, ln, d, black_box(&xb), &mut yb, &mut s0, &mut s1)
                            })
                        })
                    });
                }
                g.throughput(Throughput::BytesDecimal((2 * n * 4) as u64));
                g.bench_function(BenchmarkId::new(format!("f32-{pn}"), &id), |b| {
                    b.iter_custom(|it| {
                        on_pool(&pool, it, || {
                            forward(p, ln, d, black_box(&x32), &mut y32, &mut s0, &mut s1)
                        })
                    })
                });
            }
        }
        g.finish();
    }
}

/// Once against on every pass, per path, type and norm, side by side.
fn bench_widening(c: &mut Criterion) {
    let (pool, paths) = (one_thread_pool(), vector_paths());
    for (name, ln) in [("layer_norm", true), ("rms_norm", false)] {
        let mut g = c.benchmark_group(format!("widening/{name}"));
        for (rows, d) in [(512, 768), (1024, 768), (4096, 768), (65536, 512), (8192, 4096)] {
            let n = rows * d;
            let x32 = data(n);
            let xb: Vec<bf16> = x32.iter().map(|&v| bf16::from_f32(v)).collect();
            let xh: Vec<f16> = x32.iter().map(|&v| f16::from_f32(v)).collect();
            let (mut yb, mut yh) = (vec![bf16::ZERO; n], vec![f16::ZERO; n]);
            let (mut s0, mut s1) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            let id = format!("{rows}x{d}");
            g.throughput(Throughput::BytesDecimal((2 * n * 2) as u64));
            let stores: &[(Stores, &str)] = if rows * d * 2 >= 32 << 20 {
                &[(Stores::Auto, ""), (Stores::Cached, "-plain")]
            } else {
                &[(Stores::Auto, "")]
            };
            for (&p0, &(st, sn)) in paths.iter().flat_map(|p| stores.iter().map(move |s| (p, s))) {
                let p = p0.with_stores(st);
                let pn = format!("{}{sn}", p.path().name());
                for (mode, wn) in [(Widening::EveryPass, "every-pass"), (Widening::Once, "once")] {
                    g.bench_function(BenchmarkId::new(format!("bf16-{pn}-{wn}"), &id), |b| {
                        b.iter_custom(|it| {
                            set_widening(mode);
                            let t = on_pool(&pool, it, || {
                                forward(p, ln, d, black_box(&xb), &mut yb, &mut s0, &mut s1)
                            });
                            set_widening(Widening::Auto);
                            t
                        })
                    });
                    g.bench_function(BenchmarkId::new(format!("f16-{pn}-{wn}"), &id), |b| {
                        b.iter_custom(|it| {
                            set_widening(mode);
                            let t = on_pool(&pool, it, || {
                                forward(p, ln, d, black_box(&xh), &mut yh, &mut s0, &mut s1)
                            });
                            set_widening(Widening::Auto);
                            t
                        })
                    });
                }
            }
        }
        g.finish();
    }
}

criterion_group! {
    name = widening;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    targets = bench_widening
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches, widening);
