//! Numerical edge cases, each a table of cases through one `check`: f32 rows with a large
//! offset, rows near the overflow and underflow limits, non-finite rows, constant rows
//! with and without eps, zero-row batches, and batch independence (a row alone equals
//! its slice of the batch, bit for bit).

use ndarray::{Array2, ArrayD, IxDyn};
use norm_core::dispatch::ForcedPath;
use norm_core::{Float, LayerNorm, RmsNorm};

use crate::common::{
    KINDS, Kind, LAYOUTS, Laid, Norm, Rng, assert_close, assert_same, check_against_reference, flat,
    same_bits, tol_for,
};

// ---------------------------------------------------------------------------------------
// Offset rows in f32.

/// The naive kernel the numerics guard against: plain f32 mean (no shift), then the
/// centered variance. Used only to show that the offset test can tell the difference.
fn naive_f32_layer_norm(x: &[f32], d: usize, eps: f32) -> Vec<f32> {
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks(d) {
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
        let r = 1.0 / (var + eps).sqrt();
        y.extend(row.iter().map(|v| (v - mean) * r));
    }
    y
}

fn max_abs_err(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| (f64::from(a) - b).abs())
        .fold(0.0, f64::max)
}

/// f32 rows `loc + N(0, spread)` agree with f64 on the same f32 inputs within 1e-5
/// absolute, for both kinds, while the naive f32 mean is visibly off.
fn check_offset_rows(loc: f64, spread: f64, d: usize, seed: u64) {
    let rows = 8;
    let mut rng = Rng::new(seed);
    let x = rng.normals::<f32>(rows * d, loc, spread);
    for kind in KINDS {
        let norm = Norm::<f32>::plain(
            kind,
            d,
            match kind {
                Kind::Ln => 1e-5,
                Kind::Rms => 1e-6,
            },
        );
        let y = norm.forward_slice(&x);
        let (yr, _) = norm.reference(&x);
        let err = max_abs_err(&y, &yr);
        assert!(
            err <= 1e-5,
            "{kind:?} loc {loc} spread {spread} d {d}: max |err| {err}"
        );
        for path in ForcedPath::all() {
            let err = max_abs_err(&norm.forward_slice_on(path, &x).0, &yr);
            let p = path.path();
            assert!(
                err <= 1e-5,
                "{kind:?} on {p:?}, loc {loc} spread {spread} d {d}: max |err| {err}"
            );
        }
        if kind == Kind::Ln {
            let naive = max_abs_err(&naive_f32_layer_norm(&x, d, 1e-5), &yr);
            assert!(
                naive > 1e-4,
                "naive f32 mean unexpectedly exact ({naive}): the test is blind"
            );
        }
    }
}

#[test]
fn f32_offset_rows_match_f64() {
    for (loc, spread, d, seed) in [
        (1e4, 1.0, 64, 1),
        (1e4, 1.0, 768, 2),
        (1e4, 1.0, 4096, 3),
        (-1e4, 1.0, 1000, 4),
        (1e6, 1e-2, 64, 5),
        (1e6, 1e-2, 768, 6),
        (1e6, 1e-2, 4096, 7),
        (-1e6, 1e-2, 513, 8),
        // 1e6 + N(0, 1e-2) holds 1-3 distinct f32 values (spacing 0.0625 at 1e6): these
        // keep many distinct values at the same offset-to-spread ratios.
        (1e6, 1.0, 768, 12),
        (1e6, 1.0, 4096, 13),
        (1e5, 0.1, 768, 14),
        (1e5, 0.1, 4096, 15),
    ] {
        check_offset_rows(loc, spread, d, seed);
    }
}

