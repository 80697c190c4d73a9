//! Mathematical properties of the forward pass (proptest): LayerNorm output has mean 0
//! and variance var/(var+eps); RmsNorm output has mean square ms/(ms+eps);
//! LN(x) = RMS(x − mean(x)); LN(x + c) = LN(x); LN(c·x) and RMS(c·x) equal the originals
//! as far as eps/c² allows (and exactly with eps/c²); a view equals its contiguous copy.

use ndarray::{Array2, ArrayView1};
use norm_core::{Float, LayerNorm, RmsNorm};
use proptest::prelude::*;

use crate::common::{KINDS, LAYOUTS, Laid, Norm, Rng, assert_close, assert_same, flat, tol_for};

fn f64s(x: &[impl Float]) -> Vec<f64> {
    x.iter().map(|v| v.to_f64_exact()).collect()
}

/// Two-pass mean and (population) variance in f64.
fn mean_var(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let m = x.iter().sum::<f64>() / n;
    (m, x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / n)
}

/// A row of length `d`, `scale · (offset + N(0, 1))`, and the row's eps `eps_rel · var`
/// so that eps matters at every magnitude.
#[derive(Debug, Clone)]
struct Row {
    d: usize,
    log10_scale: i32,
    offset: f64,
    log10_eps_rel: i32,
    seed: u64,
}

fn row() -> impl Strategy<Value = Row> {
    (2..300usize, -6..=6i32, -50.0..50.0f64, -9..=1i32, any::<u64>()).prop_map(
        |(d, log10_scale, offset, log10_eps_rel, seed)| Row {
            d,
            log10_scale,
            offset,
            log10_eps_rel,
            seed,
        },
    )
}

impl Row {
    fn values<F: Float>(&self) -> Vec<F> {
        let s = 10f64.powi(self.log10_scale);
        Rng::new(self.seed).normals(self.d, self.offset * s, s)
    }
    fn eps<F: Float>(&self) -> F {
        let s = 10f64.powi(self.log10_scale);
        F::from_f64_round(10f64.powi(self.log10_eps_rel) * s * s)
    }
}

/// LayerNorm (weight 1, no bias): output mean 0 and variance var/(var+eps), per row.
fn check_ln_moments<F: Float>(r: &Row) {
    let x = r.values::<F>();
    let eps = r.eps::<F>();
    let ln = LayerNorm::<F>::new(r.d)
        .expect("d > 0")
        .without_bias()
        .with_eps(eps)
        .expect("eps >= 0");
    let mut y = vec![F::zero(); r.d];
    ln.forward_slice(&x, &mut y).expect("one row");
    let (_, var) = mean_var(&f64s(&x));
    let (ym, yv) = mean_var(&f64s(&y));
    let want = var / (var + eps.to_f64_exact());
    let tol = tol_for::<F>(r.d);
    assert!(ym.abs() <= tol, "output mean {ym}");
    assert!(
        (yv - want).abs() <= tol * want.max(tol),
        "output var {yv}, want var/(var+eps) = {want}"
    );
}

/// RmsNorm (weight 1, no bias): output mean square ms/(ms+eps), per row.
fn check_rms_moments<F: Float>(r: &Row) {
    let x = r.values::<F>();
    let eps = r.eps::<F>();
    let rms = RmsNorm::<F>::new(r.d)
        .expect("d > 0")
        .with_eps(eps)
        .expect("eps >= 0");
    let mut y = vec![F::zero(); r.d];
    rms.forward_slice(&x, &mut y).expect("one row");
    let ms = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>() / v.len() as f64;
    let (xms, yms) = (ms(&f64s(&x)), ms(&f64s(&y)));
    let want = xms / (xms + eps.to_f64_exact());
    assert!(
        (yms - want).abs() <= tol_for::<F>(r.d) * want,
        "output ms {yms}, want ms/(ms+eps) = {want}"
    );
}

