//! Every kernel path this CPU supports (portable, AVX2+FMA, AVX-512F) against the f64
//! reference twins; thread-count independence (1, 2, 3 rayon threads, bit for bit); and
//! the fused residual add + norm against the unfused composition, on every path; and
//! non-temporal (streaming) output stores against plain ones, bit for bit.

use ndarray::{Array2, Array3, Axis};
use norm_core::dispatch::ForcedPath;
use norm_core::reference::{layer_norm_reference, rms_norm_reference};
use norm_core::simd::Stores;
use norm_core::{Float, KernelPath, LayerNorm, NormError, RmsNorm};

/// splitmix64: deterministic test data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Approximately N(0, 1) (sum of 4 uniforms, rescaled): enough spread for these tests.
    fn normal(&mut self) -> f64 {
        ((self.next() + self.next() + self.next() + self.next()) - 2.0) * 3f64.sqrt()
    }
    fn vec<F: Float>(&mut self, n: usize, loc: f64, scale: f64) -> Vec<F> {
        (0..n)
            .map(|_| F::from_f64_round(loc + scale * self.normal()))
            .collect()
    }
}

/// Row lengths around every vector width and unroll boundary (4 accumulators × 16 lanes).
/// Row lengths: tails of every vector width, and rows that cross the kernels' accumulator
/// blocks (128-512 elements) and groups of blocks (2048-8192) with a partial block left.
const DIMS: [usize; 15] = [1, 3, 7, 8, 15, 16, 17, 31, 63, 64, 65, 100, 768, 1000, 8257];

/// `(loc, scale)` of the test rows: ordinary, offset, large offset, huge, tiny.
const MAGNITUDES: [(f64, f64); 5] = [(0.0, 1.0), (1e4, 1.0), (1e6, 1e-2), (0.0, 1e30), (0.0, 1e-30)];

fn max_err(fast: &[impl Float], reference: &[f64], rel: bool) -> f64 {
    fast.iter()
        .zip(reference)
        .map(|(a, r)| {
            let e = (a.to_f64_exact() - r).abs();
            if rel {
                e / r.abs().max(f64::MIN_POSITIVE)
            } else {
                e
            }
        })
        .fold(0.0, f64::max)
}

/// Output tolerance: absolute on outputs of order 1 (issue 2 asks 1e-5 for offset f32 rows).
/// For f64 rows with a large offset the f64 reference itself rounds its mean, by about
/// `eps · √d · loc/scale` in output units, which the tolerance allows.
fn tol<F: Float>(loc: f64, scale: f64, d: usize) -> f64 {
    if std::mem::size_of::<F>() == 4 {
        2e-5
    } else {
        1e-11 + 1e-15 * (d as f64).sqrt() * loc.abs() / scale
    }
}

fn weights<F: Float>(rng: &mut Rng, d: usize, bias: bool) -> (Vec<F>, Option<Vec<F>>) {
    (rng.vec(d, 1.0, 0.5), bias.then(|| rng.vec(d, 0.0, 0.5)))
}

