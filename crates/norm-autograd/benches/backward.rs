//! Criterion benchmarks of the f32 backward kernels, side by side with `z = a + c·b`
//! over the same bytes (read two arrays, write one): the memory-bandwidth ceilings they
//! are judged against (`norm_core::ceiling`), with plain stores (`axpy_ceiling`) and
//! non-temporal ones (`axpy_streaming_ceiling`). Groups `layer_norm_backward` (with
//! dbeta) and `rms_norm_backward` (without); shapes (rows × d) 64×768 (fits L2), 512×768
//! (fits L2/L3), 65536×512 and 8192×4096 (far beyond the caches). Per shape: each kernel
//! path this CPU supports, forced (`avx512`, `avx2-fma`, `portable`: norm-core's
//! `ForcedPath`, one thread, dx stored as the public functions would) and `threads2`
//! (the public function on a 2-thread rayon pool). Throughput counts the bytes touched,
//! `3 · rows · d · 4` (read x and dy, write dx; the per-row statistics and the d-long
//! dgamma/dbeta are negligible), so results read as GB/s.
//!
//! Group `half_backward`: the LayerNorm backward (with dbeta) over bf16 and f16 rows
//! beside the f32 backward of the same rows, per vector path (forced, one thread), at
//! 512×768 (in cache) and 65536×512 (out of cache); throughput in elements (`rows · d`),
//! so the ratio of two results is the ratio of rows per second.
//!
//! Group `prefetching_backward`: the LayerNorm (with dbeta) and RmsNorm backward per
//! vector path (forced, one thread) with and without software prefetches of the rows
//! ahead (`norm_core::simd::Prefetching::Always` / `Never`) side by side, in cache
//! (512×768) and out of cache (65536×512, 8192×4096). The rule `Prefetching::Auto`
//! applies came from it: out of cache the backward prefetches on every CPU (faster with
//! it on AMD too, unlike the forward: norm-core's `prefetching/*`), in cache where
//! `simd::software_prefetch_pays` (not on AMD CPUs). Both ways compute the same bits;
//! throughput as in the first groups.
//!
//! Group `pipelining_backward`: the same kernels out of cache (65536×512, 8192×4096)
//! with their rows pipelined (`Pipelining::Always`, what `Auto` does) and one by one
//! (`Never`) side by side, per path.
//!
//! The backward writes dx with non-temporal stores when dx is at least
//! `norm_core::simd::stream_min_bytes()`, which skips reading each output line first;
//! out of cache the fair ceiling is then the faster of the two.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_autograd::__private::{
    BackwardInput, ForcedPath, Saved, Sweep, backward_half_slice_on, backward_slice_on,
};
use norm_autograd::GradSlices;
use norm_autograd::{layer_norm_backward_slice, rms_norm_backward_slice};
use norm_core::ceiling::{axpy, axpy_streaming};
use norm_core::simd::{Pipelining, Prefetching, set_pipelining, set_prefetching};
use norm_core::{Half, LayerNorm, RmsNorm, bf16, f16};

/// (rows, d): in L2, in cache, out of cache with short rows, out of cache with long rows.
const SHAPES: [(usize, usize); 4] = [(64, 768), (512, 768), (65536, 512), (8192, 4096)];

