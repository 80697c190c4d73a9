//! Tests of attention, feed-forward, the transformer block in every placement (Post-Norm,
//! Pre-Norm, DeepNorm, Peri-LN) and norm kind, and a 3-block stack: gradient checks in f64 over proptest shapes, the causal
//! mask, the reported per-block gradients, DeepNorm's constants, and typed errors.
//!
//! The feed-forward activation in gradient checks is GELU or tanh: ReLU's kink would
//! put finite differences across a discontinuous derivative (ReLU itself is checked away
//! from the kink in `layers.rs`).

mod common;

use common::{TOL, project, rng, uniform};
use ndarray::{Array3, s};
use norm_autograd::{
    Activation, BlockConfig, FeedForward, GradChecker, GradError, Gradients, Init, Module,
    MultiHeadAttention, NormKind, Placement, StackConfig, TransformerBlock, TransformerStack,
};
use proptest::prelude::*;

const PLACEMENTS: [Placement; 4] = [
    Placement::PostNorm,
    Placement::PreNorm,
    Placement::DeepNorm {
        alpha: 1.681_792_830_507_429,
        beta: 0.42044820762685725,
    },
    Placement::PeriNorm,
];

fn block_config(d_model: usize, n_heads: usize, placement: usize, norm: usize, causal: bool) -> BlockConfig {
    BlockConfig {
        d_model,
        n_heads,
        d_ff: d_model + 2,
        placement: PLACEMENTS[placement],
        norm: [NormKind::LayerNorm, NormKind::RmsNorm][norm],
        activation: Activation::Gelu,
        causal,
        init: Init::XavierNormal { gain: 1.0 },
    }
}