fn check_paths<F: Float>(eps: F) {
    let paths = ForcedPath::all();
    assert!(paths.iter().any(|p| p.path() == KernelPath::Portable));
    assert!(paths.iter().any(|p| p.path() == KernelPath::detected()));
    let mut rng = Rng(7);
    let rows = 3;
    for &d in &DIMS {
        for &(loc, scale) in &MAGNITUDES {
            for bias in [false, true] {
                let x: Vec<F> = rng.vec(rows * d, loc, scale);
                let (w, b) = weights::<F>(&mut rng, d, bias);
                let ln = LayerNorm::from_weights(w.clone(), b.clone(), eps).unwrap();
                let rms = RmsNorm::from_weights(w.clone(), b.clone(), eps).unwrap();
                let (ly, lm, lr) = layer_norm_reference(&x, &w, b.as_deref(), eps).unwrap();
                let (ry, rr) = rms_norm_reference(&x, &w, b.as_deref(), eps).unwrap();
                for &p in &paths {
                    let what = format!("{:?} d={d} loc={loc} scale={scale} bias={bias}", p.path());
                    let (mut y, mut mean, mut rstd) = (
                        vec![F::zero(); x.len()],
                        vec![F::zero(); rows],
                        vec![F::zero(); rows],
                    );
                    p.layer_norm_slice(&ln, &x, &mut y, &mut mean, &mut rstd).unwrap();
                    let e = max_err(&y, &ly, false);
                    assert!(e <= tol::<F>(loc, scale, d), "LN y {what}: err {e}");
                    // The mean is exact up to its own rounding to F, plus a little of the spread.
                    let ulp = F::epsilon().to_f64_exact();
                    let em = mean
                        .iter()
                        .zip(&lm)
                        .map(|(a, r)| (a.to_f64_exact() - r).abs() - r.abs() * ulp)
                        .fold(0.0, f64::max);
                    assert!(em <= 1e-4 * scale, "LN mean {what}: err {em}");
                    let er = max_err(&rstd, &lr, true);
                    assert!(
                        er <= 100.0 * tol::<F>(loc, scale, d),
                        "LN rstd {what}: rel err {er}"
                    );

                    let (mut y, mut rrms) = (vec![F::zero(); x.len()], vec![F::zero(); rows]);
                    p.rms_norm_slice(&rms, &x, &mut y, &mut rrms).unwrap();
                    let e = max_err(&y, &ry, false);
                    assert!(e <= tol::<F>(loc, scale, d), "RMS y {what}: err {e}");
                    let er = max_err(&rrms, &rr, true);
                    assert!(
                        er <= 10.0 * tol::<F>(loc, scale, d),
                        "RMS rrms {what}: rel err {er}"
                    );
                }
            }
        }
    }
}

#[test]
fn every_path_matches_reference_f32() {
    check_paths::<f32>(1e-5);
    check_paths::<f32>(0.0);
}

#[test]
fn every_path_matches_reference_f64() {
    check_paths::<f64>(1e-5);
    check_paths::<f64>(0.0);
}

#[test]
fn default_api_runs_the_detected_path() {
    let detected = ForcedPath::new(KernelPath::detected()).unwrap();
    let mut rng = Rng(11);
    let d = 771;
    let x: Vec<f32> = rng.vec(5 * d, 3.0, 2.0);
    let (w, b) = weights::<f32>(&mut rng, d, true);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), 1e-5).unwrap();
    let rms = RmsNorm::from_weights(w, b, 1e-6).unwrap();
    let (mut a, mut c) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    let (mut m, mut r) = ([0.0; 5], [0.0; 5]);
    ln.forward_slice(&x, &mut a).unwrap();
    detected
        .layer_norm_slice(&ln, &x, &mut c, &mut m, &mut r)
        .unwrap();
    assert_eq!(a, c);
    rms.forward_slice(&x, &mut a).unwrap();
    detected.rms_norm_slice(&rms, &x, &mut c, &mut r).unwrap();
    assert_eq!(a, c);
}

#[test]
fn non_finite_rows_stay_in_their_row_on_every_path() {
    let d = 70;
    let mut rng = Rng(3);
    for p in ForcedPath::all() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x: Vec<f32> = rng.vec(3 * d, 0.0, 1.0);
            x[d + 37] = bad;
            let ln = LayerNorm::<f32>::new(d).unwrap();
            let rms = RmsNorm::<f32>::new(d).unwrap();
            let (mut y, mut m, mut r) = (vec![0.0; 3 * d], [0.0; 3], [0.0; 3]);
            p.layer_norm_slice(&ln, &x, &mut y, &mut m, &mut r).unwrap();
            assert!(y[d..2 * d].iter().all(|v| v.is_nan()), "{:?} {bad}", p.path());
            assert!(y[..d].iter().chain(&y[2 * d..]).all(|v| v.is_finite()));
            p.rms_norm_slice(&rms, &x, &mut y, &mut r).unwrap();
            assert!(y[d..2 * d].iter().all(|v| v.is_nan()), "{:?} {bad}", p.path());
            assert!(y[..d].iter().chain(&y[2 * d..]).all(|v| v.is_finite()));
        }
    }
}

