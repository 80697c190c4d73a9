//! Criterion benchmarks of the f32 forward kernels, single thread, side by side with a
//! copy kernel (`y = x * c`) over the same bytes: the memory-bandwidth ceiling the norms
//! are judged against, with plain stores (`copy`) and with non-temporal stores
//! (`copy_streaming`, the fair ceiling for outputs the norms stream, see
//! `norm_core::ceiling`). Groups `layer_norm_forward` and `rms_norm_forward`; shapes
//! (rows × d) 512×768 (fits in cache), 65536×512 and 8192×4096 (far beyond it).
//! Throughput counts bytes read + written, `2 · rows · d · 4`, so results read as GB/s.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use norm_core::{LayerNorm, RmsNorm, ceiling};

/// (rows, d): in cache, out of cache with short rows, out of cache with long rows.
const SHAPES: [(usize, usize); 3] = [(512, 768), (65536, 512), (8192, 4096)];

/// Deterministic activation-like input: per-row offset and scale, xorshift noise.
fn input(rows: usize, d: usize) -> Array2<f32> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    };
    Array2::from_shape_fn((rows, d), |(r, _)| {
        (r % 7) as f32 * 0.3 + (1.0 + (r % 5) as f32) * next()
    })
}

/// A one-thread rayon pool: the norms split big batches over the current pool, and the
/// first target (and the copy kernel) is single-threaded.
fn single_thread() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool")
}

fn configure(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
}

/// Benchmarks `norm` and the copy kernel on every shape in one group.
fn bench_group(c: &mut Criterion, name: &str, norm: impl Fn(usize, &Array2<f32>, &mut Array2<f32>) + Sync) {
    let pool = single_thread();
    let mut group = c.benchmark_group(name);
    configure(&mut group);
    for (rows, d) in SHAPES {
        let x = input(rows, d);
        let mut y = Array2::<f32>::zeros((rows, d));
        let bytes = 2 * rows * d * std::mem::size_of::<f32>();
        group.throughput(Throughput::BytesDecimal(bytes as u64));
        let shape = format!("{rows}x{d}");
        group.bench_function(BenchmarkId::new("norm", &shape), |b| {
            pool.install(|| b.iter(|| norm(d, black_box(&x), black_box(&mut y))));
        });
        let (xs, ys) = (
            x.as_slice().expect("contiguous"),
            y.as_slice_mut().expect("contiguous"),
        );
        group.bench_function(BenchmarkId::new("copy", &shape), |b| {
            b.iter(|| ceiling::scale(black_box(xs), black_box(ys), black_box(1.0001)));
        });
        group.bench_function(BenchmarkId::new("copy_streaming", &shape), |b| {
            b.iter(|| ceiling::scale_streaming(black_box(xs), black_box(ys), black_box(1.0001)));
        });
    }
    group.finish();
}

fn layer_norm_forward(c: &mut Criterion) {
    let norms: Vec<(usize, LayerNorm<f32>)> = SHAPES
        .iter()
        .map(|&(_, d)| (d, LayerNorm::new(d).expect("d > 0")))
        .collect();
    bench_group(c, "layer_norm_forward", |d, x, y| {
        let (_, n) = norms.iter().find(|(k, _)| *k == d).expect("a norm per shape");
        n.forward_into(x, y).expect("shapes match");
    });
}

fn rms_norm_forward(c: &mut Criterion) {
    let norms: Vec<(usize, RmsNorm<f32>)> = SHAPES
        .iter()
        .map(|&(_, d)| (d, RmsNorm::new(d).expect("d > 0")))
        .collect();
    bench_group(c, "rms_norm_forward", |d, x, y| {
        let (_, n) = norms.iter().find(|(k, _)| *k == d).expect("a norm per shape");
        n.forward_into(x, y).expect("shapes match");
    });
}

criterion_group!(benches, layer_norm_forward, rms_norm_forward);
criterion_main!(benches);