/// LayerNorm takes the variance from its first pass, `(Σ u² − m·Σ u)/d` with `u = x −
/// shift` (the shift: the mean of the row's first eight values), only while `m·Σ u ≤ Σ
/// u²/2`, i.e. while the shift is within one standard deviation of the mean; beyond it a
/// second pass sums the centred squares. Rows whose first eight values sit 0.95σ from
/// the mean (accepted, at the edge: the most cancellation allowed), 1.05σ (refused), 30σ
/// and 1000σ (refused; accepted, the last would lose about all of f32's digits to
/// cancellation) agree with f64 within the offset rows' 1e-5, on every path.
#[test]
fn f32_one_pass_variance_edges_match_f64() {
    for (k, (head, d)) in [
        (0.95, 768),
        (1.05, 768),
        (30.0, 768),
        (1e3, 768),
        (0.95, 4096),
        (1e3, 4100),
    ]
    .into_iter()
    .enumerate()
    {
        let rows = 8;
        let mut rng = Rng::new(40 + k as u64);
        let mut x = rng.normals::<f32>(rows * d, 1e4, 1.0);
        let lead = rng.normals::<f32>(rows * 8, 1e4 + head, 1e-3);
        for (r, l) in x.chunks_exact_mut(d).zip(lead.chunks_exact(8)) {
            r[..8].copy_from_slice(l);
        }
        let norm = Norm::<f32>::plain(Kind::Ln, d, 1e-5);
        let (yr, _) = norm.reference(&x);
        for path in ForcedPath::all() {
            let err = max_abs_err(&norm.forward_slice_on(path, &x).0, &yr);
            let p = path.path();
            assert!(err <= 1e-5, "on {p:?}, head {head}σ, d {d}: max |err| {err}");
        }
    }
}

/// Long rows: the same requirement at d = 16384 and 65536. A plain accumulator lane sums
/// d/lanes terms in sequence, so its rounding error grows linearly with d (before the
/// kernels folded their accumulators into blocked totals, LayerNorm outputs here were off
/// by 2.7e-5 at d = 16384 and 6.5e-5 at d = 65536; now below 2e-6 on every path).
#[test]
fn f32_offset_long_rows_match_f64() {
    for (loc, spread, d, seed) in [
        (1e6, 1e-2, 16384, 9),
        (-1e6, 1e-2, 16400, 11), // a block-and-a-bit tail on every path
        (1e6, 1e-2, 65536, 10),
        (1e4, 1.0, 65536, 5),
        (1e6, 1.0, 65536, 16),
        (1e5, 0.1, 65536, 17),
    ] {
        check_offset_rows(loc, spread, d, seed);
    }
}

// ---------------------------------------------------------------------------------------
// Huge and tiny rows.

/// f32 rows `scale · (offset + N(0, 1))` against the f64 reference (exact over the whole
/// f32 range), both kinds, eps = 0 and the default, with and without bias.
fn check_extreme_f32(scale: f64, offset: f64, d: usize) {
    let mut rng = Rng::new(d as u64 ^ scale.to_bits());
    let x = rng.normals::<f32>(3 * d, offset * scale, scale);
    assert!(x.iter().all(|v| v.is_finite()), "test data must be finite");
    for kind in KINDS {
        for eps in [0.0, 1e-5] {
            for bias in [false, true] {
                let norm = Norm::<f32>::random(kind, d, eps, bias, &mut rng);
                let view = Laid::new(&[3, d], &x, crate::common::Layout::Standard);
                check_against_reference(&norm, &view.view(), tol_for::<f32>(d));
            }
        }
    }
}

#[test]
fn f32_huge_and_tiny_rows() {
    for (scale, offset, d) in [
        (1e30, 0.0, 64),   // squares overflow f32
        (1e30, 5.0, 100),  // overflow with an offset
        (1e19, 0.0, 1024), // squares fit, their sum overflows
        (1e37, 0.0, 33),   // differences x_i - x_0 overflow too
        (1e-30, 0.0, 64),  // squares underflow f32
        (1e-30, 5.0, 100), // underflow with an offset
        (1e-20, 0.0, 17),  // squares in the subnormal range
        (1e-40, 0.0, 64),  // subnormal inputs
    ] {
        check_extreme_f32(scale, offset, d);
    }
}