/// Runs `f` on a rayon pool of `n` threads.
fn with_threads<R: Send>(n: usize, f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

/// Everything a forward call produces, flattened, for bitwise comparison.
fn run_all(x: &Array3<f32>, res: &Array3<f32>) -> Vec<Vec<f32>> {
    let d = x.len_of(Axis(2));
    let mut rng = Rng(5);
    let (w, b) = weights::<f32>(&mut rng, d, true);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), 1e-5).unwrap();
    let rms = RmsNorm::from_weights(w, None, 1e-6).unwrap();
    let (y, st) = ln.forward_with_stats(x).unwrap();
    let (yr, str_) = rms.forward_with_stats(x).unwrap();
    let xs = x.as_slice().unwrap();
    let mut ys = vec![0.0; xs.len()];
    ln.forward_slice(xs, &mut ys).unwrap();
    let (h, yf) = rms.add_forward(x, res).unwrap();
    let mut stream = res.clone();
    let mut yi = Array3::zeros(x.raw_dim());
    ln.add_forward_inplace(x, &mut stream, &mut yi).unwrap();
    let t = ln.forward(&x.view().permuted_axes([1, 0, 2])).unwrap();
    // Lanes along a strided axis (every lane gathered through scratch rows), large
    // enough to be split across the pool.
    let cols = x.view().permuted_axes([0, 2, 1]);
    let ln_cols = LayerNorm::<f32>::new(cols.len_of(Axis(2))).unwrap();
    let (tc, tst) = ln_cols.forward_with_stats(&cols).unwrap();
    [y, yr, h, yf, stream, yi, tc]
        .iter()
        .map(|a| a.iter().copied().collect())
        .chain([
            st.mean.iter().copied().collect(),
            st.rstd.iter().copied().collect(),
        ])
        .chain([
            str_.rrms.iter().copied().collect(),
            ys,
            t.iter().copied().collect(),
            tst.mean.iter().copied().collect(),
            tst.rstd.iter().copied().collect(),
        ])
        .collect()
}

/// Lanes along a strided axis, split across the pool, give exactly what the same
/// values give in a contiguous array (each lane runs the same row kernel).
#[test]
fn strided_lanes_on_the_pool_match_contiguous() {
    let mut rng = Rng(8);
    let x = Array3::from_shape_vec((2, 300, 700), rng.vec(2 * 300 * 700, 1.0, 3.0)).unwrap();
    let cols = x.view().permuted_axes([0, 2, 1]); // 2 × 700 lanes of 300, stride 700
    let dense = cols.as_standard_layout().into_owned();
    let ln = LayerNorm::<f32>::new(300).unwrap();
    let rms = RmsNorm::<f32>::new(300).unwrap();
    let (a, b) = with_threads(3, || {
        let (y, st) = ln.forward_with_stats(&cols).unwrap();
        let (z, sr) = rms.forward_with_stats(&dense).unwrap();
        let (yd, std_) = ln.forward_with_stats(&dense).unwrap();
        let zs = rms.forward(&cols).unwrap();
        ((y, st.mean, st.rstd, zs), (yd, std_.mean, std_.rstd, z, sr))
    });
    assert_eq!(a.0, b.0, "LayerNorm y");
    assert_eq!((a.1, a.2), (b.1, b.2), "LayerNorm stats");
    assert_eq!(a.3, b.3, "RmsNorm y");
}

#[test]
fn results_do_not_depend_on_thread_count() {
    let mut rng = Rng(21);
    // 2 × 157 rows of 1024 f32: 1.3 MB, well above the parallel threshold, and a row
    // count that is not a multiple of the block size.
    let x = Array3::from_shape_vec((2, 157, 1024), rng.vec(2 * 157 * 1024, 1.0, 3.0)).unwrap();
    let res = Array3::from_shape_vec((2, 157, 1024), rng.vec(2 * 157 * 1024, 0.0, 1.0)).unwrap();
    let one = with_threads(1, || run_all(&x, &res));
    for n in [2, 3] {
        let many = with_threads(n, || run_all(&x, &res));
        for (i, (a, b)) in one.iter().zip(&many).enumerate() {
            let same = a.len() == b.len() && a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "output {i} differs between 1 and {n} threads");
        }
    }
}

