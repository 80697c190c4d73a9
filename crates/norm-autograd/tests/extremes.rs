//! The backward at the extremes of the element type, on every kernel path: rows whose
//! saved statistics or whose sums leave the normal range (eps = 0 rows of subnormals,
//! rows near ±MAX) go through the scaled rescue and match the f64 reference; a row with
//! a non-finite input poisons only its own dx (and, through its x̂ and dy, the parameter
//! gradients), never another row's dx.

use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Sweep, backward_slice_on};
use norm_autograd::GradSlices;
use norm_autograd::reference::{layer_norm_backward_reference, rms_norm_backward_reference};
use norm_core::{Float, LayerNorm, RmsNorm};

/// Deterministic values in `[-1, 1)` from a seed (splitmix64).
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut z = seed;
    (0..n)
        .map(|_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut v = z;
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v ^= v >> 31;
            2.0 * ((v >> 11) as f64 / (1u64 << 53) as f64) - 1.0
        })
        .collect()
}

/// `2^k` as an f64 (for `-1022 <= k <= 1023`).
fn pow2(k: i32) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// dx, dgamma, dbeta.
type Out<F> = (Vec<F>, Vec<F>, Vec<F>);

/// The backward of LayerNorm (`ln`) or RmsNorm on `path` with the given saved
/// statistics.
fn backward<F: Float>(path: ForcedPath, w: &[F], eps: F, x: &[F], dy: &[F], saved: Saved<'_, F>) -> Out<F> {
    let d = w.len();
    let (mut dx, mut dg, mut db) = (vec![F::zero(); x.len()], vec![F::zero(); d], vec![F::zero(); d]);
    let input = BackwardInput {
        weight: w,
        eps,
        x,
        dy,
        saved,
    };
    let grads = GradSlices {
        dx: &mut dx,
        dgamma: &mut dg,
        dbeta: Some(&mut db),
    };
    backward_slice_on(path, Sweep::Serial, input, grads).expect("shapes match");
    (dx, dg, db)
}

/// Every element of `got` is the f64 `want` rounded to `F` within `tol` of the
/// largest |want| of its row (`d` long); values beyond the range of `F` must be the
/// infinity of their sign.
fn assert_matches<F: Float>(what: &str, got: &[F], want: &[f64], d: usize, tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (r, (g, w)) in got.chunks(d).zip(want.chunks(d)).enumerate() {
        let scale = w
            .iter()
            .filter(|&&v| F::from_f64_round(v).is_finite())
            .fold(0.0f64, |m, v| m.max(v.abs()));
        for (j, (&a, &b)) in g.iter().zip(w).enumerate() {
            let a = a.to_f64_exact();
            if F::from_f64_round(b).is_infinite() {
                assert_eq!(
                    a,
                    b.signum() * f64::INFINITY,
                    "{what} row {r} [{j}]: {a} vs {b} (beyond the type)"
                );
            } else {
                assert!(
                    a.is_finite() && (a - b).abs() <= tol * scale,
                    "{what} row {r} [{j}]: {a} vs {b} (row scale {scale}, tol {tol})"
                );
            }
        }
    }
}

/// f32 LayerNorm with eps = 0 on rows of subnormals (integers times the smallest
/// subnormal): the forward is finite but saves rstd = +inf; the backward gives finite
/// dgamma/dbeta, and dx equal to the f64 reference rounded to f32 (±inf where the true
/// dx is beyond f32, since rstd ≈ 1e45).
#[test]
fn f32_subnormal_rows_with_eps_0() {
    let (rows, d) = (6, 21);
    let s = f32::from_bits(1);
    let u = values(rows * d, 3);
    let x: Vec<f32> = u.iter().map(|v| (v * 40.0).round() as f32 * s).collect();
    let dy: Vec<f32> = values(rows * d, 4).iter().map(|&v| v as f32).collect();
    let w: Vec<f32> = values(d, 5).iter().map(|v| 1.0 + 0.5 * *v as f32).collect();
    let ln = LayerNorm::from_weights(w.clone(), Some(vec![0.0; d]), 0.0f32).expect("valid");
    let (mut y, mut mean, mut rstd) = (vec![0.0f32; rows * d], vec![0.0f32; rows], vec![0.0f32; rows]);
    ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)
        .expect("shapes match");
    assert!(y.iter().all(|v| v.is_finite()), "the forward rescues these rows");
    assert!(
        rstd.iter().any(|r| r.is_infinite()),
        "the saved rstd overflows f32"
    );
    let f = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
    let (rdx, rdg, rdb) = layer_norm_backward_reference(&f(&x), &f(&dy), &f(&w), 0.0);
    let (sdx, sdg, sdb) = rms_norm_backward_reference(&f(&x), &f(&dy), &f(&w), 0.0);
    let rms = RmsNorm::from_weights(w.clone(), None, 0.0f32).expect("valid");
    let mut rrms = vec![0.0f32; rows];
    rms.forward_slice_with_stats(&x, &mut y, &mut rrms)
        .expect("shapes match");
    for path in ForcedPath::all() {
        let name = path.path().name();
        let saved = Saved::LayerNorm {
            mean: &mean,
            rstd: &rstd,
        };
        let (dx, dg, db) = backward(path, &w, 0.0, &x, &dy, saved);
        assert_matches(&format!("{name} LN dx"), &dx, &rdx, d, 1e-5);
        assert_matches(&format!("{name} LN dgamma"), &dg, &rdg, d, 1e-5);
        assert_matches(&format!("{name} LN dbeta"), &db, &rdb, d, 1e-6);
        let (dx, dg, db) = backward(path, &w, 0.0, &x, &dy, Saved::RmsNorm { rrms: &rrms });
        assert_matches(&format!("{name} RMS dx"), &dx, &sdx, d, 1e-5);
        assert_matches(&format!("{name} RMS dgamma"), &dg, &sdg, d, 1e-5);
        assert_matches(&format!("{name} RMS dbeta"), &db, &sdb, d, 1e-6);
    }
}

