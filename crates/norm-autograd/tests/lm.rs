//! Tests of the language-model pieces: the embedding and the whole causal LM (every
//! placement × norm kind) against finite differences in f64, AdamW against a
//! hand-computed two-step example, the warmup/cosine schedule, clipping, determinism on
//! 1, 2 and 3 rayon threads, and typed errors.

mod common;

use common::{TOL, project, rng, uniform};
use ndarray::{Array2, array};
use norm_autograd::{
    Activation, AdamW, AdamWConfig, Decay, Embedding, GradChecker, GradError, Gradients, LanguageModel,
    Linear, LinearGrads, LmCache, LmConfig, LmGrads, Module, NormKind, Placement, Schedule, StackConfig,
    softmax_cross_entropy,
};

fn lm_config(placement: Placement, norm: NormKind, layers: usize) -> LmConfig {
    let mut stack = StackConfig::new(layers, 4, 2, placement, norm);
    stack.block.d_ff = 6;
    stack.block.activation = Activation::Gelu; // smooth: finite differences need it
    LmConfig {
        vocab: 5,
        max_len: 4,
        stack,
        embed_std: 1.0,
    }
}

fn tokens(seed: u64, b: usize, l: usize, v: usize) -> Array2<usize> {
    let u = uniform(&mut rng(seed), (b, l), 0.0, v as f64);
    u.mapv(|x| (x as usize).min(v - 1))
}

#[test]
fn sinusoidal_positions_and_lookup() {
    let e = Embedding::<f64>::new(3, 4, 5, 0.0, &mut rng(0)).unwrap();
    let x = e.forward(array![[2usize, 0, 1]].view()).unwrap();
    // Zero table: the output is the position table itself.
    for l in 0..3 {
        let lf = l as f64;
        let want = [lf.sin(), lf.cos(), (lf / 100.0).sin(), (lf / 100.0).cos()];
        for (j, w) in want.iter().enumerate() {
            assert!((x[[0, l, j]] - w).abs() < 1e-15, "P[{l},{j}]");
        }
    }
}

#[test]
fn embedding_gradient() {
    let mut e = Embedding::<f64>::new(4, 3, 6, 0.7, &mut rng(1)).unwrap();
    let toks = array![[0usize, 3, 3, 1], [2, 0, 3, 3]];
    let proj = uniform(&mut rng(2), (2, 4, 3), -1.0, 1.0);
    let grads = e.backward(toks.view(), &proj).unwrap();
    let rep = GradChecker::default()
        .check_params(&mut e, &grads, |e| Ok(project(&proj, &e.forward(toks.view())?)))
        .unwrap();
    assert!(rep.max_rel_error < TOL, "{rep:?}");
    assert_eq!(rep.checked, 12);
    // Token 3 appears four times: its row sums four gradient rows.
    assert!(grads.table.row(3).iter().any(|&g| g != 0.0));
}

#[test]
fn language_model_gradients_every_placement_and_norm() {
    let placements = [
        Placement::PostNorm,
        Placement::PreNorm,
        Placement::deepnorm_for(2),
    ];
    for (pi, &placement) in placements.iter().enumerate() {
        for (ni, norm) in [NormKind::LayerNorm, NormKind::RmsNorm].into_iter().enumerate() {
            let seed = (10 * pi + ni) as u64;
            let mut lm = LanguageModel::<f64>::new(&lm_config(placement, norm, 2), &mut rng(seed)).unwrap();
            let inputs = tokens(seed + 100, 2, 3, 5);
            let targets = tokens(seed + 200, 2, 3, 5);
            let (loss, grads) = lm.loss_and_grads(inputs.view(), targets.view()).unwrap();
            assert!((loss - lm.loss(inputs.view(), targets.view()).unwrap()).abs() < 1e-14);
            let rep = GradChecker::default()
                .check_params(&mut lm, &grads, |m| m.loss(inputs.view(), targets.view()))
                .unwrap();
            assert!(rep.max_rel_error < TOL, "{placement:?} {norm:?}: {rep:?}");
            assert_eq!(rep.checked, lm.param_count());
            assert_eq!(grads.block_grad_norms().len(), 2);
            let total: f64 = grads.global_norm();
            let parts = grads.block_grad_norms().iter().map(|n| n * n).sum::<f64>().sqrt();
            assert!(total >= parts && total.is_finite());
        }
    }
}