/// Fused vs `h = x + r; y = norm(h)` on one path, both kinds, both fused forms.
fn check_fused<F: Float>(p: ForcedPath, d: usize, rows: usize, bias: bool, rng: &mut Rng) {
    let x: Vec<F> = rng.vec(rows * d, 0.5, 2.0);
    let r: Vec<F> = rng.vec(rows * d, -1.0, 1.0);
    let (w, b) = weights::<F>(rng, d, bias);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), F::from_f64_round(1e-5)).unwrap();
    let rms = RmsNorm::from_weights(w, b, F::from_f64_round(1e-6)).unwrap();
    let h: Vec<F> = x.iter().zip(&r).map(|(&a, &b)| a + b).collect();
    let (mut m, mut s) = (vec![F::zero(); rows], vec![F::zero(); rows]);
    let mut y_ln = vec![F::zero(); h.len()];
    p.layer_norm_slice(&ln, &h, &mut y_ln, &mut m, &mut s).unwrap();
    let mut y_rms = vec![F::zero(); h.len()];
    p.rms_norm_slice(&rms, &h, &mut y_rms, &mut s).unwrap();
    let what = format!("{:?} d={d} rows={rows} bias={bias}", p.path());

    let (mut rr, mut hh, mut y) = (r.clone(), vec![F::zero(); h.len()], vec![F::zero(); h.len()]);
    p.layer_norm_add_slice(&ln, &x, &mut rr, Some(&mut hh), &mut y)
        .unwrap();
    assert!(hh == h && y == y_ln && rr == r, "LN fused {what}");
    p.layer_norm_add_slice(&ln, &x, &mut rr, None, &mut y).unwrap();
    assert!(rr == h && y == y_ln, "LN fused in place {what}");

    let (mut rr, mut hh) = (r.clone(), vec![F::zero(); h.len()]);
    p.rms_norm_add_slice(&rms, &x, &mut rr, Some(&mut hh), &mut y)
        .unwrap();
    assert!(hh == h && y == y_rms && rr == r, "RMS fused {what}");
    p.rms_norm_add_slice(&rms, &x, &mut rr, None, &mut y).unwrap();
    assert!(rr == h && y == y_rms, "RMS fused in place {what}");
}

fn bits<F: Float>(v: &[F]) -> Vec<u64> {
    v.iter().map(|x| x.to_f64_exact().to_bits()).collect()
}

/// One case of [`streaming_stores_change_no_bit`]: plain (`p`) against streaming (`st`)
/// stores, outputs starting `0..=16` elements into their buffers (so every alignment of
/// the vector boundary is hit), plain and fused forms of both norms.
fn streaming_case<F: Float>(p: ForcedPath, st: ForcedPath, d: usize, bias: bool, rng: &mut Rng) {
    let rows = 3;
    let n = rows * d;
    let x: Vec<F> = rng.vec(n, 0.5, 2.0);
    let r: Vec<F> = rng.vec(n, -1.0, 1.0);
    let (w, b) = weights::<F>(rng, d, bias);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), F::from_f64_round(1e-5)).unwrap();
    let rms = RmsNorm::from_weights(w, b, F::from_f64_round(1e-6)).unwrap();
    let what = |off: usize| format!("{:?} d={d} bias={bias} offset={off}", p.path());
    for off in 0..=16 {
        let run = |q: ForcedPath| {
            let (mut y, mut h, mut m, mut s) = (
                vec![F::zero(); n + off],
                vec![F::zero(); n + off],
                vec![F::zero(); rows],
                vec![F::zero(); rows],
            );
            let mut out = Vec::new();
            q.layer_norm_slice(&ln, &x, &mut y[off..], &mut m, &mut s)
                .unwrap();
            out.extend(bits(&y[off..]));
            q.rms_norm_slice(&rms, &x, &mut y[off..], &mut s).unwrap();
            out.extend(bits(&y[off..]));
            let mut rr = r.clone();
            q.layer_norm_add_slice(&ln, &x, &mut rr, Some(&mut h[off..]), &mut y[off..])
                .unwrap();
            out.extend(bits(&h[off..]).into_iter().chain(bits(&y[off..])));
            q.rms_norm_add_slice(&rms, &x, &mut rr, None, &mut y[off..])
                .unwrap();
            out.extend(bits(&rr).into_iter().chain(bits(&y[off..])));
            out
        };
        assert!(run(p) == run(st), "streaming stores changed a bit: {}", what(off));
    }
}