/// f32 rows near ±f32::MAX (LayerNorm: `x − mean` overflows f32) and at f32::MAX/2
/// (RmsNorm: `Σ g·x` overflows), mixed with ordinary rows, eps as usual: every dx is
/// finite and matches the f64 reference.
#[test]
fn f32_rows_near_max() {
    let (rows, d) = (9, 37);
    let u = values(rows * d, 7);
    let big = f64::from(f32::MAX);
    let x: Vec<f32> = u
        .iter()
        .enumerate()
        .map(|(i, v)| match (i / d) % 3 {
            0 => (v * big) as f32,
            1 => (v * big / 2.0 + big / 2.0) as f32,
            _ => (3.0 * v) as f32,
        })
        .collect();
    let dy: Vec<f32> = values(rows * d, 8).iter().map(|&v| 2.0 * v as f32).collect();
    let w: Vec<f32> = values(d, 9).iter().map(|v| 1.0 + 0.5 * *v as f32).collect();
    let eps = 1e-5f32;
    let ln = LayerNorm::from_weights(w.clone(), None, eps).expect("valid");
    let rms = RmsNorm::from_weights(w.clone(), None, eps).expect("valid");
    let (mut y, mut mean, mut rstd, mut rrms) = (
        vec![0.0f32; rows * d],
        vec![0.0f32; rows],
        vec![0.0f32; rows],
        vec![0.0f32; rows],
    );
    ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)
        .expect("shapes match");
    assert!(y.iter().all(|v| v.is_finite()));
    rms.forward_slice_with_stats(&x, &mut y, &mut rrms)
        .expect("shapes match");
    assert!(y.iter().all(|v| v.is_finite()));
    let f = |v: &[f32]| v.iter().map(|&a| f64::from(a)).collect::<Vec<f64>>();
    let e = f64::from(eps);
    let (rdx, rdg, rdb) = layer_norm_backward_reference(&f(&x), &f(&dy), &f(&w), e);
    let (sdx, sdg, sdb) = rms_norm_backward_reference(&f(&x), &f(&dy), &f(&w), e);
    for path in ForcedPath::all() {
        let name = path.path().name();
        let saved = Saved::LayerNorm {
            mean: &mean,
            rstd: &rstd,
        };
        let (dx, dg, db) = backward(path, &w, eps, &x, &dy, saved);
        assert_matches(&format!("{name} LN dx"), &dx, &rdx, d, 2e-5);
        assert_matches(&format!("{name} LN dgamma"), &dg, &rdg, d, 2e-5);
        assert_matches(&format!("{name} LN dbeta"), &db, &rdb, d, 1e-6);
        let (dx, dg, db) = backward(path, &w, eps, &x, &dy, Saved::RmsNorm { rrms: &rrms });
        assert_matches(&format!("{name} RMS dx"), &dx, &sdx, d, 2e-5);
        assert_matches(&format!("{name} RMS dgamma"), &dg, &sdg, d, 2e-5);
        assert_matches(&format!("{name} RMS dbeta"), &db, &sdb, d, 1e-6);
    }
}

