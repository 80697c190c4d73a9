//! Tests of the LayerNorm/RmsNorm backward passes: finite-difference gradient checks
//! (f64, random shapes via proptest), the slow reference twin, the exact orthogonality
//! and zero-sum properties, f32 vs f64, views, determinism of the dgamma/dbeta blocks,
//! and typed errors.

mod common;

use common::{TOL, project, rng, uniform};
use ndarray::{Array1, Array2, Array3, Axis};
use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Sweep, backward_slice_on};
use norm_autograd::reference::{layer_norm_backward_reference, rms_norm_backward_reference};
use norm_autograd::{
    GradChecker, GradError, GradSlices, Norm, layer_norm_backward, layer_norm_backward_into,
    layer_norm_backward_slice, rms_norm_backward, rms_norm_backward_into,
};
use norm_core::{LayerNorm, NormError, RmsNorm};
use proptest::prelude::*;

/// A norm of `kind` with random gamma (and beta when `bias`), eps as given.
fn make_norm(kind: usize, d: usize, bias: bool, eps: f64, seed: u64) -> Norm<f64> {
    let mut r = rng(seed);
    let w = uniform(&mut r, d, 0.5, 1.5).to_vec();
    let b = bias.then(|| uniform(&mut r, d, -0.5, 0.5).to_vec());
    if kind == 0 {
        Norm::Layer(LayerNorm::from_weights(w, b, eps).unwrap())
    } else {
        Norm::Rms(RmsNorm::from_weights(w, b, eps).unwrap())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// dx, dgamma, dbeta of both norms match finite differences in f64, rank 3.
    #[test]
    fn norm_gradients_match_finite_differences(
        kind in 0usize..2, b in 1usize..3, l in 1usize..4, d in 2usize..9,
        bias in any::<bool>(), eps_i in 0usize..4, seed in any::<u64>(),
    ) {
        let eps = [0.0, 1e-5, 1e-2, 1.0][eps_i];
        let mut norm = make_norm(kind, d, bias, eps, seed);
        let mut r = rng(seed ^ 1);
        let x = uniform(&mut r, (b, l, d), -2.0, 2.0);
        let proj = uniform(&mut r, (b, l, d), -1.0, 1.0);
        let (_, cache) = norm.forward(&x).unwrap();
        let (dx, grads) = norm.backward(&cache, &proj).unwrap();
        let checker = GradChecker::default();
        let n2 = norm.clone();
        let rep = checker.check_input(&x, &dx, |xp| Ok(project(&proj, &n2.forward(xp)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "dx: {rep:?}");
        let rep = checker.check_params(&mut norm, &grads, |n| Ok(project(&proj, &n.forward(&x)?.0))).unwrap();
        prop_assert!(rep.max_rel_error < TOL, "params: {rep:?}");
        prop_assert_eq!(rep.checked, d * if bias { 2 } else { 1 });
    }

    /// The fast kernels agree with the explicit-Jacobian reference twin, including rows
    /// with a large offset and large magnitudes.
    #[test]
    fn kernels_match_reference(
        rows in 1usize..70, d in 1usize..40, offset in prop::sample::select(vec![0.0, 1e3, -1e6]),
        scale in prop::sample::select(vec![1e-3, 1.0, 1e4]), seed in any::<u64>(),
    ) {
        let mut r = rng(seed);
        let x = uniform(&mut r, (rows, d), -1.0, 1.0).mapv(|v| offset + scale * v);
        let dy = uniform(&mut r, (rows, d), -1.0, 1.0);
        let w = uniform(&mut r, d, 0.5, 1.5).to_vec();
        let eps = 1e-5;
        let ln = LayerNorm::from_weights(w.clone(), Some(vec![0.0; d]), eps).unwrap();
        let (_, st) = ln.forward_with_stats(&x).unwrap();
        let (dx, g) = layer_norm_backward(&ln, &x, &st, &dy).unwrap();
        let (rdx, rdg, rdb) = layer_norm_backward_reference(x.as_slice().unwrap(), dy.as_slice().unwrap(), &w, eps);
        assert_close(dx.as_slice().unwrap(), &rdx, 1e-9);
        assert_close(g.dgamma.as_slice().unwrap(), &rdg, 1e-9);
        assert_close(g.dbeta.unwrap().as_slice().unwrap(), &rdb, 1e-12);
        let rms = RmsNorm::from_weights(w.clone(), None, eps).unwrap();
        let (_, st) = rms.forward_with_stats(&x).unwrap();
        let (dx, g) = rms_norm_backward(&rms, &x, &st, &dy).unwrap();
        let (rdx, rdg, _) = rms_norm_backward_reference(x.as_slice().unwrap(), dy.as_slice().unwrap(), &w, eps);
        assert_close(dx.as_slice().unwrap(), &rdx, 1e-9);
        assert_close(g.dgamma.as_slice().unwrap(), &rdg, 1e-9);
    }

    /// Exact identities (per row, g = dy·gamma):
    /// LayerNorm: Σ dx = 0 and Σ dx·x̂ = eps·rstd³·Σ g·x̂;  RmsNorm: Σ dx·x = eps·rrms²·Σ g·x̂.
    /// With eps = 0 the right-hand sides vanish (dx ⟂ x̂, dx ⟂ x).
    #[test]
    fn orthogonality_and_zero_sum_follow_the_exact_eps_formula(
        rows in 1usize..6, d in 2usize..50, eps_i in 0usize..4, seed in any::<u64>(),
    ) {
        let eps = [0.0, 1e-5, 0.1, 3.0][eps_i];
        let mut r = rng(seed);
        let x = uniform(&mut r, (rows, d), -2.0, 2.0);
        let dy = uniform(&mut r, (rows, d), -1.0, 1.0);
        let w = uniform(&mut r, d, 0.5, 1.5);
        let ln = LayerNorm::from_weights(w.to_vec(), None, eps).unwrap();
        let (_, st) = ln.forward_with_stats(&x).unwrap();
        let (dx, _) = layer_norm_backward(&ln, &x, &st, &dy).unwrap();
        for i in 0..rows {
            let (m, rs) = (st.mean[i], st.rstd[i]);
            let xh = x.row(i).mapv(|v| (v - m) * rs);
            let g = &dy.row(i) * &w;
            let dxr = dx.row(i);
            // Rounding budget: the magnitudes of the terms that cancel.
            let mx = 1.0 + xh.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let scale = rs * g.iter().map(|v| v.abs()).sum::<f64>() * mx * mx;
            prop_assert!(dxr.sum().abs() <= 1e-13 * scale, "Σdx = {}", dxr.sum());
            let lhs = dxr.dot(&xh);
            let rhs = eps * rs.powi(3) * g.dot(&xh);
            prop_assert!((lhs - rhs).abs() <= 1e-13 * scale, "LN: {lhs} vs {rhs}");
        }
        let rms = RmsNorm::from_weights(w.to_vec(), None, eps).unwrap();
        let (_, st) = rms.forward_with_stats(&x).unwrap();
        let (dx, _) = rms_norm_backward(&rms, &x, &st, &dy).unwrap();
        for i in 0..rows {
            let rr = st.rrms[i];
            let xr = x.row(i);
            let xh = xr.mapv(|v| v * rr);
            let g = &dy.row(i) * &w;
            let dxr = dx.row(i);
            let mx = 1.0 + xh.iter().fold(0.0f64, |a, v| a.max(v.abs()));
            let scale = g.iter().zip(xr.iter()).map(|(a, b)| (a * b).abs()).sum::<f64>() * rr * mx * mx;
            let lhs = dxr.dot(&xr);
            let rhs = eps * rr * rr * g.dot(&xh);
            prop_assert!((lhs - rhs).abs() <= 1e-13 * scale.max(rhs.abs()), "RMS: {lhs} vs {rhs}");
        }
    }

    /// dgamma/dbeta are bit-identical however the row blocks are split and in whatever
    /// order the groups are processed; dx too.
    #[test]
    fn block_reduction_is_independent_of_chunking(
        rows in 0usize..300, d in 1usize..24, chunk in 1usize..6, seed in any::<u64>(),
    ) {
        let mut r = rng(seed);
        let x = uniform(&mut r, (rows, d), -3.0, 3.0).mapv(|v| v as f32);
        let dy = uniform(&mut r, (rows, d), -1.0, 1.0).mapv(|v| v as f32);
        let w = uniform(&mut r, d, 0.5, 1.5).mapv(|v| v as f32).to_vec();
        let (xs, dys) = (x.as_slice().unwrap(), dy.as_slice().unwrap());
        let ln = LayerNorm::from_weights(w.clone(), Some(vec![0.0; d]), 1e-5f32).unwrap();
        let (mut y, mut mean, mut rstd) = (vec![0.0f32; rows * d], vec![0.0f32; rows], vec![0.0f32; rows]);
        ln.forward_slice_with_stats(xs, &mut y, &mut mean, &mut rstd).unwrap();
        let run = |sweep| {
            let (mut dx, mut dg, mut db) = (vec![0.0f32; rows * d], vec![0.0f32; d], vec![0.0f32; d]);
            let input = BackwardInput { weight: &w, eps: 1e-5, x: xs, dy: dys, saved: Saved::LayerNorm { mean: &mean, rstd: &rstd } };
            backward_slice_on(ForcedPath::detected(), sweep, input, GradSlices { dx: &mut dx, dgamma: &mut dg, dbeta: Some(&mut db) }).unwrap();
            (bits(&dx), bits(&dg), bits(&db))
        };
        prop_assert_eq!(run(Sweep::Serial), run(Sweep::Chunked(chunk)));
        let mut rrms = vec![0.0f32; rows];
        RmsNorm::from_weights(w.clone(), None, 1e-6f32).unwrap().forward_slice_with_stats(xs, &mut y, &mut rrms).unwrap();
        let run = |sweep| {
            let (mut dx, mut dg, mut db) = (vec![0.0f32; rows * d], vec![0.0f32; d], vec![0.0f32; d]);
            let input = BackwardInput { weight: &w, eps: 1e-6, x: xs, dy: dys, saved: Saved::RmsNorm { rrms: &rrms } };
            backward_slice_on(ForcedPath::detected(), sweep, input, GradSlices { dx: &mut dx, dgamma: &mut dg, dbeta: Some(&mut db) }).unwrap();
            (bits(&dx), bits(&dg), bits(&db))
        };
        prop_assert_eq!(run(Sweep::Serial), run(Sweep::Chunked(chunk)));
    }

    /// The f32 backward agrees with the f64 backward within f32 precision.
    #[test]
    fn f32_agrees_with_f64(rows in 1usize..40, d in 2usize..200, seed in any::<u64>()) {
        let mut r = rng(seed);
        let x = uniform(&mut r, (rows, d), -3.0, 3.0).mapv(|v| f64::from(v as f32));
        let dy = uniform(&mut r, (rows, d), -1.0, 1.0).mapv(|v| f64::from(v as f32));
        let w: Vec<f64> = uniform(&mut r, d, 0.5, 1.5).iter().map(|&v| f64::from(v as f32)).collect();
        let w32: Vec<f32> = w.iter().map(|&v| v as f32).collect();
        let (x32, dy32) = (x.mapv(|v| v as f32), dy.mapv(|v| v as f32));
        let l64 = LayerNorm::from_weights(w.clone(), Some(vec![0.0; d]), 1e-5).unwrap();
        let l32 = LayerNorm::from_weights(w32.clone(), Some(vec![0.0; d]), 1e-5f32).unwrap();
        let (_, s64) = l64.forward_with_stats(&x).unwrap();
        let (_, s32) = l32.forward_with_stats(&x32).unwrap();
        let (dx64, g64) = layer_norm_backward(&l64, &x, &s64, &dy).unwrap();
        let (dx32, g32) = layer_norm_backward(&l32, &x32, &s32, &dy32).unwrap();
        // Budget: f32 rounding (a few hundred ulps, growing like √d) of the magnitudes
        // that cancel, rstd·|dy·gamma|·(1 + |x̂|)² for dx and Σ_rows |dy·x̂| for dgamma.
        let tol = 2e-5 * (d as f64).sqrt();
        let gmax = dy.iter().fold(0.0f64, |m, v| m.max(v.abs())) * 1.5;
        let xhmax = (d as f64).sqrt();
        let rmax = s64.rstd.iter().fold(0.0f64, |m, v| m.max(*v));
        check_f32(&dx32, &dx64, tol * rmax * gmax * (1.0 + xhmax).powi(2));
        check_f32(&g32.dgamma, &g64.dgamma, tol * rows as f64 * gmax * xhmax);
        let r64 = RmsNorm::from_weights(w, None, 1e-6).unwrap();
        let r32 = RmsNorm::from_weights(w32, None, 1e-6f32).unwrap();
        let (_, s64) = r64.forward_with_stats(&x).unwrap();
        let (_, s32) = r32.forward_with_stats(&x32).unwrap();
        let (dx64, g64) = rms_norm_backward(&r64, &x, &s64, &dy).unwrap();
        let (dx32, g32) = rms_norm_backward(&r32, &x32, &s32, &dy32).unwrap();
        let rmax = s64.rrms.iter().fold(0.0f64, |m, v| m.max(*v));
        check_f32(&dx32, &dx64, tol * rmax * gmax * (1.0 + xhmax).powi(2));
        check_f32(&g32.dgamma, &g64.dgamma, tol * rows as f64 * gmax * xhmax);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// `|a − b| ≤ tol·max(1, max|b|)` elementwise.
fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    let s = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * s, "entry {i}: {x} vs {y} (scale {s})");
    }
}

/// f32 result within the absolute budget `atol` of the f64 result.
fn check_f32<D: ndarray::Dimension>(a: &ndarray::Array<f32, D>, b: &ndarray::Array<f64, D>, atol: f64) {
    for (x, y) in a.iter().zip(b.iter()) {
        assert!((f64::from(*x) - y).abs() <= atol, "{x} vs {y} (budget {atol})");
    }
}

/// f32 rows with a large common offset (1e4 + N(0, 1)): the saved mean is rounded to
/// f32, and the kernel's residual-mean correction keeps dx accurate anyway.
#[test]
fn large_offset_rows_stay_accurate_in_f32() {
    let mut r = rng(7);
    let d = 256;
    let x64 = uniform(&mut r, (4, d), -1.0, 1.0).mapv(|v| f64::from((1e4 + v) as f32));
    let dy64 = uniform(&mut r, (4, d), -1.0, 1.0).mapv(|v| f64::from(v as f32));
    let ln32 = LayerNorm::<f32>::new(d).unwrap();
    let (x32, dy32) = (x64.mapv(|v| v as f32), dy64.mapv(|v| v as f32));
    let (_, st) = ln32.forward_with_stats(&x32).unwrap();
    let (dx32, _) = layer_norm_backward(&ln32, &x32, &st, &dy32).unwrap();
    let (rdx, _, _) = layer_norm_backward_reference(
        x64.as_slice().unwrap(),
        dy64.as_slice().unwrap(),
        &vec![1.0; d],
        1e-5,
    );
    let s = rdx.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    for (a, b) in dx32.iter().zip(&rdx) {
        // x - mean is exact here; what remains is f32 rounding of the row sums.
        assert!((f64::from(*a) - b).abs() < 1e-4 * s, "{a} vs {b}");
    }
}

/// Strided and transposed views give the same result as a contiguous copy.
#[test]
fn views_match_contiguous_input() {
    let mut r = rng(3);
    let base = uniform(&mut r, (6, 10), -2.0, 2.0);
    let xt = base.t(); // (10, 6), not contiguous in row-major order
    let xc = xt.to_owned();
    let dy = uniform(&mut r, (10, 6), -1.0, 1.0);
    let ln = LayerNorm::<f64>::new(6).unwrap();
    let (_, st_v) = ln.forward_with_stats(&xt).unwrap();
    let (_, st_c) = ln.forward_with_stats(&xc).unwrap();
    let (dx_v, g_v) = layer_norm_backward(&ln, &xt, &st_v, &dy.t().to_owned().t()).unwrap();
    let (dx_c, g_c) = layer_norm_backward(&ln, &xc, &st_c, &dy).unwrap();
    assert_eq!(dx_v, dx_c);
    assert_eq!(g_v, g_c);
    // A non-contiguous output buffer is written in logical order too.
    let mut out = Array2::<f64>::zeros((6, 10));
    let mut dg = vec![0.0; 6];
    layer_norm_backward_into(
        &ln,
        &xc,
        &st_c,
        &dy,
        &mut out.view_mut().reversed_axes(),
        &mut dg,
        None,
    )
    .unwrap();
    assert_eq!(out.t(), dx_c);
    // Every-other-row slice.
    let x3 = uniform(&mut r, (8, 6), -1.0, 1.0);
    let xs = x3.slice(ndarray::s![..;2, ..]);
    let rms = RmsNorm::<f64>::new(6).unwrap();
    let (_, st) = rms.forward_with_stats(&xs).unwrap();
    let dy4 = Array2::<f64>::ones((4, 6));
    let mut dx = Array2::<f64>::zeros((4, 6));
    rms_norm_backward_into(&rms, &xs, &st, &dy4, &mut dx, &mut [0.0; 6], None).unwrap();
    let (_, st2) = rms.forward_with_stats(&xs.to_owned()).unwrap();
    let (dx2, _) = rms_norm_backward(&rms, &xs.to_owned(), &st2, &dy4).unwrap();
    assert_eq!(dx, dx2);
}

/// Every shape mismatch is a typed error naming the shapes.
#[test]
fn shape_errors_are_typed() {
    let ln = LayerNorm::<f64>::new(4).unwrap();
    let x = Array3::<f64>::ones((2, 3, 4));
    let (_, st) = ln.forward_with_stats(&x).unwrap();
    let check = |r: Result<(), GradError>, expected: GradError| assert_eq!(r.unwrap_err(), expected);
    let dy_bad = Array3::<f64>::ones((2, 4, 4));
    check(
        layer_norm_backward(&ln, &x, &st, &dy_bad).map(|_| ()),
        GradError::ShapeMismatch {
            what: "dy",
            expected: vec![2, 3, 4],
            got: vec![2, 4, 4],
        },
    );
    let x5 = Array3::<f64>::ones((2, 3, 5));
    check(
        layer_norm_backward(&ln, &x5, &st, &x5).map(|_| ()),
        NormError::FeatureMismatch {
            shape: vec![2, 3, 5],
            got: 5,
            dim: 4,
        }
        .into(),
    );
    let mut st_bad = st.clone();
    st_bad.rstd = st.rstd.index_axis(Axis(0), 0).to_owned().insert_axis(Axis(0));
    check(
        layer_norm_backward(&ln, &x, &st_bad, &x).map(|_| ()),
        NormError::StatsShape {
            name: "rstd",
            got: vec![1, 3],
            expected: vec![2, 3],
        }
        .into(),
    );
    let mut dx_bad = Array3::<f64>::zeros((2, 3, 3));
    check(
        layer_norm_backward_into(&ln, &x, &st, &x, &mut dx_bad, &mut [0.0; 4], None),
        GradError::ShapeMismatch {
            what: "dx",
            expected: vec![2, 3, 4],
            got: vec![2, 3, 3],
        },
    );
    let mut dx = Array3::<f64>::zeros((2, 3, 4));
    check(
        layer_norm_backward_into(&ln, &x, &st, &x, &mut dx, &mut [0.0; 3], None),
        GradError::ShapeMismatch {
            what: "dgamma",
            expected: vec![4],
            got: vec![3],
        },
    );
    let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
    check(
        layer_norm_backward_slice(
            &ln,
            &xs,
            &xs,
            &[0.0],
            &[1.0],
            GradSlices {
                dx: &mut [0.0; 5],
                dgamma: &mut [0.0; 4],
                dbeta: None,
            },
        ),
        NormError::SliceLen { len: 5, dim: 4 }.into(),
    );
    check(
        layer_norm_backward_slice(
            &ln,
            &xs[..4],
            &xs[..4],
            &[0.0, 1.0],
            &[1.0],
            GradSlices {
                dx: &mut [0.0; 4],
                dgamma: &mut [0.0; 4],
                dbeta: None,
            },
        ),
        NormError::StatsShape {
            name: "mean",
            got: vec![2],
            expected: vec![1],
        }
        .into(),
    );
    // A cache from the other norm kind.
    let rms = Norm::Rms(RmsNorm::<f64>::new(4).unwrap());
    let lnl = Norm::Layer(ln.clone());
    let (_, cache) = lnl.forward(&x).unwrap();
    assert_eq!(
        rms.backward(&cache, &x).unwrap_err(),
        GradError::CacheMismatch {
            expected: "RmsNorm",
            got: "LayerNorm"
        }
    );
    let msg = GradError::ShapeMismatch {
        what: "dy",
        expected: vec![2, 3],
        got: vec![3, 2],
    }
    .to_string();
    assert!(msg.contains("[3, 2]") && msg.contains("[2, 3]"), "{msg}");
    let _ = Array1::<f64>::zeros(1);
}