/// Outputs of at least `stream_min_bytes()` are written with non-temporal stores, with
/// scalar code up to the first vector boundary; every element must come out exactly as
/// with plain stores, on every path, at every alignment, with and without bias, also
/// on several threads.
#[test]
fn streaming_stores_change_no_bit() {
    let mut rng = Rng(5);
    for p in ForcedPath::all() {
        let st = p.with_stores(Stores::Streaming);
        for &d in &DIMS {
            for bias in [false, true] {
                streaming_case::<f32>(p, st, d, bias, &mut rng);
                streaming_case::<f64>(p, st, d, bias, &mut rng);
            }
        }
        // Streamed on several threads, against the unfused plain-store composition.
        with_threads(3, || check_fused::<f32>(st, 512, 300, true, &mut rng));
    }
}

/// Rows the fast path hands to the rescue path (squares that overflow or underflow, a
/// constant row, NaN and infinity), between ordinary rows, for [`streaming_rescue_case`].
fn rescue_rows<F: Float>(rng: &mut Rng, d: usize) -> (Vec<F>, Vec<F>) {
    let f32 = std::mem::size_of::<F>() == 4;
    let (huge, tiny) = if f32 { (1e30, 1e-30) } else { (1e200, 1e-160) };
    let mut x: Vec<F> = Vec::new();
    let mut r: Vec<F> = Vec::new();
    for kind in 0..7 {
        let (xs, rs): (Vec<F>, Vec<F>) = match kind {
            1 => (rng.vec(d, 0.0, huge), rng.vec(d, 0.0, huge)),
            2 => (rng.vec(d, 0.0, tiny), rng.vec(d, 0.0, tiny)),
            3 => (vec![F::from_f64_round(0.75); d], vec![F::from_f64_round(0.5); d]),
            4 | 5 => {
                let mut xs: Vec<F> = rng.vec(d, 0.5, 2.0);
                xs[d / 2] = if kind == 4 { F::nan() } else { F::infinity() };
                (xs, rng.vec(d, -1.0, 1.0))
            }
            _ => (rng.vec(d, 0.5, 2.0), rng.vec(d, -1.0, 1.0)),
        };
        x.extend(xs);
        r.extend(rs);
    }
    (x, r)
}