#[test]
fn f32_near_max_and_min() {
    // Alternating ±f32::MAX: mean 0, every difference from x_0 overflows.
    let d = 10;
    let x: Vec<f32> = (0..d)
        .map(|i| if i % 2 == 0 { f32::MAX } else { -f32::MAX })
        .collect();
    for kind in KINDS {
        let norm = Norm::<f32>::plain(kind, d, 0.0);
        check_against_reference(
            &norm,
            &Laid::new(&[1, d], &x, crate::common::Layout::Standard).view(),
            tol_for::<f32>(d),
        );
        let y = norm.forward_slice(&x);
        for (i, v) in y.iter().enumerate() {
            let want = if i % 2 == 0 { 1.0 } else { -1.0 };
            assert!((v - want).abs() < 1e-6, "{kind:?} ±MAX row: y[{i}] = {v}");
        }
    }
    // The smallest subnormals: every value is 0 or ±1 ulp.
    let x: Vec<f32> = (0..12)
        .map(|i| (i % 3) as f32 * f32::from_bits(1) - f32::from_bits(1))
        .collect();
    for kind in KINDS {
        let norm = Norm::<f32>::plain(kind, 12, 0.0);
        check_against_reference(
            &norm,
            &Laid::new(&[1, 12], &x, crate::common::Layout::Standard).view(),
            tol_for::<f32>(12),
        );
    }
}

/// One f64 row at an extreme magnitude, checked against the reference run on the same
/// row scaled by an exact power of two (`2^pow2`) into a range where the reference is
/// exact, with `truth_eps` (the eps in those scaled units; 0 where eps is negligible).
fn check_extreme_f64(scale: f64, offset: f64, eps: f64, pow2: i32, truth_eps: f64, tol: f64) {
    let d = 48;
    let mut rng = Rng::new(scale.to_bits() ^ eps.to_bits());
    let x = rng.normals::<f64>(2 * d, offset * scale, scale);
    // Two exact steps: 2^pow2 itself may not be representable.
    let half = 2f64.powi(pow2 / 2);
    let rest = 2f64.powi(pow2 - pow2 / 2);
    let xs: Vec<f64> = x.iter().map(|v| v * half * rest).collect();
    assert!(
        xs.iter()
            .all(|v| v.is_finite() && v.abs() > 1e-30 && v.abs() < 1e30)
    );
    for kind in KINDS {
        let norm = Norm::<f64>::random(kind, d, eps, true, &mut rng);
        let truth = Norm::<f64>::build(
            kind,
            norm.weight().to_vec(),
            norm.bias().map(<[f64]>::to_vec),
            truth_eps,
        );
        // LayerNorm is shift-invariant: shift the scaled rows by their first values
        // (exact for offset rows) so the reference's own mean is not the weak link.
        let xs: Vec<f64> = match kind {
            Kind::Ln => xs
                .chunks(d)
                .flat_map(|r| r.iter().map(|v| v - r[0]).collect::<Vec<_>>())
                .collect(),
            Kind::Rms => xs.clone(),
        };
        let (yr, _) = truth.reference(&xs);
        let y = norm.forward_slice(&x);
        assert_close(
            &format!("{kind:?} f64 scale {scale:e} eps {eps}"),
            &y,
            &yr,
            |_| 4.0,
            tol,
        );
    }
}