#[test]
fn causal_model_ignores_the_future() {
    let lm = LanguageModel::<f64>::new(
        &lm_config(Placement::PreNorm, NormKind::LayerNorm, 2),
        &mut rng(5),
    )
    .unwrap();
    let a = array![[1usize, 2, 3, 4]];
    let b = array![[1usize, 2, 0, 0]];
    let (za, _) = lm.forward(a.view()).unwrap();
    let (zb, _) = lm.forward(b.view()).unwrap();
    assert_eq!(za.row(0), zb.row(0));
    assert_eq!(za.row(1), zb.row(1));
    assert_ne!(za.row(2), zb.row(2));
}

/// Two AdamW steps on one scalar weight `p = 1` with gradients 0.5 then −0.25,
/// lr = 0.1, β = (0.9, 0.999), ε = 1e-8, λ = 0.01, worked by hand:
///
/// ```text
/// t=1: p ← 1·(1 − 0.1·0.01) = 0.999;  m = 0.05, v = 0.00025;  m̂ = 0.5, v̂ = 0.25
///      p ← 0.999 − 0.1·0.5/(0.5 + 1e-8) = 0.899000002 (to 1e-16)
/// t=2: p ← 0.899000002·0.999 = 0.898101001998;  m = 0.045 − 0.025 = 0.02
///      v = 0.999·0.00025 + 0.001·0.0625 = 0.00031225
///      m̂ = 0.02/0.19 = 0.1052631578947…,  v̂ = 0.00031225/0.001999 = 0.1562031015507…
///      p ← 0.898101001998 − 0.1·0.1052631578947/(0.3952253808… + 1e-8) = 0.8714672987…
/// ```
#[test]
fn adamw_two_steps_by_hand() {
    let mut lin = Linear::<f64>::from_weights(array![[1.0]], None).unwrap();
    let cfg = AdamWConfig {
        weight_decay: 0.01,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(cfg).unwrap();
    let g1 = LinearGrads {
        weight: array![[0.5]],
        bias: None,
    };
    let g2 = LinearGrads {
        weight: array![[-0.25]],
        bias: None,
    };
    opt.step(&mut lin, &g1, 0.1).unwrap();
    assert!((lin.weight()[[0, 0]] - 0.899_000_002).abs() < 1e-15);
    opt.step(&mut lin, &g2, 0.1).unwrap();
    assert!(
        (lin.weight()[[0, 0]] - 0.871_467_298_7).abs() < 1e-10,
        "{}",
        lin.weight()[[0, 0]]
    );
    assert_eq!(opt.steps(), 2);
}

#[test]
fn adamw_clips_to_the_global_norm() {
    let mut lin = Linear::<f64>::from_weights(array![[0.0, 0.0]], None).unwrap();
    let mut opt = AdamW::new(AdamWConfig {
        clip: Some(1.0),
        ..AdamWConfig::default()
    })
    .unwrap();
    let g = LinearGrads {
        weight: array![[3.0, 4.0]],
        bias: None,
    };
    let s = opt.step(&mut lin, &g, 0.1).unwrap();
    assert_eq!(s.grad_norm, 5.0);
    assert!((s.clip_scale - 0.2).abs() < 1e-16);
}

#[test]
fn adamw_refuses_mismatches_and_bad_values() {
    let mut lin = Linear::<f64>::from_weights(array![[1.0]], None).unwrap();
    let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
    let wrong = LinearGrads {
        weight: array![[1.0, 2.0]],
        bias: None,
    };
    assert!(matches!(
        opt.step(&mut lin, &wrong, 0.1),
        Err(GradError::ParamMismatch { .. })
    ));
    assert_eq!(lin.weight()[[0, 0]], 1.0);
    let g = LinearGrads {
        weight: array![[1.0]],
        bias: None,
    };
    assert!(matches!(
        opt.step(&mut lin, &g, f64::NAN),
        Err(GradError::InvalidValue { what: "lr", .. })
    ));
    for bad in [
        AdamWConfig {
            beta1: 1.0,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            eps: 0.0,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            weight_decay: -1.0,
            ..AdamWConfig::default()
        },
        AdamWConfig {
            clip: Some(0.0),
            ..AdamWConfig::default()
        },
    ] {
        assert!(
            matches!(AdamW::<f64>::new(bad), Err(GradError::InvalidValue { .. })),
            "{bad:?}"
        );
    }
}

#[test]
fn schedule_warmup_then_cosine() {
    let s = Schedule {
        peak: 1.0,
        warmup: 10,
        decay: Decay::Cosine {
            total: 110,
            floor: 0.1,
        },
    };
    assert!((s.lr(0) - 0.1).abs() < 1e-15);
    assert!((s.lr(9) - 1.0).abs() < 1e-15);
    assert!((s.lr(10) - 1.0).abs() < 1e-15);
    assert!((s.lr(60) - 0.55).abs() < 1e-15); // halfway: floor + (1 − floor)/2
    assert!((s.lr(110) - 0.1).abs() < 1e-15);
    let c = Schedule {
        peak: 0.5,
        warmup: 0,
        decay: Decay::Constant,
    };
    assert_eq!(c.lr(0), 0.5);
}

#[test]
fn typed_errors() {
    let lm = LanguageModel::<f64>::new(&lm_config(Placement::PostNorm, NormKind::RmsNorm, 1), &mut rng(0))
        .unwrap();
    let bad = array![[0usize, 9]];
    assert!(matches!(
        lm.forward(bad.view()),
        Err(GradError::ClassOutOfRange {
            class: 9,
            classes: 5,
            ..
        })
    ));
    let long = Array2::<usize>::zeros((1, 5));
    assert!(matches!(
        lm.forward(long.view()),
        Err(GradError::ShapeMismatch { .. })
    ));
    let ok = Array2::<usize>::zeros((1, 3));
    let short = Array2::<usize>::zeros((1, 2));
    assert!(matches!(
        lm.loss(ok.view(), short.view()),
        Err(GradError::ShapeMismatch { what: "targets", .. })
    ));
    assert!(matches!(
        Embedding::<f32>::new(0, 4, 4, 1.0, &mut rng(0)),
        Err(GradError::ZeroSize { what: "vocab" })
    ));
}

/// Three AdamW steps of an f32 model whose norm backward is large enough to be split
/// across threads (B·L·D·4 bytes ≥ 256 KiB): identical bits on 1, 2 and 3 threads.
#[test]
fn training_steps_bit_identical_on_1_2_3_threads() {
    let run = || {
        let mut stack = StackConfig::new(2, 64, 4, Placement::PostNorm, NormKind::LayerNorm);
        stack.block.d_ff = 64;
        let cfg = LmConfig {
            vocab: 16,
            max_len: 32,
            stack,
            embed_std: 1.0,
        };
        let mut lm = LanguageModel::<f32>::new(&cfg, &mut rng(9)).unwrap();
        let mut opt = AdamW::new(AdamWConfig::default()).unwrap();
        let inputs = tokens(1, 32, 32, 16);
        let targets = tokens(2, 32, 32, 16);
        let mut losses = Vec::new();
        for _ in 0..3 {
            let (loss, g) = lm.loss_and_grads(inputs.view(), targets.view()).unwrap();
            losses.push(loss.to_bits());
            opt.step(&mut lm, &g, 1e-3).unwrap();
        }
        let mut bits = Vec::new();
        lm.visit_params(&mut |_, p| bits.extend(p.iter().map(|v| v.to_bits())));
        (losses, bits)
    };
    let results: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
                .install(run)
        })
        .collect();
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    assert!(
        results[0].0[2] < results[0].0[0],
        "the loss fell: {:?}",
        results[0].0
    );
}

