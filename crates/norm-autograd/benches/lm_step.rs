//! Criterion groups `lm_step/*` and `matmul/*`: one training step of the training
//! study's default model (6 causal blocks, D = 32, 4 heads, d_ff = 64, vocabulary 8,
//! 8 sequences of 16 tokens; f32, one thread), Pre-Norm with LayerNorm and with RMSNorm,
//! through the `_into` forms that reuse one cache and one set of gradients (`into`)
//! and through the allocating forms (`alloc`); and the layer's matrix product
//! (`Linear::forward_into`, no packing buffer) against ndarray's `dot` (matrixmultiply)
//! at the model's shapes. Throughput counts the step's matmul FLOPs (3× the forward's),
//! so the step's figure reads as GFLOP/s (criterion prints "Gelem/s").

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ndarray::Array2;
use norm_autograd::{
    AdamW, AdamWConfig, Init, LanguageModel, Linear, LinearCache, LmCache, LmConfig, LmGrads, NormKind,
    Placement, StackConfig,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const B: usize = 8;
const L: usize = 16;
const D: usize = 32;
const FF: usize = 64;
const V: usize = 8;
const BLOCKS: usize = 6;

/// Matmul FLOPs of one step: forward (projections, attention products, FFN, head) × 3.
fn step_flops() -> u64 {
    let n = (B * L) as u64;
    let (d, f, l, v) = (D as u64, FF as u64, L as u64, V as u64);
    3 * (BLOCKS as u64 * (8 * n * d * d + 4 * n * l * d + 4 * n * d * f) + 2 * n * d * v)
}

fn model(norm: NormKind) -> LanguageModel<f32> {
    let mut stack = StackConfig::new(BLOCKS, D, 4, Placement::PreNorm, norm);
    stack.block.d_ff = FF;
    let cfg = LmConfig {
        vocab: V,
        max_len: L,
        stack,
        embed_std: 1.0,
    };
    LanguageModel::new(&cfg, &mut ChaCha8Rng::seed_from_u64(1)).expect("valid model")
}

fn batch() -> (Array2<usize>, Array2<usize>) {
    (
        Array2::from_shape_fn((B, L), |(b, l)| (b * 5 + l * 3) % V),
        Array2::from_shape_fn((B, L), |(b, l)| (b + l * 7 + 1) % V),
    )
}

fn lm_step(c: &mut Criterion) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut g = c.benchmark_group("lm_step");
    g.throughput(Throughput::Elements(step_flops()));
    let (x, y) = batch();
    for norm in [NormKind::LayerNorm, NormKind::RmsNorm] {
        let mut lm = model(norm);
        let mut opt = AdamW::new(AdamWConfig::default()).expect("config");
        let (mut cache, mut grads) = (LmCache::default(), LmGrads::empty());
        g.bench_function(BenchmarkId::new("into", norm.name()), |bch| {
            pool.install(|| {
                bch.iter(|| {
                    let loss = lm
                        .loss_and_grads_into(x.view(), y.view(), &mut cache, &mut grads)
                        .expect("step");
                    opt.step(&mut lm, &grads, 1e-4).expect("update");
                    black_box(loss)
                })
            })
        });
        let mut lm = model(norm);
        let mut opt = AdamW::new(AdamWConfig::default()).expect("config");
        g.bench_function(BenchmarkId::new("alloc", norm.name()), |bch| {
            pool.install(|| {
                bch.iter(|| {
                    let (loss, grads) = lm.loss_and_grads(x.view(), y.view()).expect("step");
                    opt.step(&mut lm, &grads, 1e-4).expect("update");
                    black_box(loss)
                })
            })
        });
    }
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let mut g = c.benchmark_group("matmul");
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    for (rows, k, n) in [(B * L, D, D), (B * L, D, FF), (B * L, FF, D), (B * L, D, V)] {
        g.throughput(Throughput::Elements((2 * rows * k * n) as u64));
        let lin = Linear::<f32>::new(k, n, false, Init::XavierNormal { gain: 1.0 }, &mut rng).expect("layer");
        let x = Array2::from_shape_fn((rows, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 * 0.1 - 0.5);
        let id = format!("{rows}x{k}x{n}");
        let (mut out, mut cache) = (Array2::zeros((0, 0)), LinearCache::default());
        g.bench_function(BenchmarkId::new("linear_forward_into", &id), |bch| {
            bch.iter(|| {
                lin.forward_into(&x, &mut out, &mut cache).expect("product");
                black_box(out[[0, 0]])
            })
        });
        let w = lin.weight().clone();
        g.bench_function(BenchmarkId::new("ndarray_dot", &id), |bch| {
            bch.iter(|| black_box(x.dot(&w)))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(2));
    targets = lm_step, matmul
}
criterion_main!(benches);