/// `LN(x) = RMS(x − mean(x))` with the same weight, bias and eps (x − mean in f64).
fn check_ln_is_centered_rms(r: &Row, with_bias: bool) {
    let mut rng = Rng::new(r.seed ^ 1);
    let x = r.values::<f64>();
    let (m, _) = mean_var(&x);
    let centered: Vec<f64> = x.iter().map(|v| v - m).collect();
    let eps = r.eps::<f64>();
    let w = rng.normals::<f64>(r.d, 1.0, 0.5);
    let b = with_bias.then(|| rng.normals::<f64>(r.d, 0.0, 1.0));
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), eps).expect("valid");
    let rms = RmsNorm::from_weights(w.clone(), b.clone(), eps).expect("valid");
    let (mut yl, mut yr) = (vec![0.0; r.d], vec![0.0; r.d]);
    ln.forward_slice(&x, &mut yl).expect("row");
    rms.forward_slice(&centered, &mut yr).expect("row");
    // x − mean rounds at |x|·2^-53, i.e. relative to the spread by (|offset|+1).
    let tol = tol_for::<f64>(r.d) * (1.0 + r.offset.abs());
    let scale = |i: usize| w[i].abs() * 4.0 + b.as_ref().map_or(0.0, |b| b[i].abs());
    assert_close("LN(x) vs RMS(x - mean)", &yl, &yr, scale, tol);
}

/// `LN(x + c) = LN(x)` for a shift `c` that is exact in `F` (x on a binary grid).
fn check_shift<F: Float>(r: &Row, shift_units: i64, grid_bits: i32) {
    let mut rng = Rng::new(r.seed);
    let unit = 2f64.powi(r.log10_scale * 3 - grid_bits);
    // Integers below 2^grid_bits+2 times `unit`: exact in F, and so are their sums with c.
    let k = |rng: &mut Rng| (rng.normal() * 2f64.powi(grid_bits)).round();
    let x: Vec<F> = (0..r.d).map(|_| F::from_f64_round(k(&mut rng) * unit)).collect();
    let c = shift_units as f64 * unit;
    let xc: Vec<F> = x
        .iter()
        .map(|&v| F::from_f64_round(v.to_f64_exact() + c))
        .collect();
    for (a, b) in x.iter().zip(&xc) {
        assert_eq!(
            b.to_f64_exact() - a.to_f64_exact(),
            c,
            "shift must be exact in the test"
        );
    }
    let ln = LayerNorm::<F>::new(r.d).expect("d > 0");
    let (mut y, mut yc) = (vec![F::zero(); r.d], vec![F::zero(); r.d]);
    ln.forward_slice(&x, &mut y).expect("row");
    ln.forward_slice(&xc, &mut yc).expect("row");
    assert_close(
        "LN(x + c) vs LN(x)",
        &yc,
        &f64s(&y),
        |i| 1.0 + y[i].to_f64_exact().abs(),
        tol_for::<F>(r.d),
    );
}