#[test]
fn f64_huge_and_tiny_rows() {
    let p = |e: i32| 2f64.powi(e);
    let tol = tol_for::<f64>(48);
    // Subnormal inputs: the rescue path centers them in scaled units, so the mean's
    // rounding to the subnormal grid (2^-1074, ~5e-14 of a spread of 1e-310) costs
    // nothing.
    let sub_tol = tol;
    for (scale, offset, eps, pow2, truth_eps, tol) in [
        (1e300, 0.0, 0.0, -1000, 0.0, tol),
        (1e300, 3.0, 1e-5, -1000, 0.0, tol), // eps/var ~ 1e-605: negligible
        (1e200, 0.0, 0.0, -660, 0.0, tol),
        (1e-300, 0.0, 0.0, 1000, 0.0, tol),
        (1e-300, 2.0, 0.0, 1000, 0.0, tol),
        (1e-160, 0.0, 1e-320, 532, 1e-320 * p(532) * p(532), tol), // var and eps both subnormal
        (1e192, 1e8, 0.0, -660, 0.0, tol), // offset 1e8 x spread: the rescue keeps the shift
        (1e-160, 1e8, 1e-321, 532, 1e-321 * p(532) * p(532), tol),
        (1e-310, 0.0, 0.0, 1060, 0.0, sub_tol), // subnormal inputs
    ] {
        check_extreme_f64(scale, offset, eps, pow2, truth_eps, tol);
    }
}

/// Tiny f64 rows with eps ≫ var: the reference is exact there (var underflows to 0 but
/// is negligible), so compare directly.
#[test]
fn f64_tiny_rows_with_default_eps() {
    let mut rng = Rng::new(11);
    for kind in KINDS {
        let norm = Norm::<f64>::random(kind, 40, 1e-5, true, &mut rng);
        let x = rng.normals::<f64>(80, 0.0, 1e-300);
        check_against_reference(
            &norm,
            &Laid::new(&[2, 40], &x, crate::common::Layout::Standard).view(),
            tol_for::<f64>(40),
        );
    }
}

// ---------------------------------------------------------------------------------------
// Non-finite rows.

/// Rows `bad` of a batch get non-finite values; they must come out non-finite in every
/// element, and every other row must be bit-identical to the same rows normalized
/// without the bad ones (and match the reference).
fn check_poison<F: Float>(kind: Kind, d: usize, bad: &[(usize, usize, F)]) {
    let rows = 6;
    let mut rng = Rng::new(d as u64);
    let mut x = rng.normals::<F>(rows * d, 1.0, 3.0);
    for &(r, c, v) in bad {
        x[r * d + c] = v;
    }
    let norm = Norm::<F>::random(kind, d, F::from_f64_round(1e-5), true, &mut rng);
    let bad_rows: Vec<usize> = bad.iter().map(|b| b.0).collect();
    let good_rows: Vec<usize> = (0..rows).filter(|r| !bad_rows.contains(r)).collect();
    let good_x: Vec<F> = good_rows
        .iter()
        .flat_map(|&r| x[r * d..(r + 1) * d].to_vec())
        .collect();
    let good_y = norm.forward_slice(&good_x);

    for layout in LAYOUTS {
        let laid = Laid::new(&[rows, d], &x, layout);
        let (y, _) = norm.forward_with_stats(&laid.view());
        let y = flat(&y.view());
        assert_same(
            &format!("{kind:?} {layout:?}: ndarray vs slice"),
            &y,
            &norm.forward_slice(&x),
        );
        for &r in &bad_rows {
            let row = &y[r * d..(r + 1) * d];
            assert!(
                row.iter().all(|v| !v.is_finite()),
                "{kind:?} {layout:?}: poisoned row {r} has a finite output"
            );
        }
        for (k, &r) in good_rows.iter().enumerate() {
            assert_same(
                &format!("{kind:?} {layout:?}: row {r} next to poisoned rows"),
                &y[r * d..(r + 1) * d],
                &good_y[k * d..(k + 1) * d],
            );
        }
    }
    check_against_reference(
        &norm,
        &Laid::new(&[good_rows.len(), d], &good_x, LAYOUTS[0]).view(),
        tol_for::<F>(d),
    );
}