/// One case of [`streaming_rescue_rows_change_no_bit`]: `y`, `h` and the in-place
/// residual cut from one buffer at the same offset from a 64-byte boundary, so the
/// streaming fused kernels always stream `h` (and in place overwrite the residual they
/// read) beside `y`; plain against streaming stores, bit for bit, and `h = x + r`
/// written exactly once.
fn streaming_rescue_case<F: Float>(p: ForcedPath, d: usize, eps: f64, bias: bool, rng: &mut Rng) {
    let st = p.with_stores(Stores::Streaming);
    let (x, r) = rescue_rows::<F>(rng, d);
    let n = x.len();
    let h_ref: Vec<u64> = bits(&x.iter().zip(&r).map(|(&a, &b)| a + b).collect::<Vec<F>>());
    let (w, b) = weights::<F>(rng, d, bias);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), F::from_f64_round(eps)).unwrap();
    let rms = RmsNorm::from_weights(w, b, F::from_f64_round(eps)).unwrap();
    // Regions start a multiple of 16 elements (>= 64 bytes) apart, so they share their
    // offset from every vector boundary.
    let stride = n.div_ceil(16) * 16 + 16;
    for off in [0, 1, 5] {
        let what = format!("{:?} d={d} eps={eps} bias={bias} offset={off}", p.path());
        let run = |q: ForcedPath| {
            let mut buf = vec![F::zero(); 3 * stride];
            let (y, rest) = buf.split_at_mut(stride);
            let (h, rr) = rest.split_at_mut(stride);
            let (y, h, rr) = (&mut y[off..off + n], &mut h[off..off + n], &mut rr[off..off + n]);
            let (mut m, mut s) = (vec![F::zero(); n / d], vec![F::zero(); n / d]);
            let mut out = Vec::new();
            q.layer_norm_slice(&ln, &x, y, &mut m, &mut s).unwrap();
            out.extend(bits(y).into_iter().chain(bits(&m)).chain(bits(&s)));
            q.rms_norm_slice(&rms, &x, y, &mut s).unwrap();
            out.extend(bits(y).into_iter().chain(bits(&s)));
            for ln_kind in [true, false] {
                rr.copy_from_slice(&r);
                if ln_kind {
                    q.layer_norm_add_slice(&ln, &x, rr, Some(&mut *h), y).unwrap();
                } else {
                    q.rms_norm_add_slice(&rms, &x, rr, Some(&mut *h), y).unwrap();
                }
                assert!(bits(h) == h_ref && bits(rr) == bits(&r), "h = x + r, {what}");
                out.extend(bits(y));
                if ln_kind {
                    q.layer_norm_add_slice(&ln, &x, rr, None, y).unwrap();
                } else {
                    q.rms_norm_add_slice(&rms, &x, rr, None, y).unwrap();
                }
                assert!(bits(rr) == h_ref, "in place h = x + r, written once, {what}");
                out.extend(bits(y));
            }
            out
        };
        assert!(run(p) == run(st), "streaming stores changed a bit: {what}");
    }
}

/// Rows that take the rescue path (overflowing, underflowing, constant with eps = 0 and
/// eps > 0, NaN, infinity) write the same bits with streaming stores as with plain ones,
/// in the plain and fused forms, in place or not, with `h` streamed beside `y`.
#[test]
fn streaming_rescue_rows_change_no_bit() {
    let mut rng = Rng(17);
    for p in ForcedPath::all() {
        for d in [7, 100, 1000] {
            for (eps, bias) in [(1e-5, true), (0.0, false)] {
                streaming_rescue_case::<f32>(p, d, eps, bias, &mut rng);
                streaming_rescue_case::<f64>(p, d, eps, bias, &mut rng);
            }
        }
    }
}

#[test]
fn fused_equals_add_then_norm_on_every_path() {
    let mut rng = Rng(99);
    for p in ForcedPath::all() {
        for &d in &DIMS {
            for bias in [false, true] {
                check_fused::<f32>(p, d, 3, bias, &mut rng);
                check_fused::<f64>(p, d, 3, bias, &mut rng);
            }
        }
        // Large enough to run on several threads.
        check_fused::<f32>(p, 512, 300, true, &mut rng);
    }
}