/// f64 rows near ±f64::MAX and eps = 0 rows of f64 subnormals. The f64 reference
/// cannot hold these rows, so it runs on the rows scaled by `t = 2^k` into the middle of
/// the range: x̂ does not change and dx scales by `t` (`dx(x) = t·dx(t·x)` with eps = 0).
/// The statistics are computed here the same way (the kernels recompute such rows).
#[test]
fn f64_rows_near_max_and_subnormal() {
    let d = 23;
    let u = values(4 * d, 11);
    let dyv = values(4 * d, 12);
    let w: Vec<f64> = values(d, 13).iter().map(|v| 1.0 + 0.5 * v).collect();
    // (row scale as 2^k with the row's values in [-1, 1)·2^k, k of the reference).
    for (k, row) in [(1023, 0usize), (1020, 1), (-1060, 2), (-1070, 3)] {
        let t_down = |v: f64| {
            // v·2^(−k), exact: two steps keep every intermediate normal.
            let h = -k / 2;
            v * pow2(h) * pow2(-k - h)
        };
        let x: Vec<f64> = u[row * d..(row + 1) * d]
            .iter()
            .map(|v| {
                let h = k / 2;
                ((v * 4096.0).round() / 4096.0) * pow2(h) * pow2(k - h)
            })
            .collect();
        let dy = &dyv[row * d..(row + 1) * d];
        assert!(x.iter().all(|v| v.is_finite()));
        let xs: Vec<f64> = x.iter().map(|&v| t_down(v)).collect();
        let (rdx, rdg, rdb) = layer_norm_backward_reference(&xs, dy, &w, 0.0);
        let (sdx, sdg, sdb) = rms_norm_backward_reference(&xs, dy, &w, 0.0);
        // dx(x) = dx(xs)·2^(−k).
        let up = |v: &[f64]| -> Vec<f64> { v.iter().map(|&a| t_down(a)).collect() };
        let (rdx, sdx) = (up(&rdx), up(&sdx));
        // Saved statistics in the scaled domain, mapped back (may be 0, subnormal or
        // infinite in f64: exactly the rows the kernels must rescue).
        let m = xs.iter().sum::<f64>() / d as f64;
        let var = xs.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d as f64;
        let ms = xs.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let mean = [{
            let h = k / 2;
            m * pow2(h) * pow2(k - h)
        }];
        let rstd = [t_down(1.0 / var.sqrt())];
        let rrms = [t_down(1.0 / ms.sqrt())];
        for path in ForcedPath::all() {
            let name = format!("{} 2^{k}", path.path().name());
            let saved = Saved::LayerNorm {
                mean: &mean,
                rstd: &rstd,
            };
            let (dx, dg, db) = backward(path, &w, 0.0, &x, dy, saved);
            assert_matches(&format!("{name} LN dx"), &dx, &rdx, d, 1e-12);
            assert_matches(&format!("{name} LN dgamma"), &dg, &rdg, d, 1e-12);
            assert_matches(&format!("{name} LN dbeta"), &db, &rdb, d, 1e-15);
            let (dx, dg, db) = backward(path, &w, 0.0, &x, dy, Saved::RmsNorm { rrms: &rrms });
            assert_matches(&format!("{name} RMS dx"), &dx, &sdx, d, 1e-12);
            assert_matches(&format!("{name} RMS dgamma"), &dg, &sdg, d, 1e-12);
            assert_matches(&format!("{name} RMS dbeta"), &db, &sdb, d, 1e-15);
        }
    }
}

/// A row holding an infinity (or a NaN) gives a non-finite dx in that row only: the
/// other rows' dx are bit for bit what they are without it, in groups of any size.
#[test]
fn a_non_finite_row_poisons_only_its_own_dx() {
    let (rows, d) = (7, 40);
    let x0: Vec<f32> = values(rows * d, 21).iter().map(|&v| 3.0 * v as f32).collect();
    let dy: Vec<f32> = values(rows * d, 22).iter().map(|&v| v as f32).collect();
    let w: Vec<f32> = values(d, 23).iter().map(|v| 1.0 + 0.5 * *v as f32).collect();
    let ln = LayerNorm::from_weights(w.clone(), None, 1e-5f32).expect("valid");
    let stats = |x: &[f32]| {
        let (mut y, mut mean, mut rstd) = (vec![0.0f32; rows * d], vec![0.0f32; rows], vec![0.0f32; rows]);
        ln.forward_slice_with_stats(x, &mut y, &mut mean, &mut rstd)
            .expect("shapes match");
        (mean, rstd)
    };
    let (m0, r0) = stats(&x0);
    for bad in [f32::INFINITY, f32::NAN] {
        let mut x = x0.clone();
        x[2 * d + 5] = bad;
        let (m, r) = stats(&x);
        for path in ForcedPath::all() {
            let clean = backward(
                path,
                &w,
                1e-5,
                &x0,
                &dy,
                Saved::LayerNorm { mean: &m0, rstd: &r0 },
            );
            let (dx, _, _) = backward(path, &w, 1e-5, &x, &dy, Saved::LayerNorm { mean: &m, rstd: &r });
            for row in 0..rows {
                let (a, b) = (&dx[row * d..(row + 1) * d], &clean.0[row * d..(row + 1) * d]);
                if row == 2 {
                    assert!(
                        a.iter().all(|v| !v.is_finite()),
                        "{bad}: the row itself is poisoned"
                    );
                } else {
                    let bits = |v: &[f32]| v.iter().map(|a| a.to_bits()).collect::<Vec<u32>>();
                    assert_eq!(
                        bits(a),
                        bits(b),
                        "{} {bad}: row {row} untouched",
                        path.path().name()
                    );
                }
            }
        }
    }
}