#[test]
fn non_finite_rows_poison_only_themselves() {
    for kind in KINDS {
        for d in [1, 7, 64] {
            check_poison::<f32>(kind, d, &[(1, 0, f32::NAN)]);
            check_poison::<f32>(
                kind,
                d,
                &[(0, d - 1, f32::INFINITY), (4, d / 2, f32::NEG_INFINITY)],
            );
            check_poison::<f32>(kind, d, &[(2, 0, f32::INFINITY), (2, d - 1, f32::NAN)]);
            check_poison::<f64>(kind, d, &[(5, d / 3, f64::NAN), (3, 0, f64::INFINITY)]);
            check_poison::<f64>(kind, d, &[(0, d - 1, f64::NEG_INFINITY)]);
        }
        // +inf and -inf in the same row (their sum is NaN, not a cancelling 0).
        check_poison::<f32>(kind, 8, &[(1, 0, f32::INFINITY), (1, 5, f32::NEG_INFINITY)]);
    }
}

// ---------------------------------------------------------------------------------------
// Constant rows.

/// A row of `d` copies of `c`. LayerNorm: beta (or 0) with eps > 0, NaN with eps = 0;
/// mean = c exactly and rstd = 1/sqrt(eps). RmsNorm: the same only for c = 0;
/// otherwise the reference decides.
fn check_constant<F: Float>(c: F, d: usize, eps: F) {
    let x = vec![c; 2 * d];
    let mut rng = Rng::new(d as u64 + 99);
    for kind in KINDS {
        for bias in [false, true] {
            let norm = Norm::<F>::random(kind, d, eps, bias, &mut rng);
            let (y, stats) = norm.forward_slice_with_stats(&x);
            let degenerate = kind == Kind::Ln || c == F::zero();
            let what = format!("{kind:?} constant {c} d {d} eps {eps} bias {bias}");
            if !degenerate {
                // RMS of a constant row c: y = sign(c)·w/sqrt(1 + eps/c²) + b, written so
                // that nothing overflows (the reference squares c, which f64 cannot
                // for |c| > 1e154).
                let (cf, e) = (c.to_f64_exact(), eps.to_f64_exact());
                let t = (e / cf.abs()) / cf.abs();
                let unit = if t.is_finite() {
                    cf.signum() / (1.0 + t).sqrt()
                } else {
                    cf / e.sqrt()
                };
                let want: Vec<f64> = (0..2 * d)
                    .map(|i| {
                        let b = norm.bias().map_or(0.0, |b| b[i % d].to_f64_exact());
                        unit * norm.weight()[i % d].to_f64_exact() + b
                    })
                    .collect();
                assert_close(&what, &y, &want, |_| 4.0, tol_for::<F>(d));
                continue;
            }
            let rstd = stats.last().expect("a reciprocal statistic");
            if eps == F::zero() {
                assert!(y.iter().all(|v| v.is_nan()), "{what}: want NaN (0/0), got {y:?}");
                assert!(
                    rstd.iter().all(|r| r.is_infinite()),
                    "{what}: 1/sqrt(0) should be inf"
                );
            } else {
                for (i, &v) in y.iter().enumerate() {
                    let want = norm.bias().map_or(F::zero(), |b| b[i % d]);
                    assert!(v == want, "{what}: y[{i}] = {v}, want beta {want}");
                }
                let want = 1.0 / eps.to_f64_exact().sqrt();
                for &r in rstd {
                    let r = r.to_f64_exact();
                    assert!(
                        (r - want).abs() <= 4.0 * F::epsilon().to_f64_exact() * want,
                        "{what}: rstd {r} vs {want}"
                    );
                }
            }
            if kind == Kind::Ln {
                assert!(
                    stats[0].iter().all(|&m| m == c),
                    "{what}: mean {:?} != {c}",
                    stats[0]
                );
            }
        }
    }
}