#[test]
fn fused_public_forms_agree_with_unfused() {
    let mut rng = Rng(17);
    let (n, d) = (37, 96);
    let x = Array2::from_shape_vec((n, d), rng.vec::<f32>(n * d, 0.0, 1.0)).unwrap();
    let r = Array2::from_shape_vec((n, d), rng.vec::<f32>(n * d, 5.0, 1.0)).unwrap();
    let ln = LayerNorm::<f32>::new(d).unwrap();
    let rms = RmsNorm::<f32>::new(d).unwrap().with_zero_bias();
    let h = &x + &r;
    let (hl, yl) = ln.add_forward(&x, &r).unwrap();
    assert_eq!(hl, h);
    assert_eq!(yl, ln.forward(&h).unwrap());
    let (hr, yr) = rms.add_forward(&x, &r).unwrap();
    assert_eq!(hr, h);
    assert_eq!(yr, rms.forward(&h).unwrap());

    // Slices, and the in-place slice form.
    let (xs, rs) = (x.as_slice().unwrap(), r.as_slice().unwrap());
    let (mut hs, mut ys) = (vec![0.0; n * d], vec![0.0; n * d]);
    rms.add_forward_slice(xs, rs, &mut hs, &mut ys).unwrap();
    assert_eq!(hs, h.as_slice().unwrap());
    assert_eq!(ys, yr.as_slice().unwrap());
    let mut stream = rs.to_vec();
    ln.add_forward_slice_inplace(xs, &mut stream, &mut ys).unwrap();
    assert_eq!(stream, h.as_slice().unwrap());
    assert_eq!(ys, yl.as_slice().unwrap());

    // Non-contiguous inputs and outputs (transposed storage) take the two-step route.
    let xt = x.t().to_owned();
    let rt = r.t().to_owned();
    let (mut h2, mut y2) = (Array2::zeros((d, n)), Array2::zeros((d, n)));
    let (mut h2v, mut y2v) = (h2.view_mut().reversed_axes(), y2.view_mut().reversed_axes());
    ln.add_forward_into(&xt.t(), &rt.t(), &mut h2v, &mut y2v).unwrap();
    assert_eq!(h2.t(), h);
    assert_eq!(y2.t(), yl);
    let mut stream = rt.clone();
    let mut y3 = Array2::zeros((n, d));
    rms.add_forward_inplace(&xt.t(), &mut stream.view_mut().reversed_axes(), &mut y3)
        .unwrap();
    assert_eq!(stream.t(), h);
    assert_eq!(y3, yr);
}

#[test]
fn fused_rejects_mismatched_shapes() {
    let ln = LayerNorm::<f32>::new(4).unwrap();
    let rms = RmsNorm::<f32>::new(4).unwrap();
    let x = Array2::<f32>::zeros((3, 4));
    let r = Array2::<f32>::zeros((2, 4));
    assert_eq!(
        ln.add_forward(&x, &r).unwrap_err(),
        NormError::ResidualShape {
            input: vec![3, 4],
            residual: vec![2, 4]
        }
    );
    let msg = rms.add_forward(&x, &r).unwrap_err().to_string();
    assert!(msg.contains("[2, 4]") && msg.contains("[3, 4]"), "{msg}");
    let x5 = Array2::<f32>::zeros((3, 5));
    assert!(matches!(
        ln.add_forward(&x5, &x5),
        Err(NormError::FeatureMismatch { .. })
    ));
    let (mut h, mut y) = (Array2::<f32>::zeros((3, 4)), Array2::<f32>::zeros((4, 3)));
    assert!(matches!(
        ln.add_forward_into(&x, &x, &mut h, &mut y),
        Err(NormError::OutputShape { .. })
    ));
    let mut r2 = Array2::<f32>::zeros((3, 4));
    let mut y2 = Array2::<f32>::zeros((3, 4));
    assert!(ln.add_forward_inplace(&x, &mut r2, &mut y2).is_ok());

    let xs = [0.0f32; 8];
    let (mut h, mut y) = ([0.0f32; 8], [0.0f32; 8]);
    assert_eq!(
        rms.add_forward_slice(&xs, &[0.0; 4], &mut h, &mut y).unwrap_err(),
        NormError::BufferLen {
            name: "residual",
            got: 4,
            expected: 8
        }
    );
    assert_eq!(
        rms.add_forward_slice(&xs, &[0.0; 8], &mut [0.0; 7], &mut y)
            .unwrap_err(),
        NormError::BufferLen {
            name: "h",
            got: 7,
            expected: 8
        }
    );
    assert_eq!(
        ln.add_forward_slice_inplace(&xs[..6], &mut [0.0; 6], &mut y[..6])
            .unwrap_err(),
        NormError::SliceLen { len: 6, dim: 4 }
    );
    assert_eq!(
        ln.add_forward_slice_inplace(&xs, &mut [0.0; 8], &mut y[..4])
            .unwrap_err(),
        NormError::BufferLen {
            name: "out",
            got: 4,
            expected: 8
        }
    );
    // Zero rows are not an error.
    assert!(ln.add_forward_slice(&[], &[], &mut [], &mut []).is_ok());
}