/// `N(c·x; eps) = N(x; eps/c²)` exactly in math, and `N(c·x; eps) ≈ N(x; eps)` up to the
/// factor sqrt((s + eps/c²)/(s + eps)) that eps/c² allows (s = var or ms).
fn check_scale<F: Float>(r: &Row, c: f64) {
    let x = r.values::<F>();
    let cx: Vec<F> = x
        .iter()
        .map(|&v| F::from_f64_round(v.to_f64_exact() * c))
        .collect();
    let eps = r.eps::<F>();
    let eps_over_c2 = F::from_f64_round(eps.to_f64_exact() / (c * c));
    for kind in KINDS {
        let n = Norm::<F>::plain(kind, r.d, eps);
        let n_scaled_eps = Norm::<F>::plain(kind, r.d, eps_over_c2);
        let y_cx = n.forward_slice(&cx);
        let y_x = n.forward_slice(&x);
        let y_x_eps = n_scaled_eps.forward_slice(&x);
        // c·x rounds in F: a relative input error of one ulp.
        let tol = tol_for::<F>(r.d) * 2.0;
        let unit = |i: usize| 1.0 + y_x_eps[i].to_f64_exact().abs();
        assert_close(
            &format!("{kind:?}(c·x; eps) vs (x; eps/c²)"),
            &y_cx,
            &f64s(&y_x_eps),
            unit,
            tol,
        );

        let xs = f64s(&x);
        let s = match kind {
            crate::common::Kind::Ln => mean_var(&xs).1,
            crate::common::Kind::Rms => xs.iter().map(|v| v * v).sum::<f64>() / xs.len() as f64,
        };
        let e = eps.to_f64_exact();
        // N(x; eps/c²) / N(x; eps) = sqrt((s + eps)/(s + eps/c²)).
        let allowed = ((s + e) / (s + eps_over_c2.to_f64_exact())).sqrt() - 1.0;
        let bound = |i: usize| y_x[i].to_f64_exact().abs() * allowed.abs() + tol * unit(i);
        for (i, (a, b)) in y_cx.iter().zip(&y_x).enumerate() {
            let diff = (a.to_f64_exact() - b.to_f64_exact()).abs();
            assert!(
                diff <= bound(i),
                "{kind:?}(c·x) vs (x), c = {c}: |diff| {diff} > {}",
                bound(i)
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn ln_output_mean_zero_and_variance_shrunk_by_eps(r in row()) {
        check_ln_moments::<f64>(&r);
        check_ln_moments::<f32>(&r);
    }

    #[test]
    fn rms_output_mean_square_shrunk_by_eps(r in row()) {
        check_rms_moments::<f64>(&r);
        check_rms_moments::<f32>(&r);
    }

    #[test]
    fn ln_equals_rms_of_centered_input(r in row(), bias in any::<bool>()) {
        check_ln_is_centered_rms(&r, bias);
    }

    #[test]
    fn ln_is_shift_invariant(r in row(), shift in -(1i64 << 24)..(1i64 << 24), small in -2000i64..2000) {
        check_shift::<f64>(&r, shift, 20);
        check_shift::<f32>(&r, small, 10);
    }

    #[test]
    fn scaling_is_absorbed_up_to_eps(r in row(), log10_c in -3.0..3.0f64) {
        let c = 10f64.powf(log10_c);
        check_scale::<f64>(&r, c);
        check_scale::<f32>(&r, c);
    }

    /// A view (any layout) and its contiguous copy give bit-identical outputs.
    #[test]
    fn view_equals_contiguous_copy(
        rows in 1..9usize, d in 1..70usize, layout in 0..LAYOUTS.len(), seed in any::<u64>()
    ) {
        let mut rng = Rng::new(seed);
        let x = rng.normals::<f32>(rows * d, 0.3, 1.7);
        let laid = Laid::new(&[rows, d], &x, LAYOUTS[layout]);
        let view = laid.view();
        let copy = ndarray::ArrayD::from_shape_vec(view.raw_dim(), flat(&view)).expect("same shape");
        prop_assert!(copy.is_standard_layout());
        for kind in KINDS {
            let n = Norm::<f32>::random(kind, d, 1e-5, seed % 2 == 0, &mut rng);
            assert_same("view vs copy", &flat(&n.forward(&view).view()), &flat(&n.forward(&copy.view()).view()));
        }
    }
}

/// Worked example, by hand: x = [1, 2, 3, 4] has mean 2.5, var 1.25; RMS has ms 7.5.
#[test]
fn hand_computed_rows() {
    let x = Array2::from_shape_vec((1, 4), vec![1.0f64, 2.0, 3.0, 4.0]).expect("shape");
    let ln = LayerNorm::<f64>::new(4).expect("d").with_eps(0.0).expect("eps");
    let y = ln.forward(&x).expect("forward");
    let r = 1.0 / 1.25f64.sqrt();
    let want = [-1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r];
    assert_close(
        "LN [1,2,3,4]",
        y.as_slice().expect("contiguous"),
        &want,
        |_| 1.0,
        1e-15,
    );
    let rms = RmsNorm::<f64>::new(4).expect("d").with_eps(0.0).expect("eps");
    let y = rms.forward(&x.row(0)).expect("rank 1");
    let r = 1.0 / 7.5f64.sqrt();
    assert_close(
        "RMS [1,2,3,4]",
        y.as_slice().expect("contiguous"),
        &[r, 2.0 * r, 3.0 * r, 4.0 * r],
        |_| 1.0,
        1e-15,
    );
    // With gamma and beta: y = n·gamma + beta.
    let g = LayerNorm::from_weights(vec![2.0, 2.0, 2.0, 2.0], Some(vec![1.0, 1.0, 1.0, 1.0]), 0.0)
        .expect("valid");
    let y = g
        .forward(&ArrayView1::from(&[1.0f64, 2.0, 3.0, 4.0][..]))
        .expect("rank 1");
    let r = 1.0 / 1.25f64.sqrt();
    let want = [1.0 - 3.0 * r, 1.0 - r, 1.0 + r, 1.0 + 3.0 * r];
    assert_close(
        "LN affine",
        y.as_slice().expect("contiguous"),
        &want,
        |_| 1.0,
        1e-15,
    );
}