#[test]
fn constant_rows() {
    for d in [1, 7, 64] {
        for eps in [0.0, 1e-5, 1.0] {
            for c in [0.0f32, 1.0, -3.5, 1e6, 1e30, -1e-30, f32::MAX, f32::from_bits(1)] {
                check_constant::<f32>(c, d, eps);
            }
            for c in [0.0f64, 2.5, -1e300, 1e-300, f64::MAX, f64::from_bits(1)] {
                check_constant::<f64>(c, d, f64::from(eps));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Zero rows.

/// Batches with zero rows are not errors: every entry point returns an empty result of
/// the right shape.
fn check_empty(shape: &[usize]) {
    let d = *shape.last().expect("rank >= 1");
    let x = ArrayD::<f32>::zeros(IxDyn(shape));
    for kind in KINDS {
        let norm = Norm::<f32>::plain(kind, d, 1e-5);
        assert_eq!(norm.forward(&x.view()).shape(), shape);
        let (y, stats) = norm.forward_with_stats(&x.view());
        assert_eq!(y.shape(), shape);
        for s in &stats {
            assert_eq!(s.shape(), &shape[..shape.len() - 1]);
            assert_eq!(s.len(), 0);
        }
        for layout in crate::common::OUT_LAYOUTS {
            assert_eq!(norm.forward_into(&x.view(), layout).len(), 0);
        }
        assert!(norm.forward_slice(&[]).is_empty());
        let (y, stats) = norm.forward_slice_with_stats(&[]);
        assert!(y.is_empty() && stats.iter().all(Vec::is_empty));
    }
}

#[test]
fn zero_row_batches_are_empty_not_errors() {
    for shape in [&[0, 16][..], &[3, 0, 16], &[0, 0, 1], &[2, 0, 3, 5], &[0, 768]] {
        check_empty(shape);
    }
}

// ---------------------------------------------------------------------------------------
// Batch independence.

/// Rows of very different magnitudes in one batch: each row's output is bit-identical to
/// that row normalized alone, so nothing depends on the batch (or on how it is split).
#[test]
fn a_row_alone_equals_its_slice_of_the_batch() {
    // 24 rows run serially; 600 x 160 f32 (384 KB) is large enough to be split
    // across threads by the default build.
    for (rows, d) in [(24, 96), (600, 160)] {
        check_row_alone(rows, d);
    }
}

fn check_row_alone(rows: usize, d: usize) {
    let mut rng = Rng::new(5);
    let mut x = Array2::<f32>::zeros((rows, d));
    for (r, mut row) in x.rows_mut().into_iter().enumerate() {
        let scale = 10f64.powi((r as i32 % 12) * 6 - 36);
        let vals = rng.normals::<f32>(d, if r % 2 == 0 { 0.0 } else { 1e3 * scale }, scale);
        row.assign(&ndarray::ArrayView1::from(&vals[..]));
    }
    let ln = LayerNorm::<f32>::new(d).expect("d > 0");
    let rms = RmsNorm::<f32>::new(d).expect("d > 0");
    let (yl, sl) = ln.forward_with_stats(&x).expect("batch");
    let (yr, sr) = rms.forward_with_stats(&x).expect("batch");
    for r in 0..x.nrows() {
        let one = x.slice(ndarray::s![r..r + 1, ..]);
        let (a, s) = ln.forward_with_stats(&one).expect("row");
        assert!(
            a.iter().zip(yl.row(r)).all(|(&p, &q)| same_bits(p, q)),
            "LN row {r}"
        );
        assert!(same_bits(s.mean[0], sl.mean[r]) && same_bits(s.rstd[0], sl.rstd[r]));
        let (b, s) = rms.forward_with_stats(&one).expect("row");
        assert!(
            b.iter().zip(yr.row(r)).all(|(&p, &q)| same_bits(p, q)),
            "RMS row {r}"
        );
        assert!(same_bits(s.rrms[0], sr.rrms[r]));
    }
}

/// Batches big enough to take the threaded path, in every layout: the full check
/// (entry points agree bit for bit, match the reference) at a size the small
/// random cases do not reach.
#[test]
fn large_batches_every_layout() {
    let shape = [3, 40, 700]; // 84 000 f32 = 336 KB
    let n: usize = shape.iter().product();
    let mut rng = Rng::new(21);
    let x = rng.normals::<f32>(n, 2.0, 3.0);
    for kind in KINDS {
        let norm = Norm::<f32>::random(kind, 700, 1e-5, true, &mut rng);
        for layout in LAYOUTS {
            check_against_reference(&norm, &Laid::new(&shape, &x, layout).view(), tol_for::<f32>(700));
        }
    }
}

/// eps near `F::MAX`: `var + eps` overflows F although both are finite, which must not
/// turn into `rstd = 0` (a silently zero output). Rows whose sum of squares is finite
/// (fast path) and rows where it overflows (rescue path).
#[test]
fn huge_eps_with_large_variance() {
    for (mag, eps) in [
        (1e18f32, f32::MAX),
        (1e18, 3e38),
        (1.5e19, 3e38),
        (1.5e19, f32::MAX),
    ] {
        let x: Vec<f32> = (0..8).map(|i| if i % 2 == 0 { mag } else { -mag }).collect();
        for kind in KINDS {
            let norm = Norm::<f32>::plain(kind, 8, eps);
            check_against_reference(
                &norm,
                &Laid::new(&[1, 8], &x, LAYOUTS[0]).view(),
                tol_for::<f32>(8),
            );
        }
    }
    // f64: y = m / sqrt(m² + eps) for the row ±m, computed without overflow.
    for (mag, eps) in [(1e150f64, f64::MAX), (1e154, 1.7e308)] {
        let x: Vec<f64> = (0..8).map(|i| if i % 2 == 0 { mag } else { -mag }).collect();
        let want = 1.0 / (1.0 + (eps / mag) / mag).sqrt();
        let expect: Vec<f64> = (0..8).map(|i| if i % 2 == 0 { want } else { -want }).collect();
        for kind in KINDS {
            let y = Norm::<f64>::plain(kind, 8, eps).forward_slice(&x);
            assert_close(
                &format!("{kind:?} f64 ±{mag:e} eps {eps:e}"),
                &y,
                &expect,
                |_| 1.0,
                tol_for::<f64>(8),
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Finite rows at every magnitude (issue 13, item 3).

/// `norm(z)` in f64 for a row `z` of order 1, with `eps` in the row's units (possibly 0
/// or +inf): the truth for `x = 2^k · z`, since `norm(2^k·z; eps) = norm(z; eps/4^k)`.
fn scaled_truth(kind: Kind, z: &[f64], eps: f64) -> Vec<f64> {
    let d = z.len() as f64;
    let w: Vec<f64> = match kind {
        Kind::Ln => z.iter().map(|v| v - z[0]).collect(),
        Kind::Rms => z.to_vec(),
    };
    let m = match kind {
        Kind::Ln => w.iter().sum::<f64>() / d,
        Kind::Rms => 0.0,
    };
    let var = w.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d;
    w.iter().map(|v| (v - m) / (var + eps).sqrt()).collect()
}

/// Rows `2^k · (offset + N(0, 1))` for every `k` (step `step`) that keeps them finite,
/// both kinds, eps 1e-5 and a tiny eps: every output finite and within `tol_for` of the
/// scaled truth (relative to the output's scale, |γ| + |β| ≤ 4 here).
fn check_every_magnitude<F: Float>(ks: std::ops::RangeInclusive<i32>, step: usize, tiny_eps: f64) {
    let mut rng = Rng::new(13);
    for k in ks.step_by(step) {
        // Two exact steps: 2f64.powi(k) itself is 0 below 2^-1022 (it inverts 2^-k).
        let p2 = 2f64.powi(k / 2) * 2f64.powi(k - k / 2);
        for (d, offset) in [(3, 0.0), (17, 3.0), (100, 0.0), (100, -3.0)] {
            let z0 = rng.normals::<f64>(d, offset, 1.0);
            let x: Vec<F> = z0.iter().map(|v| F::from_f64_round(v * p2)).collect();
            if x.iter().any(|v| !v.is_finite()) {
                continue;
            }
            // The row actually stored, in units of 2^k (exact: a power of two).
            let z: Vec<f64> = x.iter().map(|v| v.to_f64_exact() / p2).collect();
            for kind in KINDS {
                for eps in [1e-5, tiny_eps] {
                    let norm = Norm::<F>::random(kind, d, F::from_f64_round(eps), true, &mut rng);
                    let y = norm.forward_slice(&x);
                    let what = format!("{kind:?} 2^{k} offset {offset} d {d} eps {eps:e}");
                    assert!(y.iter().all(|v| v.is_finite()), "{what}: {y:?}");
                    let e = norm.eps().to_f64_exact() / p2 / p2;
                    let truth: Vec<f64> = scaled_truth(kind, &z, e)
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            v * norm.weight()[i].to_f64_exact()
                                + norm.bias().map_or(0.0, |b| b[i].to_f64_exact())
                        })
                        .collect();
                    assert_close(&what, &y, &truth, |_| 4.0, tol_for::<F>(d));
                }
            }
        }
    }
}

/// Finite rows with eps > 0 give finite outputs within the documented error at every
/// magnitude the type holds, subnormal to near `MAX` (f64 rows near `MAX` used to give
/// NaN: `x − μ` overflowed in the rescue path before it was scaled).
#[test]
fn finite_rows_give_finite_outputs_at_every_magnitude() {
    check_every_magnitude::<f32>(-149..=125, 1, 1e-38);
    check_every_magnitude::<f64>(-1074..=1021, 3, 1e-300);
}

/// The f64 row of issue 13 whose deviations from the mean overflow although the row and
/// its spread do not: ≈ [−0.513, −0.885, 1.398], not NaN.
#[test]
fn f64_row_whose_deviations_overflow() {
    let x = [-1.1e308, -1.66e308, 1.78e308];
    // The truth, in units of 2^1023.
    let z: Vec<f64> = x.iter().map(|v| v / 2f64.powi(1023)).collect();
    let truth = scaled_truth(Kind::Ln, &z, 0.0);
    for eps in [1e-5, 0.0] {
        let y = LayerNorm::<f64>::new(3)
            .unwrap()
            .with_eps(eps)
            .unwrap()
            .forward(&ndarray::arr2(&[x]))
            .unwrap();
        let y = y.as_slice().unwrap();
        assert_close(&format!("eps {eps}"), y, &truth, |_| 1.0, tol_for::<f64>(3));
        assert!(
            (y[0] + 0.513).abs() < 1e-3 && (y[1] + 0.885).abs() < 1e-3 && (y[2] - 1.398).abs() < 1e-3,
            "{y:?}"
        );
    }
}

/// A row of the smallest subnormals with eps = 0: its mean (2.5 units of 2⁻¹⁰⁷⁴) is not on
/// the subnormal grid, and rounding it to the grid used to skew the outputs to
/// [−1.633, −0.816, 0, 0.816]; expected [−1.342, −0.447, 0.447, 1.342].
#[test]
fn f64_subnormal_row_mean_off_the_grid() {
    let s = f64::from_bits(1);
    let x = [1.0 * s, 2.0 * s, 3.0 * s, 4.0 * s];
    let want = [
        -3.0 / 5f64.sqrt(),
        -1.0 / 5f64.sqrt(),
        1.0 / 5f64.sqrt(),
        3.0 / 5f64.sqrt(),
    ];
    let ln = LayerNorm::<f64>::new(4).unwrap().with_eps(0.0).unwrap();
    for path in ForcedPath::all() {
        let (mut y, mut m, mut r) = ([0.0; 4], [0.0], [0.0]);
        path.layer_norm_slice(&ln, &x, &mut y, &mut m, &mut r).unwrap();
        assert_close(
            &format!("{:?}", path.path()),
            &y,
            &want,
            |_| 1.0,
            tol_for::<f64>(4),
        );
        // The saved mean is on the grid (2 or 3 units); the outputs do not use it.
        assert!(m[0] == 2.0 * s || m[0] == 3.0 * s, "{}", m[0]);
        assert!(r[0].is_infinite());
    }
}