/// `backward` from the logits' gradient (the cache only borrowed, a fresh scratch) gives
/// the bits of `loss_and_grads_into` (the cache's own scratch), and leaves the cache able
/// to serve the same backward again.
#[test]
fn backward_from_logits_matches_the_training_step() {
    let bits = |g: &LmGrads<f64>| {
        let mut v = Vec::new();
        g.for_each_grad(&mut |a| v.extend(a.iter().map(|x| x.to_bits())));
        v
    };
    for placement in [Placement::PostNorm, Placement::PeriNorm] {
        let lm = LanguageModel::<f64>::new(&lm_config(placement, NormKind::RmsNorm, 2), &mut rng(4)).unwrap();
        let (x, t) = (tokens(1, 2, 4, 5), tokens(2, 2, 4, 5));
        let (mut cache, mut grads) = (LmCache::default(), LmGrads::empty());
        lm.loss_and_grads_into(x.view(), t.view(), &mut cache, &mut grads)
            .unwrap();
        let targets: Vec<usize> = t.iter().copied().collect();
        let (_, dz) = softmax_cross_entropy(cache.logits(), &targets).unwrap();
        let first = lm.backward(&cache, &dz).unwrap();
        assert_eq!(bits(&first), bits(&grads), "{}", placement.name());
        assert_eq!(bits(&lm.backward(&cache, &dz).unwrap()), bits(&first));
    }
}