/// Deterministic activation-like values of order 1 with per-row structure.
fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    for (name, is_ln) in [("layer_norm_backward", true), ("rms_norm_backward", false)] {
        let mut g = c.benchmark_group(name);
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));
        for (rows, d) in SHAPES {
            let n = rows * d;
            let x = data(n, 1);
            let dy = data(n, 2);
            let mut dx = vec![0.0f32; n];
            let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
            let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
            let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
            let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
            ln.forward_slice_with_stats(&x, &mut dx, &mut mean, &mut rstd)
                .expect("shapes match");
            let mut rrms = vec![0.0f32; rows];
            rms.forward_slice_with_stats(&x, &mut dx, &mut rrms)
                .expect("shapes match");
            let id = format!("{rows}x{d}");
            g.throughput(Throughput::BytesDecimal((3 * n * 4) as u64));
            g.bench_function(BenchmarkId::new("axpy_ceiling", &id), |b| {
                b.iter(|| {
                    axpy(&x, &dy, &mut dx, 0.5);
                    black_box(&dx);
                })
            });
            g.bench_function(BenchmarkId::new("axpy_streaming_ceiling", &id), |b| {
                b.iter(|| {
                    axpy_streaming(&x, &dy, &mut dx, 0.5);
                    black_box(&dx);
                })
            });
            let two = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .expect("pool");
            let mut run = |path: Option<ForcedPath>| {
                let grads = GradSlices {
                    dx: &mut dx,
                    dgamma: &mut dgamma,
                    dbeta: is_ln.then_some(&mut dbeta[..]),
                };
                match (is_ln, path) {
                    (true, None) => layer_norm_backward_slice(&ln, &x, &dy, &mean, &rstd, grads),
                    (false, None) => rms_norm_backward_slice(&rms, &x, &dy, &rrms, grads),
                    (_, Some(p)) => {
                        let (weight, eps, saved) = if is_ln {
                            let saved = Saved::LayerNorm {
                                mean: &mean,
                                rstd: &rstd,
                            };
                            (ln.weight(), ln.eps(), saved)
                        } else {
                            (rms.weight(), rms.eps(), Saved::RmsNorm { rrms: &rrms })
                        };
                        let input = BackwardInput {
                            weight,
                            eps,
                            x: &x,
                            dy: &dy,
                            saved,
                        };
                        backward_slice_on(p, Sweep::Serial, input, grads)
                    }
                }
                .expect("shapes match");
                black_box((&dx, &dgamma, &dbeta));
            };
            for p in ForcedPath::all().into_iter().rev() {
                g.bench_function(BenchmarkId::new(p.path().name(), &id), |b| {
                    b.iter(|| run(Some(p)))
                });
            }
            g.bench_function(BenchmarkId::new("threads2", &id), |b| {
                two.install(|| b.iter(|| run(None)))
            });
        }
        g.finish();
    }
}

/// The LayerNorm backward over `rows × d` rows of `H` on `path` (dbeta computed).
fn half_case<H: Half>(path: ForcedPath, rows: usize, d: usize) -> impl FnMut() {
    let n = rows * d;
    let x: Vec<H> = data(n, 1).into_iter().map(H::from_acc).collect();
    let dy: Vec<H> = data(n, 2).into_iter().map(H::from_acc).collect();
    let ln = LayerNorm::<H>::new(d).expect("dim > 0");
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let mut dx = vec![H::default(); n];
    ln.forward_slice_with_stats(&x, &mut dx, &mut mean, &mut rstd)
        .expect("shapes match");
    let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
    move || {
        let input = BackwardInput {
            weight: ln.weight(),
            eps: ln.eps(),
            x: &x,
            dy: &dy,
            saved: Saved::LayerNorm {
                mean: &mean,
                rstd: &rstd,
            },
        };
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dgamma,
            dbeta: Some(&mut dbeta[..]),
        };
        backward_half_slice_on(path, Sweep::Serial, input, grads).expect("shapes match");
        black_box((&dx, &dgamma, &dbeta));
    }
}

/// The f32 LayerNorm backward over the same shape on `path`, the yardstick of
/// [`half_case`].
fn f32_case(path: ForcedPath, rows: usize, d: usize) -> impl FnMut() {
    let n = rows * d;
    let (x, dy) = (data(n, 1), data(n, 2));
    let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let mut dx = vec![0.0f32; n];
    ln.forward_slice_with_stats(&x, &mut dx, &mut mean, &mut rstd)
        .expect("shapes match");
    let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
    move || {
        let input = BackwardInput {
            weight: ln.weight(),
            eps: ln.eps(),
            x: &x,
            dy: &dy,
            saved: Saved::LayerNorm {
                mean: &mean,
                rstd: &rstd,
            },
        };
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dgamma,
            dbeta: Some(&mut dbeta[..]),
        };
        backward_slice_on(path, Sweep::Serial, input, grads).expect("shapes match");
        black_box((&dx, &dgamma, &dbeta));
    }
}

fn bench_half(c: &mut Criterion) {
    let mut g = c.benchmark_group("half_backward");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (rows, d) in [(512, 768), (65536, 512)] {
        let id = format!("{rows}x{d}");
        g.throughput(Throughput::Elements((rows * d) as u64));
        for p in ForcedPath::all().into_iter().rev() {
            let name = p.path().name();
            let mut run = f32_case(p, rows, d);
            g.bench_function(BenchmarkId::new(format!("f32-{name}"), &id), |b| b.iter(&mut run));
            let mut run = half_case::<bf16>(p, rows, d);
            g.bench_function(BenchmarkId::new(format!("bf16-{name}"), &id), |b| {
                b.iter(&mut run)
            });
            let mut run = half_case::<f16>(p, rows, d);
            g.bench_function(BenchmarkId::new(format!("f16-{name}"), &id), |b| b.iter(&mut run));
        }
    }
    g.finish();
}

