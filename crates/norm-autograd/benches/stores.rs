//! Criterion groups `stores/*`: where streaming (non-temporal) output stores start to pay,
//! the measurement behind `norm_core::simd::stream_min_bytes`. LayerNorm forward and
//! backward (f32, one thread, d = 1024) with plain (`cached`) and streaming stores,
//! each followed by a read of its output, as the next layer would do: streaming makes
//! the kernel faster out of cache but leaves the output out of the cache. Sizes 4, 16,
//! 32, 64 and 128 MiB per array. Throughput counts the kernel's bytes plus the read of the
//! output, so GB/s compare directly within a size.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Stores, Sweep, backward_slice_on};
use norm_autograd::GradSlices;
use norm_core::dispatch::ForcedPath as ForwardPath;
use norm_core::{KernelPath, LayerNorm};

const D: usize = 1024;
/// Rows: 4, 16, 32, 64 and 128 MiB of f32 per array.
const ROWS: [usize; 5] = [1024, 4096, 8192, 16384, 32768];

fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// The consumer: a vectorizable sum of the output.
fn read(v: &[f32]) -> f32 {
    let lanes = v.chunks_exact(16).fold([0.0f32; 16], |mut a, c| {
        for (a, &c) in a.iter_mut().zip(c) {
            *a += c;
        }
        a
    });
    lanes.iter().sum()
}

fn bench(c: &mut Criterion) {
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let stores = [("cached", Stores::Cached), ("streaming", Stores::Streaming)];
    let fwd = ForwardPath::new(KernelPath::detected()).expect("the detected path runs");
    let bwd = ForcedPath::detected();
    let mut gf = c.benchmark_group("stores/forward_then_read");
    gf.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    let mut gb_runs = Vec::new();
    for rows in ROWS {
        let n = rows * D;
        let x = data(n, 1);
        let dy = data(n, 2);
        let ln = LayerNorm::<f32>::new(D).expect("dim > 0");
        let (mut y, mut mean, mut rstd) = (vec![0.0f32; n], vec![0.0f32; rows], vec![0.0f32; rows]);
        let id = format!("{rows}x{D}");
        gf.throughput(Throughput::BytesDecimal((3 * n * 4) as u64));
        for (name, st) in stores {
            let p = fwd.with_stores(st);
            gf.bench_function(BenchmarkId::new(name, &id), |b| {
                one.install(|| {
                    b.iter(|| {
                        p.layer_norm_slice(&ln, &x, &mut y, &mut mean, &mut rstd)
                            .expect("shapes match");
                        black_box(read(&y))
                    })
                })
            });
        }
        gb_runs.push((rows, x, dy, ln, mean, rstd));
    }
    gf.finish();
    let mut gb = c.benchmark_group("stores/backward_then_read");
    gb.sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
    for (rows, x, dy, ln, mean, rstd) in gb_runs {
        let n = rows * D;
        let mut dx = vec![0.0f32; n];
        let (mut dg, mut db) = (vec![0.0f32; D], vec![0.0f32; D]);
        let id = format!("{rows}x{D}");
        gb.throughput(Throughput::BytesDecimal((4 * n * 4) as u64));
        for (name, st) in stores {
            let p = bwd.with_stores(st);
            gb.bench_function(BenchmarkId::new(name, &id), |b| {
                one.install(|| {
                    b.iter(|| {
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
                            dgamma: &mut dg,
                            dbeta: Some(&mut db),
                        };
                        backward_slice_on(p, Sweep::Serial, input, grads).expect("shapes match");
                        black_box(read(&dx))
                    })
                })
            });
        }
    }
    gb.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