/// Randomizes every parameter (norm weights and biases too, so they are not the
/// special values 1 and 0).
fn jitter<M: Module<f64>>(m: &mut M, seed: u64) {
    let mut r = rng(seed);
    m.visit_params_mut(&mut |_, mut v| {
        let noise = uniform(&mut r, v.len(), -0.3, 0.3);
        for (p, n) in v.iter_mut().zip(noise.iter()) {
            *p += n;
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn attention_gradients(
        b in 1usize..3, l in 1usize..5, heads in 1usize..3, dh in 1usize..4,
        causal in any::<bool>(), seed in any::<u64>(),
    ) {
        let d = heads * dh;
        let mut r = rng(seed);
        let init = Init::XavierNormal { gain: 1.0 };
        let mut attn = MultiHeadAttention::<f64>::new(d, heads, causal, init, init, &mut r).unwrap();
        jitter(&mut attn, seed ^ 5);
        let x = uniform(&mut r, (b, l, d), -1.5, 1.5);
        let proj = uniform(&mut r, (b, l, d), -1.0, 1.0);
        let (_, cache) = attn.forward(&x).unwrap();
        let (dx, grads) = attn.backward(&cache, &proj).unwrap();
        let ck = GradChecker::default();
        let a2 = attn.clone();
        let rep = ck.check_input(&x, &dx, |xp| Ok(project(&proj, &a2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "input: {rep:?}");
        let rep = ck.check_params(&mut attn, &grads, |a| Ok(project(&proj, &a.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
        prop_assert_eq!(rep.checked, 4 * (d * d + d));
    }

    #[test]
    fn feed_forward_gradients(l in 1usize..4, d in 1usize..5, dff in 1usize..6, act in 0usize..2, seed in any::<u64>()) {
        let mut r = rng(seed);
        let act = [Activation::Gelu, Activation::Tanh][act];
        let mut ffn = FeedForward::<f64>::new(d, dff, act, Init::XavierUniform { gain: 1.0 }, &mut r).unwrap();
        jitter(&mut ffn, seed ^ 9);
        let x = uniform(&mut r, (2, l, d), -1.0, 1.0);
        let proj = uniform(&mut r, (2, l, d), -1.0, 1.0);
        let (_, cache) = ffn.forward(&x).unwrap();
        let (dx, grads) = ffn.backward(&cache, &proj).unwrap();
        let ck = GradChecker::default();
        let f2 = ffn.clone();
        let rep = ck.check_input(&x, &dx, |xp| Ok(project(&proj, &f2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "input: {rep:?}");
        let rep = ck.check_params(&mut ffn, &grads, |f| Ok(project(&proj, &f.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
    }

    /// Every placement × norm kind, with and without the causal mask.
    #[test]
    fn block_gradients(
        placement in 0usize..4, norm in 0usize..2, causal in any::<bool>(),
        l in 1usize..4, heads in 1usize..3, dh in 2usize..4, seed in any::<u64>(),
    ) {
        let d = heads * dh;
        let mut r = rng(seed);
        let mut block = TransformerBlock::<f64>::new(&block_config(d, heads, placement, norm, causal), &mut r).unwrap();
        jitter(&mut block, seed ^ 3);
        let x = uniform(&mut r, (2, l, d), -1.5, 1.5);
        let proj = uniform(&mut r, (2, l, d), -1.0, 1.0);
        let (_, cache) = block.forward(&x).unwrap();
        let (dx, grads) = block.backward(&cache, &proj).unwrap();
        let ck = GradChecker::default();
        let b2 = block.clone();
        let rep = ck.check_input(&x, &dx, |xp| Ok(project(&proj, &b2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "input: {rep:?}");
        let rep = ck.check_params(&mut block, &grads, |b| Ok(project(&proj, &b.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
        prop_assert_eq!(rep.checked, block.param_count());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// A 3-block stack in every placement (Pre-Norm and Peri-LN with their final norm).
    #[test]
    fn three_block_stack_gradients(placement in 0usize..4, norm in 0usize..2, causal in any::<bool>(), seed in any::<u64>()) {
        let mut r = rng(seed);
        let cfg = StackConfig {
            n_layers: 3,
            block: block_config(4, 2, placement, norm, causal),
            final_norm: PLACEMENTS[placement].unnormalized_stream(),
        };
        let mut stack = TransformerStack::<f64>::new(&cfg, &mut r).unwrap();
        jitter(&mut stack, seed ^ 11);
        let x = uniform(&mut r, (2, 3, 4), -1.5, 1.5);
        let proj = uniform(&mut r, (2, 3, 4), -1.0, 1.0);
        let (_, cache) = stack.forward(&x).unwrap();
        let (dx, grads) = stack.backward(&cache, &proj).unwrap();
        prop_assert_eq!(&grads.d_residual[0], &dx);
        let ck = GradChecker::default();
        let s2 = stack.clone();
        let rep = ck.check_input(&x, &dx, |xp| Ok(project(&proj, &s2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "input: {rep:?}");
        let rep = ck.check_params(&mut stack, &grads, |s| Ok(project(&proj, &s.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
        prop_assert_eq!(rep.checked, stack.param_count());
    }
}

/// The residual-stream gradient of block `l` is the gradient with respect to the stack
/// input after removing the blocks before it: check it against a shorter stack.
#[test]
fn residual_gradients_are_the_inputs_of_each_block() {
    let mut r = rng(4);
    let cfg = StackConfig::new(4, 8, 2, Placement::PreNorm, NormKind::RmsNorm);
    let stack = TransformerStack::<f64>::new(&cfg, &mut r).unwrap();
    let x = uniform(&mut r, (2, 5, 8), -1.0, 1.0);
    let proj = uniform(&mut r, (2, 5, 8), -1.0, 1.0);
    let (_, cache) = stack.forward(&x).unwrap();
    let (_, grads) = stack.backward(&cache, &proj).unwrap();
    // Input of block 2 = output of blocks 0..2.
    let mut h = x.clone();
    for b in &stack.blocks[..2] {
        h = b.forward(&h).unwrap().0;
    }
    let tail = TransformerStack {
        blocks: stack.blocks[2..].to_vec(),
        final_norm: stack.final_norm.clone(),
    };
    let (_, tcache) = tail.forward(&h).unwrap();
    let (dh, tgrads) = tail.backward(&tcache, &proj).unwrap();
    assert_eq!(grads.d_residual[2], dh);
    assert_eq!(grads.blocks[3], tgrads.blocks[1]);
    // The convenience norms agree with the named gradients.
    let named = grads.grad_norms();
    let w2 = grads.ffn2_weight_norms();
    for (i, v) in w2.iter().enumerate() {
        let (_, n) = named
            .iter()
            .find(|(n, _)| *n == format!("blocks.{i}.ffn.lin2.weight"))
            .unwrap();
        assert_eq!(n, v);
    }
    assert_eq!(grads.residual_grad_norms().len(), 4);
    assert!(
        grads
            .residual_grad_norms()
            .iter()
            .all(|v| v.is_finite() && *v > 0.0)
    );
}

/// With the causal mask, outputs at position i do not depend on inputs after i.
#[test]
fn causal_mask_hides_the_future() {
    let mut r = rng(8);
    let cfg = block_config(6, 3, 1, 0, true);
    let block = TransformerBlock::<f64>::new(&cfg, &mut r).unwrap();
    let x = uniform(&mut r, (1, 5, 6), -1.0, 1.0);
    let mut x2 = x.clone();
    x2.slice_mut(s![.., 3.., ..]).mapv_inplace(|v| v * 3.0 + 1.0);
    let (y, _) = block.forward(&x).unwrap();
    let (y2, _) = block.forward(&x2).unwrap();
    assert_eq!(y.slice(s![.., ..3, ..]), y2.slice(s![.., ..3, ..]));
    assert_ne!(y.slice(s![.., 3.., ..]), y2.slice(s![.., 3.., ..]));
    // Without the mask the first positions do change.
    let block_nc = TransformerBlock::<f64>::new(&block_config(6, 3, 1, 0, false), &mut rng(8)).unwrap();
    let (y, _) = block_nc.forward(&x).unwrap();
    let (y2, _) = block_nc.forward(&x2).unwrap();
    assert_ne!(y.slice(s![.., ..3, ..]), y2.slice(s![.., ..3, ..]));
}

/// DeepNorm: α = (2N)^(1/4) on the residual, and β = (8N)^(−1/4) scales exactly the
/// value, output and feed-forward weights (same RNG stream, so they are β times the
/// Post-Norm draws), leaving queries and keys alone.
#[test]
fn deepnorm_scales_the_right_weights() {
    let Placement::DeepNorm { alpha, beta } = Placement::deepnorm_for(6) else {
        panic!("deepnorm_for must return DeepNorm");
    };
    assert!((alpha - 12f64.powf(0.25)).abs() < 1e-15);
    assert!((beta - 48f64.powf(-0.25)).abs() < 1e-15);
    let post = TransformerBlock::<f64>::new(
        &BlockConfig::new(8, 2, Placement::PostNorm, NormKind::LayerNorm),
        &mut rng(3),
    )
    .unwrap();
    let deep = TransformerBlock::<f64>::new(
        &BlockConfig::new(8, 2, Placement::deepnorm_for(6), NormKind::LayerNorm),
        &mut rng(3),
    )
    .unwrap();
    assert_eq!(post.attn.q.weight(), deep.attn.q.weight());
    assert_eq!(post.attn.k.weight(), deep.attn.k.weight());
    for (p, d) in [
        (&post.attn.v, &deep.attn.v),
        (&post.attn.o, &deep.attn.o),
        (&post.ffn.lin1, &deep.ffn.lin1),
        (&post.ffn.lin2, &deep.ffn.lin2),
    ] {
        for (a, b) in p.weight().iter().zip(d.weight().iter()) {
            assert!(
                (a * beta - b).abs() <= 1e-15 * a.abs().max(1e-300),
                "{a}·β vs {b}"
            );
        }
    }
    // StackConfig::new fills in the constants for its depth.
    let cfg = StackConfig::new(
        24,
        8,
        2,
        Placement::DeepNorm {
            alpha: 1.0,
            beta: 1.0,
        },
        NormKind::LayerNorm,
    );
    assert_eq!(cfg.block.placement, Placement::deepnorm_for(24));
    assert!(!cfg.final_norm);
}

/// Same seed, same stack, same gradients, bit for bit.
#[test]
fn stacks_are_reproducible() {
    let cfg = StackConfig::new(2, 8, 4, Placement::PostNorm, NormKind::LayerNorm);
    let run = |seed| {
        let stack = TransformerStack::<f32>::new(&cfg, &mut rng(seed)).unwrap();
        let x = Array3::<f32>::from_shape_fn((2, 4, 8), |(b, l, d)| ((b * 32 + l * 8 + d) as f32).sin());
        let (y, c) = stack.forward(&x).unwrap();
        stack.backward(&c, &y).unwrap().1
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn transformer_errors_are_typed() {
    let init = Init::XavierNormal { gain: 1.0 };
    assert_eq!(
        MultiHeadAttention::<f64>::new(6, 4, false, init, init, &mut rng(0)).unwrap_err(),
        GradError::HeadsDontDivide {
            d_model: 6,
            n_heads: 4
        }
    );
    let attn = MultiHeadAttention::<f64>::new(4, 2, false, init, init, &mut rng(0)).unwrap();
    assert_eq!(
        attn.forward(&Array3::zeros((1, 2, 3))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "x",
            expected: vec![1, 2, 4],
            got: vec![1, 2, 3]
        }
    );
    let (_, cache) = attn.forward(&Array3::zeros((1, 2, 4))).unwrap();
    assert_eq!(
        attn.backward(&cache, &Array3::zeros((1, 3, 4))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "dy",
            expected: vec![1, 2, 4],
            got: vec![1, 3, 4]
        }
    );
    // A cache from an attention of another width is refused, not sliced out of bounds.
    let wide = MultiHeadAttention::<f64>::new(8, 2, false, init, init, &mut rng(0)).unwrap();
    let (_, wide_cache) = wide.forward(&Array3::zeros((1, 2, 8))).unwrap();
    assert!(matches!(
        attn.backward(&wide_cache, &Array3::zeros((1, 2, 4))),
        Err(GradError::CacheMismatch { .. })
    ));
    // A Pre-Norm block given dy with the right row count but the wrong (B, L) split.
    let block = TransformerBlock::<f64>::new(&block_config(4, 2, 1, 0, false), &mut rng(0)).unwrap();
    let (_, bc) = block.forward(&Array3::ones((2, 3, 4))).unwrap();
    assert_eq!(
        block.backward(&bc, &Array3::ones((3, 2, 4))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "dy",
            expected: vec![2, 3, 4],
            got: vec![3, 2, 4]
        }
    );
    let mut cfg = StackConfig::new(0, 4, 2, Placement::PreNorm, NormKind::LayerNorm);
    assert_eq!(
        TransformerStack::<f64>::new(&cfg, &mut rng(0)).unwrap_err(),
        GradError::ZeroSize { what: "n_layers" }
    );
    cfg.n_layers = 1;
    cfg.block.placement = Placement::DeepNorm {
        alpha: 1.0,
        beta: -1.0,
    };
    assert_eq!(
        TransformerStack::<f64>::new(&cfg, &mut rng(0)).unwrap_err(),
        GradError::InvalidValue {
            what: "gain",
            value: -1.0
        }
    );
}

/// Every placement × norm kind: the block gradient-checked in f64 at fixed shapes, so
/// each placement is checked on every run (the proptests sample placements at random).
#[test]
fn every_placement_passes_the_gradient_check() {
    for (p, placement) in PLACEMENTS.iter().enumerate() {
        for norm in 0..2 {
            let mut r = rng(100 + p as u64);
            let mut block =
                TransformerBlock::<f64>::new(&block_config(6, 2, p, norm, p % 2 == 0), &mut r).unwrap();
            jitter(&mut block, 7 + p as u64);
            let x = uniform(&mut r, (2, 3, 6), -1.5, 1.5);
            let proj = uniform(&mut r, (2, 3, 6), -1.0, 1.0);
            let (_, cache) = block.forward(&x).unwrap();
            let (dx, grads) = block.backward(&cache, &proj).unwrap();
            let ck = GradChecker::default();
            let b2 = block.clone();
            let rep = ck
                .check_input(&x, &dx, |xp| Ok(project(&proj, &b2.forward(xp)?.0)))
                .unwrap();
            assert!(rep.max_rel_error < TOL, "{placement:?} input: {rep:?}");
            let rep = ck
                .check_params(&mut block, &grads, |b| Ok(project(&proj, &b.forward(&x)?.0)))
                .unwrap();
            assert!(rep.max_rel_error < TOL, "{placement:?} params: {rep:?}");
            assert_eq!(rep.checked, block.param_count());
        }
    }
}

/// Peri-LN: four norms per block (the two output norms are parameters with gradients),
/// the same weights as the Pre-Norm block from the same generator state, each branch
/// output normalized before its add (so the block adds exactly unit-RMS branches at
/// initialization), and a final norm from `StackConfig::new`.
#[test]
fn peri_norm_normalizes_each_branch_output() {
    let cfg = |p| BlockConfig::new(8, 2, p, NormKind::RmsNorm);
    let pre = TransformerBlock::<f64>::new(&cfg(Placement::PreNorm), &mut rng(9)).unwrap();
    let peri = TransformerBlock::<f64>::new(&cfg(Placement::PeriNorm), &mut rng(9)).unwrap();
    assert_eq!(peri.attn, pre.attn);
    assert_eq!(peri.ffn, pre.ffn);
    assert_eq!(pre.clone().with_placement(Placement::PeriNorm).unwrap(), peri);
    assert_eq!(peri.clone().with_placement(Placement::PreNorm).unwrap(), pre);
    assert_eq!(peri.param_count(), pre.param_count() + 2 * 8);
    // A large input: Pre-Norm adds branches of whatever scale the sublayers give;
    // Peri-LN adds exactly unit-RMS rows (RMSNorm with weight 1), so y - x has
    // per-row squared norm at most (1 + 1)² · D and the branch sums stay O(1).
    let x = uniform(&mut rng(2), (1, 4, 8), -50.0, 50.0);
    let (y, cache) = peri.forward(&x).unwrap();
    let (a, _) = peri.attn.forward(&peri.norm1.forward(&x).unwrap().0).unwrap();
    let (o1, _) = peri.norm1_out.as_ref().unwrap().forward(&a).unwrap();
    let h = &x + &o1;
    for row in o1.rows() {
        let rms = (row.iter().map(|v| v * v).sum::<f64>() / 8.0).sqrt();
        assert!((rms - 1.0).abs() < 1e-3, "branch rms {rms}");
    }
    let (f, _) = peri.ffn.forward(&peri.norm2.forward(&h).unwrap().0).unwrap();
    let (o2, _) = peri.norm2_out.as_ref().unwrap().forward(&f).unwrap();
    let expect = &h + &o2;
    assert!(y.iter().zip(expect.iter()).all(|(a, b)| (a - b).abs() < 1e-12));
    let (_, grads) = peri.backward(&cache, &y).unwrap();
    assert!(grads.norm1_out.is_some() && grads.norm2_out.is_some());
    let names: Vec<String> = grads.grad_norms().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().any(|n| n == "norm2_out.weight"), "{names:?}");
    let sc = StackConfig::new(2, 8, 2, Placement::PeriNorm, NormKind::LayerNorm);
    assert!(sc.final_norm);
    assert_eq!(Placement::PeriNorm.name(), "peri-norm");
}

/// A block whose output norms do not match its placement, and a cache from a block of
/// another placement, are typed errors.
#[test]
fn peri_norm_mismatches_are_typed_errors() {
    let cfg = |p| BlockConfig::new(4, 2, p, NormKind::LayerNorm);
    let mut peri = TransformerBlock::<f64>::new(&cfg(Placement::PeriNorm), &mut rng(1)).unwrap();
    let pre = TransformerBlock::<f64>::new(&cfg(Placement::PreNorm), &mut rng(1)).unwrap();
    let x = Array3::<f64>::from_shape_fn((1, 3, 4), |(_, l, d)| (l * 4 + d) as f64);
    let (_, peri_cache) = peri.forward(&x).unwrap();
    let (_, pre_cache) = pre.forward(&x).unwrap();
    assert!(matches!(
        pre.backward(&peri_cache, &x),
        Err(GradError::CacheMismatch { .. })
    ));
    assert!(matches!(
        peri.backward(&pre_cache, &x),
        Err(GradError::CacheMismatch { .. })
    ));
    peri.norm2_out = None;
    assert_eq!(
        peri.forward(&x).unwrap_err(),
        GradError::LayerMismatch {
            placement: "peri-norm",
            problem: "lacks an output norm (norm1_out, norm2_out)"
        }
    );
    let mut pre = pre;
    pre.placement = Placement::PostNorm;
    pre.norm1_out = peri.norm1_out.clone();
    assert!(matches!(
        pre.forward(&x),
        Err(GradError::LayerMismatch {
            placement: "post-norm",
            ..
        })
    ));
}

/// The bits of a gradient set, in visiting order.
fn grad_bits(g: &impl Gradients<f64>) -> Vec<u64> {
    let mut v = Vec::new();
    g.for_each_grad(&mut |a| v.extend(a.iter().map(|x| x.to_bits())));
    v
}

fn arr_bits(a: &Array3<f64>) -> Vec<u64> {
    a.iter().map(|x| x.to_bits()).collect()
}

/// The allocating `backward` (fresh scratch, the cache only borrowed) and `backward_into`
/// (the cache's scratch, kept across calls) give the same bits, for every sequence
/// layer, placement and norm kind; and the borrowed cache serves a second backward
/// unchanged.
#[test]
fn allocating_and_into_backward_agree_bit_for_bit() {
    let x = Array3::from_shape_fn((2, 3, 4), |(b, l, d)| ((b * 12 + l * 4 + d) as f64 * 0.37).sin());
    let dy = Array3::from_shape_fn((2, 3, 4), |(b, l, d)| ((b * 5 + l * 3 + d) as f64 * 0.61).cos());
    // Each case: the allocating backward, then `backward_into` twice on one cache (the
    // second reuses the scratch the first shaped), as (dx bits, gradient bits).
    fn check(what: &str, alloc: (Array3<f64>, Vec<u64>), into: [(Array3<f64>, Vec<u64>); 2]) {
        for (dx, g) in &into {
            assert_eq!(arr_bits(dx), arr_bits(&alloc.0), "{what}: dx");
            assert_eq!(*g, alloc.1, "{what}: gradients");
        }
    }
    let attn = MultiHeadAttention::<f64>::new(
        4,
        2,
        true,
        Init::XavierNormal { gain: 1.0 },
        Init::XavierNormal { gain: 1.0 },
        &mut rng(1),
    )
    .unwrap();
    let (_, mut cache) = attn.forward(&x).unwrap();
    let (dx, g) = attn.backward(&cache, &dy).unwrap();
    let into = std::array::from_fn(|_| {
        let (mut dx, mut g) = (Array3::zeros((0, 0, 0)), norm_autograd::AttentionGrads::empty());
        attn.backward_into(&mut cache, &dy, &mut dx, &mut g).unwrap();
        (dx, grad_bits(&g))
    });
    check("attention", (dx, grad_bits(&g)), into);
    let ffn = FeedForward::<f64>::new(
        4,
        6,
        Activation::Tanh,
        Init::XavierNormal { gain: 1.0 },
        &mut rng(2),
    )
    .unwrap();
    let (_, mut cache) = ffn.forward(&x).unwrap();
    let (dx, g) = ffn.backward(&cache, &dy).unwrap();
    let into = std::array::from_fn(|_| {
        let (mut dx, mut g) = (Array3::zeros((0, 0, 0)), norm_autograd::FeedForwardGrads::empty());
        ffn.backward_into(&mut cache, &dy, &mut dx, &mut g).unwrap();
        (dx, grad_bits(&g))
    });
    check("feed-forward", (dx, grad_bits(&g)), into);
    for (p, placement) in PLACEMENTS.iter().enumerate() {
        for norm in 0..2 {
            let what = format!("{} norm {norm}", placement.name());
            let mut cfg = StackConfig::new(2, 4, 2, *placement, NormKind::LayerNorm);
            cfg.block = block_config(4, 2, p, norm, true);
            let stack = TransformerStack::<f64>::new(&cfg, &mut rng(3)).unwrap();
            let (_, mut cache) = stack.forward(&x).unwrap();
            let (dx, g) = stack.backward(&cache, &dy).unwrap();
            let into = std::array::from_fn(|_| {
                let (mut dx, mut g) = (Array3::zeros((0, 0, 0)), norm_autograd::StackGrads::empty());
                stack.backward_into(&mut cache, &dy, &mut dx, &mut g).unwrap();
                (dx, grad_bits(&g))
            });
            check(&what, (dx, grad_bits(&g)), into);
            let block = &stack.blocks[0];
            let (_, mut cache) = block.forward(&x).unwrap();
            let (dx, g) = block.backward(&cache, &dy).unwrap();
            let into = std::array::from_fn(|_| {
                let (mut dx, mut g) = (Array3::zeros((0, 0, 0)), norm_autograd::BlockGrads::empty());
                block.backward_into(&mut cache, &dy, &mut dx, &mut g).unwrap();
                (dx, grad_bits(&g))
            });
            check(&what, (dx, grad_bits(&g)), into);
        }
    }
}