/// The f32 backward of LayerNorm (`is_ln`, dbeta computed) or RmsNorm over `rows × d`
/// on `path`, one thread, with `mode` in force (restored to `Auto` after each call).
fn prefetch_case(path: ForcedPath, is_ln: bool, mode: Prefetching, rows: usize, d: usize) -> impl FnMut() {
    mode_case(path, is_ln, (mode, Pipelining::Auto), rows, d)
}

/// As [`prefetch_case`], with a prefetch and a pipelining mode in force.
fn mode_case(
    path: ForcedPath,
    is_ln: bool,
    (mode, piping): (Prefetching, Pipelining),
    rows: usize,
    d: usize,
) -> impl FnMut() {
    let n = rows * d;
    let (x, dy) = (data(n, 1), data(n, 2));
    let ln = LayerNorm::<f32>::new(d).expect("dim > 0");
    let rms = RmsNorm::<f32>::new(d).expect("dim > 0");
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let mut dx = vec![0.0f32; n];
    ln.forward_slice_with_stats(&x, &mut dx, &mut mean, &mut rstd)
        .expect("shapes match");
    let mut rrms = vec![0.0f32; rows];
    rms.forward_slice_with_stats(&x, &mut dx, &mut rrms)
        .expect("shapes match");
    let (mut dgamma, mut dbeta) = (vec![0.0f32; d], vec![0.0f32; d]);
    move || {
        let (weight, eps, saved) = if is_ln {
            let saved = Saved::LayerNorm {
                mean: &mean,
                rstd: &rstd,
            };
            (ln.weight(), ln.eps(), saved)
        } else {
            (rms.weight(), rms.eps(), Saved::RmsNorm { rrms: &rrms })
        };
        let input = BackwardInput {
            weight,
            eps,
            x: &x,
            dy: &dy,
            saved,
        };
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dgamma,
            dbeta: is_ln.then_some(&mut dbeta[..]),
        };
        set_prefetching(mode);
        set_pipelining(piping);
        let r = backward_slice_on(path, Sweep::Serial, input, grads);
        set_prefetching(Prefetching::Auto);
        set_pipelining(Pipelining::Auto);
        r.expect("shapes match");
        black_box((&dx, &dgamma, &dbeta));
    }
}

fn bench_prefetch(c: &mut Criterion) {
    let mut g = c.benchmark_group("prefetching_backward");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (rows, d) in [(512, 768), (65536, 512), (8192, 4096)] {
        let id = format!("{rows}x{d}");
        g.throughput(Throughput::BytesDecimal((3 * rows * d * 4) as u64));
        for (kind, is_ln) in [("layer_norm", true), ("rms_norm", false)] {
            for p in ForcedPath::all().into_iter().rev() {
                for (mode, label) in [
                    (Prefetching::Never, "no-prefetch"),
                    (Prefetching::Always, "prefetch"),
                ] {
                    let mut run = prefetch_case(p, is_ln, mode, rows, d);
                    let name = format!("{kind}-{}-{label}", p.path().name());
                    g.bench_function(BenchmarkId::new(name, &id), |b| b.iter(&mut run));
                }
            }
        }
    }
    g.finish();
}

fn bench_pipelining(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipelining_backward");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (rows, d) in [(65536, 512), (8192, 4096)] {
        let id = format!("{rows}x{d}");
        g.throughput(Throughput::BytesDecimal((3 * rows * d * 4) as u64));
        for (kind, is_ln) in [("layer_norm", true), ("rms_norm", false)] {
            for p in ForcedPath::all().into_iter().rev() {
                for (piping, label) in [
                    (Pipelining::Never, "one-by-one"),
                    (Pipelining::Always, "pipelined"),
                ] {
                    let mut run = mode_case(p, is_ln, (Prefetching::Auto, piping), rows, d);
                    let name = format!("{kind}-{}-{label}", p.path().name());
                    g.bench_function(BenchmarkId::new(name, &id), |b| b.iter(&mut run));
                }
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench, bench_half, bench_prefetch, bench_pipelining);
criterion_main!(benches);