#[test]
fn kernel_path_queries_are_consistent() {
    let avail = KernelPath::available();
    assert_eq!(avail.first(), Some(&KernelPath::Portable));
    assert_eq!(avail.last(), Some(&KernelPath::detected()));
    for &p in KernelPath::all() {
        assert_eq!(ForcedPath::new(p).is_some(), p.is_available(), "{}", p.name());
    }
}

/// One case of [`matched_write_passes_change_no_bit`]: `rows` rows of `d` elements, `x`
/// and `y` both `off` elements into their buffers, every output row against the same
/// row computed alone (a one-row call never copies its weight and bias to match).
fn matched_case<F: Float>(p: ForcedPath, d: usize, rows: usize, bias: bool, rng: &mut Rng) {
    let n = rows * d;
    let mut x: Vec<F> = rng.vec(n + 16, 0.5, 2.0);
    // One row whose squares overflow (the rescue path) among the ordinary ones.
    for v in &mut x[2 * d..3 * d] {
        *v *= F::from_f64_round(if size_of::<F>() == 4 { 1e36 } else { 1e300 });
    }
    let (w, b) = weights::<F>(rng, d, bias);
    let ln = LayerNorm::from_weights(w.clone(), b.clone(), F::from_f64_round(1e-5)).unwrap();
    let rms = RmsNorm::from_weights(w, b, F::from_f64_round(1e-6)).unwrap();
    for off in 0..16 {
        let xs = &x[off..off + n];
        let mut y = vec![F::zero(); n + 16];
        let (mut m, mut s) = (vec![F::zero(); rows], vec![F::zero(); rows]);
        let (mut y1, mut m1, mut s1) = (vec![F::zero(); d], [F::zero()], [F::zero()]);
        let what = |kind: &str| format!("{kind} {:?} d={d} bias={bias} offset={off}", p.path());
        p.layer_norm_slice(&ln, xs, &mut y[off..off + n], &mut m, &mut s)
            .unwrap();
        for (r, row) in xs.chunks_exact(d).enumerate() {
            p.layer_norm_slice(&ln, row, &mut y1, &mut m1, &mut s1).unwrap();
            let got = &y[off + r * d..off + (r + 1) * d];
            assert!(bits(got) == bits(&y1), "{} row {r}", what("LayerNorm"));
            assert!(
                bits(&[m[r], s[r]]) == bits(&[m1[0], s1[0]]),
                "{}",
                what("LayerNorm stats")
            );
        }
        p.rms_norm_slice(&rms, xs, &mut y[off..off + n], &mut s).unwrap();
        for (r, row) in xs.chunks_exact(d).enumerate() {
            p.rms_norm_slice(&rms, row, &mut y1, &mut s1).unwrap();
            let got = &y[off + r * d..off + (r + 1) * d];
            assert!(bits(got) == bits(&y1), "{} row {r}", what("RmsNorm"));
        }
    }
}

/// On AVX-512, calls whose rows sit off a cache line (both `x` and `y` at the same
/// offset, rows of whole lines, at least eight rows) copy their weight and bias to the rows' offset so
/// that the write pass runs aligned vectors, with an unaligned vector at each end of
/// the row: every element must come out as in a row alone, at every offset (on the
/// other paths, which never copy, this pins the plain write pass the same way), with and without bias, for both norms and both float types.
#[test]
fn matched_write_passes_change_no_bit() {
    let mut rng = Rng(9);
    for p in ForcedPath::all() {
        for d in [16, 32, 48, 64, 768] {
            for bias in [false, true] {
                matched_case::<f32>(p, d, 9, bias, &mut rng);
                matched_case::<f64>(p, d / 2, 9, bias, &mut rng);
                matched_case::<f64>(p, d, 9, bias, &mut rng);
            }
        }
    }
}
