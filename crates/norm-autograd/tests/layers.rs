//! Tests of the small layers: Linear, activations, the MLP stack, the losses, SGD and
//! the initializers — gradient checks in f64 over proptest shapes, and typed errors.

mod common;

use common::{TOL, project, rng, uniform};
use ndarray::{Array1, Array2, array};
use norm_autograd::{
    Activation, GradChecker, GradError, Gradients, Init, Linear, Mlp, MlpConfig, Module, NormKind, mse_loss,
    sgd_step, softmax_cross_entropy, softmax_rows,
};
use proptest::prelude::*;
use rand::SeedableRng;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn linear_gradients(rows in 1usize..6, din in 1usize..7, dout in 1usize..7, bias in any::<bool>(), seed in any::<u64>()) {
        let mut r = rng(seed);
        let mut lin = Linear::<f64>::new(din, dout, bias, Init::XavierNormal { gain: 1.0 }, &mut r).unwrap();
        if bias {
            lin.visit_params_mut(&mut |n, mut v| if n == "bias" { v.fill(0.3) });
        }
        let x = uniform(&mut r, (rows, din), -1.0, 1.0);
        let proj = uniform(&mut r, (rows, dout), -1.0, 1.0);
        let (_, cache) = lin.forward(&x).unwrap();
        let (dx, grads) = lin.backward(&cache, &proj).unwrap();
        let ck = GradChecker::default();
        let l2 = lin.clone();
        let rep = ck.check_input(&x, &dx, |xp| Ok(project(&proj, &l2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "{rep:?}");
        let rep = ck.check_params(&mut lin, &grads, |l| Ok(project(&proj, &l.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "{rep:?}");
    }

    /// ReLU is checked away from its kink (|x| > 0.05, far beyond the 2h stencil).
    #[test]
    fn activation_gradients(act in 0usize..4, n in 1usize..20, seed in any::<u64>()) {
        let act = [Activation::Identity, Activation::Relu, Activation::Tanh, Activation::Gelu][act];
        let mut r = rng(seed);
        let x = uniform(&mut r, (2, n), -3.0, 3.0).mapv(|v| if v.abs() < 0.05 { v + 0.1 } else { v });
        let proj = uniform(&mut r, (2, n), -1.0, 1.0);
        let (_, cache) = act.forward(&x).unwrap();
        let dx = act.backward(&cache, &proj).unwrap();
        let rep = GradChecker::default().check_input(&x, &dx, |xp| Ok(project(&proj, &act.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "{act:?}: {rep:?}");
    }

    /// Deep MLPs with and without a norm before each activation: input and every parameter.
    #[test]
    fn mlp_gradients(
        depth in 1usize..5, width in 2usize..6, norm in 0usize..3, act in 0usize..2,
        bias in any::<bool>(), last in any::<bool>(), seed in any::<u64>(),
    ) {
        let mut r = rng(seed);
        let cfg = MlpConfig {
            widths: std::iter::once(3).chain(std::iter::repeat_n(width, depth)).collect(),
            activation: [Activation::Tanh, Activation::Gelu][act],
            norm: [None, Some(NormKind::LayerNorm), Some(NormKind::RmsNorm)][norm],
            init: Init::Normal { gain: 1.5 },
            bias,
            activate_last: last,
        };
        let mut mlp = Mlp::<f64>::new(&cfg, &mut r).unwrap();
        let x = uniform(&mut r, (3, 3), -1.0, 1.0);
        let t = uniform(&mut r, (3, width), -1.0, 1.0);
        let loss = |m: &Mlp<f64>, x: &Array2<f64>| -> Result<f64, GradError> { Ok(mse_loss(&m.forward(x)?.0, &t)?.0) };
        let (y, cache) = mlp.forward(&x).unwrap();
        let (_, dy) = mse_loss(&y, &t).unwrap();
        let (dx, grads) = mlp.backward(&cache, &dy).unwrap();
        prop_assert_eq!(grads.d_outputs.len(), depth);
        prop_assert_eq!(&grads.d_outputs[depth - 1], &dy);
        let ck = GradChecker::default();
        let m2 = mlp.clone();
        let rep = ck.check_input(&x, &dx, |xp| loss(&m2, xp)).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "input: {rep:?}");
        let rep = ck.check_params(&mut mlp, &grads, |m| loss(m, &x)).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
        prop_assert_eq!(rep.checked, mlp.param_count());
    }

    #[test]
    fn loss_gradients(n in 1usize..5, c in 1usize..6, seed in any::<u64>()) {
        let mut r = rng(seed);
        let z = uniform(&mut r, (n, c), -3.0, 3.0);
        let t = uniform(&mut r, (n, c), -1.0, 1.0);
        let (_, g) = mse_loss(&z, &t).unwrap();
        let rep = GradChecker::default().check_input(&z, &g, |zp| Ok(mse_loss(zp, &t)?.0)).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "mse: {rep:?}");
        let targets: Vec<usize> = (0..n).map(|i| (seed as usize + i * 7) % c).collect();
        let (_, g) = softmax_cross_entropy(&z, &targets).unwrap();
        let rep = GradChecker::default().check_input(&z, &g, |zp| Ok(softmax_cross_entropy(zp, &targets)?.0)).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "ce: {rep:?}");
        // Each row of the CE gradient sums to zero (softmax sums to one).
        for row in g.rows() {
            prop_assert!(row.sum().abs() < 1e-15);
        }
    }
}

/// Cross-entropy is finite for logits that overflow a naive exp.
/// The cache keeps the tanh values, so the backward computes no tanh; the results are
/// the one-value functions' bit for bit, and a cache used by another activation falls
/// back to that activation's derivative at the cached input.
#[test]
fn activation_cache_matches_the_scalar_functions() {
    let acts = [
        Activation::Identity,
        Activation::Relu,
        Activation::Tanh,
        Activation::Gelu,
    ];
    let x = Array2::from_shape_fn((3, 7), |(i, j)| (i as f32 - 1.0) * 1.7 + j as f32 * 0.31 - 0.9);
    let dy = Array2::from_shape_fn((3, 7), |(i, j)| 0.5 - (i * 7 + j) as f32 * 0.05);
    for act in acts {
        let (y, cache) = act.forward(&x).unwrap();
        assert_eq!(y, x.mapv(|v| act.apply(v)), "{act:?} forward");
        let want = ndarray::Zip::from(&x)
            .and(&dy)
            .map_collect(|&x, &g| g * act.derivative(x));
        assert_eq!(act.backward(&cache, &dy).unwrap(), want, "{act:?} backward");
        for other in acts {
            let want = ndarray::Zip::from(&x)
                .and(&dy)
                .map_collect(|&x, &g| g * other.derivative(x));
            assert_eq!(
                other.backward(&cache, &dy).unwrap(),
                want,
                "{act:?} cache, {other:?} backward"
            );
        }
    }
}

#[test]
fn cross_entropy_is_stable() {
    let (loss, g) = softmax_cross_entropy(&array![[1000.0f64, 0.0, -1000.0]], &[0]).unwrap();
    assert_eq!(loss, 0.0);
    assert!(g.iter().all(|v| v.is_finite()));
    let (loss, _) = softmax_cross_entropy(&array![[1000.0f32, 0.0]], &[1]).unwrap();
    assert_eq!(loss, 1000.0);
    let p = softmax_rows(&array![[f64::NEG_INFINITY, f64::NEG_INFINITY]]);
    assert_eq!(p, array![[0.0, 0.0]]);
}

/// SGD on a least-squares problem lowers the loss every step and reaches the optimum.
#[test]
fn sgd_fits_a_linear_map() {
    let mut r = rng(1);
    let x = uniform(&mut r, (64, 3), -1.0, 1.0);
    let w_true = array![[1.0], [-2.0], [0.5]];
    let t = x.dot(&w_true) + 0.25;
    let mut lin = Linear::<f64>::new(3, 1, true, Init::XavierUniform { gain: 1.0 }, &mut r).unwrap();
    let mut prev = f64::INFINITY;
    for _ in 0..400 {
        let (y, cache) = lin.forward(&x).unwrap();
        let (loss, dy) = mse_loss(&y, &t).unwrap();
        // Monotone until rounding noise (~1e-30) is all that is left.
        assert!(loss <= prev || loss < 1e-25, "loss rose: {prev} -> {loss}");
        prev = loss;
        let (_, g) = lin.backward(&cache, &dy).unwrap();
        sgd_step(&mut lin, &g, 0.3).unwrap();
    }
    assert!(prev < 1e-10, "final loss {prev}");
    assert!((lin.weight()[[1, 0]] + 2.0).abs() < 1e-5);
    assert!((lin.bias().unwrap()[0] - 0.25).abs() < 1e-5);
}

/// Initializers: same seed, same bytes; standard deviations and bounds as documented.
#[test]
fn initializers_follow_their_formulas() {
    let draw = |init: Init, seed| {
        init.sample::<f64, _>(400, 200, &mut rand_chacha::ChaCha8Rng::seed_from_u64(seed))
            .unwrap()
    };
    let std = |a: &Array2<f64>| (a.iter().map(|v| v * v).sum::<f64>() / a.len() as f64).sqrt();
    let a = draw(Init::Normal { gain: 2.5 }, 5);
    assert_eq!(a, draw(Init::Normal { gain: 2.5 }, 5));
    assert_ne!(a, draw(Init::Normal { gain: 2.5 }, 6));
    // 80 000 draws: the sample std is within ~0.5% (5 standard errors: 5/sqrt(2·80000)).
    assert!((std(&a) / (2.5 / 400f64.sqrt()) - 1.0).abs() < 0.0125);
    let b = draw(Init::XavierNormal { gain: 1.0 }, 5);
    assert!((std(&b) / (2.0 / 600f64).sqrt() - 1.0).abs() < 0.0125);
    let bound = (6.0 / 600f64).sqrt();
    let c = draw(Init::XavierUniform { gain: 1.0 }, 5);
    assert!(c.iter().all(|v| v.abs() <= bound));
    assert!(c.iter().fold(0.0f64, |m, v| m.max(v.abs())) > 0.99 * bound);
    let e = Init::Normal { gain: -1.0 }
        .sample::<f64, _>(2, 2, &mut rng(0))
        .unwrap_err();
    assert_eq!(
        e,
        GradError::InvalidValue {
            what: "gain",
            value: -1.0
        }
    );
    assert_eq!(
        Init::Normal { gain: 1.0 }
            .sample::<f32, _>(0, 2, &mut rng(0))
            .unwrap_err(),
        GradError::ZeroSize { what: "fan_in" }
    );
}

/// Layer, loss and update errors are typed and name the shapes.
#[test]
fn layer_errors_are_typed() {
    let lin = Linear::<f64>::from_weights(Array2::ones((3, 2)), Some(Array1::zeros(2))).unwrap();
    assert_eq!(
        lin.forward(&Array2::ones((4, 5))).unwrap_err(),
        GradError::MatMul {
            what: "x · weight",
            left: vec![4, 5],
            right: vec![3, 2]
        }
    );
    let (_, cache) = lin.forward(&Array2::ones((4, 3))).unwrap();
    assert_eq!(
        lin.backward(&cache, &Array2::ones((4, 3))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "dy",
            expected: vec![4, 2],
            got: vec![4, 3]
        }
    );
    let other_in = Linear::<f64>::from_weights(Array2::ones((5, 2)), None).unwrap();
    assert_eq!(
        other_in.backward(&cache, &Array2::ones((4, 2))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "cache.x",
            expected: vec![4, 5],
            got: vec![4, 3]
        }
    );
    assert_eq!(
        Linear::<f64>::from_weights(Array2::ones((3, 2)), Some(Array1::zeros(3))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "bias",
            expected: vec![2],
            got: vec![3]
        }
    );
    assert_eq!(
        softmax_cross_entropy(&Array2::<f64>::zeros((2, 3)), &[0, 3]).unwrap_err(),
        GradError::ClassOutOfRange {
            row: 1,
            class: 3,
            classes: 3
        }
    );
    assert_eq!(
        mse_loss(&Array2::<f64>::zeros((2, 3)), &Array2::zeros((3, 2))).unwrap_err(),
        GradError::ShapeMismatch {
            what: "target",
            expected: vec![2, 3],
            got: vec![3, 2]
        }
    );
    // SGD refuses gradients of another model and leaves the parameters alone.
    let mut other = Linear::<f64>::from_weights(Array2::ones((2, 2)), None).unwrap();
    let (_, c) = lin.forward(&Array2::ones((1, 3))).unwrap();
    let (_, g) = lin.backward(&c, &Array2::ones((1, 2))).unwrap();
    let before = other.clone();
    assert!(matches!(
        sgd_step(&mut other, &g, 0.1),
        Err(GradError::ParamMismatch { .. })
    ));
    assert_eq!(other, before);
    assert!(matches!(
        sgd_step(&mut other, &g, -0.1),
        Err(GradError::InvalidValue { what: "lr", .. })
    ));
    let names: Vec<String> = g.grad_norms().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec!["weight", "bias"]);
}
