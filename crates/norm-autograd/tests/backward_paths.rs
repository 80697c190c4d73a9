//! Tests of the fast backward kernels on every kernel path this CPU supports (forced
//! through the hidden `ForcedPath` hook) against the slow f64 reference twins, and of
//! the determinism promises: bit-identical results for 1, 2 and 3 rayon threads, for
//! every split of the row blocks, and whatever the alignment of the caller's buffers.

use norm_autograd::__private::{
    BackwardInput, ForcedPath, PAR_MIN_BYTES, Saved, Stores, Sweep, backward_slice_on,
};
use norm_autograd::GradSlices;
use norm_autograd::reference::{layer_norm_backward_reference, rms_norm_backward_reference};
use norm_autograd::{layer_norm_backward_slice, rms_norm_backward_slice};
use norm_core::{Float, LayerNorm, RmsNorm};
use proptest::prelude::*;

/// Deterministic values in `[lo, hi)` from a seed (splitmix64).
fn values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut z = seed;
    (0..n)
        .map(|_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut v = z;
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v ^= v >> 31;
            lo + (hi - lo) * ((v >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// One backward problem: inputs rounded to `F`, and the same values in f64.
struct Case<F> {
    d: usize,
    x: Vec<F>,
    dy: Vec<F>,
    w: Vec<F>,
}

impl<F: Float> Case<F> {
    fn new(rows: usize, d: usize, offset: f64, scale: f64, seed: u64) -> Self {
        let cast = |v: Vec<f64>| v.into_iter().map(F::from_f64_round).collect::<Vec<F>>();
        Case {
            d,
            x: cast(
                values(rows * d, seed, -1.0, 1.0)
                    .into_iter()
                    .map(|v| offset + scale * v)
                    .collect(),
            ),
            dy: cast(values(rows * d, seed ^ 1, -1.0, 1.0)),
            w: cast(values(d, seed ^ 2, 0.5, 1.5)),
        }
    }

    fn f64s(v: &[F]) -> Vec<f64> {
        v.iter().map(|a| a.to_f64_exact()).collect()
    }

    fn rows(&self) -> usize {
        self.x.len() / self.d
    }
}

/// Results of one backward call: dx, dgamma, dbeta.
type Grads<F> = (Vec<F>, Vec<F>, Vec<F>);

/// LayerNorm backward of `case` on `path` with `sweep`; the caller's buffers start
/// `shift` elements into larger allocations (to vary their alignment).
fn ln_on<F: Float>(case: &Case<F>, path: ForcedPath, sweep: Sweep, shift: usize) -> Grads<F> {
    let (rows, d) = (case.rows(), case.d);
    let ln = LayerNorm::from_weights(case.w.clone(), Some(vec![F::zero(); d]), F::from_f64_round(1e-5))
        .expect("valid weights");
    let n = rows * d;
    let mut xb = vec![F::zero(); n + shift];
    xb[shift..].copy_from_slice(&case.x);
    let mut dyb = vec![F::zero(); n + 2 * shift];
    dyb[2 * shift..].copy_from_slice(&case.dy);
    let (mut y, mut mean, mut rstd) = (vec![F::zero(); n], vec![F::zero(); rows], vec![F::zero(); rows]);
    ln.forward_slice_with_stats(&xb[shift..], &mut y, &mut mean, &mut rstd)
        .expect("shapes match");
    let mut dxb = vec![F::zero(); n + 3 * shift];
    let (mut dg, mut db) = (vec![F::zero(); d], vec![F::zero(); d]);
    let input = BackwardInput {
        weight: ln.weight(),
        eps: ln.eps(),
        x: &xb[shift..],
        dy: &dyb[2 * shift..],
        saved: Saved::LayerNorm {
            mean: &mean,
            rstd: &rstd,
        },
    };
    let grads = GradSlices {
        dx: &mut dxb[3 * shift..],
        dgamma: &mut dg,
        dbeta: Some(&mut db),
    };
    backward_slice_on(path, sweep, input, grads).expect("shapes match");
    (dxb[3 * shift..].to_vec(), dg, db)
}

/// RmsNorm backward of `case` (with a dbeta when `bias`), like [`ln_on`].
fn rms_on<F: Float>(case: &Case<F>, path: ForcedPath, sweep: Sweep, shift: usize, bias: bool) -> Grads<F> {
    let (rows, d) = (case.rows(), case.d);
    let rms = RmsNorm::from_weights(case.w.clone(), None, F::from_f64_round(1e-6)).expect("valid weights");
    let n = rows * d;
    let mut xb = vec![F::zero(); n + shift];
    xb[shift..].copy_from_slice(&case.x);
    let (mut y, mut rrms) = (vec![F::zero(); n], vec![F::zero(); rows]);
    rms.forward_slice_with_stats(&xb[shift..], &mut y, &mut rrms)
        .expect("shapes match");
    let mut dxb = vec![F::zero(); n + 2 * shift];
    let (mut dg, mut db) = (vec![F::zero(); d], vec![F::zero(); d]);
    let input = BackwardInput {
        weight: rms.weight(),
        eps: rms.eps(),
        x: &xb[shift..],
        dy: &case.dy,
        saved: Saved::RmsNorm { rrms: &rrms },
    };
    let grads = GradSlices {
        dx: &mut dxb[2 * shift..],
        dgamma: &mut dg,
        dbeta: bias.then_some(&mut db[..]),
    };
    backward_slice_on(path, sweep, input, grads).expect("shapes match");
    (dxb[2 * shift..].to_vec(), dg, db)
}

/// `|a − b| ≤ tol·max(1, max|b|)` elementwise.
fn assert_close(what: &str, a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let s = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            (x - y).abs() <= tol * s,
            "{what}[{i}]: {x} vs {y} (scale {s}, tol {tol})"
        );
    }
}

fn bits<F: Float>(g: &Grads<F>) -> Vec<u64> {
    g.0.iter()
        .chain(&g.1)
        .chain(&g.2)
        .map(|v| v.to_f64_exact().to_bits())
        .collect()
}

/// Checks every path on `case` against the references with tolerance `tol`, and that
/// the buffer alignment and the block split change no bit.
fn check_paths<F: Float>(case: &Case<F>, tol: f64) {
    let (x, dy, w) = (Case::f64s(&case.x), Case::f64s(&case.dy), Case::f64s(&case.w));
    let (rdx, rdg, rdb) = layer_norm_backward_reference(&x, &dy, &w, 1e-5);
    let (sdx, sdg, sdb) = rms_norm_backward_reference(&x, &dy, &w, 1e-6);
    for path in ForcedPath::all() {
        let name = path.path().name();
        let ln = ln_on(case, path, Sweep::Serial, 0);
        assert_close(&format!("{name} LN dx"), &Case::f64s(&ln.0), &rdx, tol);
        assert_close(&format!("{name} LN dgamma"), &Case::f64s(&ln.1), &rdg, tol);
        assert_close(&format!("{name} LN dbeta"), &Case::f64s(&ln.2), &rdb, tol);
        let rms = rms_on(case, path, Sweep::Serial, 0, true);
        assert_close(&format!("{name} RMS dx"), &Case::f64s(&rms.0), &sdx, tol);
        assert_close(&format!("{name} RMS dgamma"), &Case::f64s(&rms.1), &sdg, tol);
        assert_close(&format!("{name} RMS dbeta"), &Case::f64s(&rms.2), &sdb, tol);
        for shift in 1..4 {
            assert_eq!(
                bits(&ln),
                bits(&ln_on(case, path, Sweep::Serial, shift)),
                "{name} LN shift {shift}"
            );
            assert_eq!(
                bits(&rms),
                bits(&rms_on(case, path, Sweep::Serial, shift, true)),
                "{name} RMS shift {shift}"
            );
        }
        // Non-temporal stores of dx (what batches beyond `stream_min_bytes()` get) write
        // the same values, at any alignment and split.
        let streaming = path.with_stores(Stores::Streaming);
        for (shift, sweep) in [(0, Sweep::Serial), (1, Sweep::Serial), (3, Sweep::Parallel)] {
            assert_eq!(
                bits(&ln),
                bits(&ln_on(case, streaming, sweep, shift)),
                "{name} LN streaming, shift {shift}"
            );
            assert_eq!(
                bits(&rms),
                bits(&rms_on(case, streaming, sweep, shift, true)),
                "{name} RMS streaming, shift {shift}"
            );
        }
        for sweep in [Sweep::Chunked(2), Sweep::Parallel] {
            assert_eq!(
                bits(&ln),
                bits(&ln_on(case, path, sweep, 1)),
                "{name} LN {sweep:?}"
            );
            assert_eq!(
                bits(&rms),
                bits(&rms_on(case, path, sweep, 1, true)),
                "{name} RMS {sweep:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Every kernel path, f64 and f32, matches the explicit-Jacobian reference; widths
    /// cover vector tails, each write-pass group size (4, 2, 1 rows) and unaligned rows.
    #[test]
    fn every_path_matches_the_reference(
        rows in 1usize..45,
        d in prop::sample::select(vec![1usize, 3, 8, 15, 16, 17, 31, 64, 100, 257, 700, 1600]),
        offset in prop::sample::select(vec![0.0, 10.0, -1e3]),
        seed in any::<u64>(),
    ) {
        check_paths(&Case::<f64>::new(rows, d, offset, 1.0, seed), 1e-9);
        // f32: rounding of O(√d) terms that cancel, and of the saved mean for offset rows.
        let tol32 = 2e-5 * (d as f64).sqrt() * (1.0 + offset.abs() / 10.0);
        check_paths(&Case::<f32>::new(rows, d, offset, 1.0, seed), tol32);
    }
}

/// RmsNorm without dbeta takes its own code path on every kernel path.
#[test]
fn rms_without_dbeta_matches_with_dbeta() {
    let case = Case::<f32>::new(37, 129, 0.0, 2.0, 5);
    for path in ForcedPath::all() {
        let a = rms_on(&case, path, Sweep::Serial, 0, true);
        let b = rms_on(&case, path, Sweep::Serial, 0, false);
        assert_eq!(
            bits(&(a.0, a.1, Vec::new())),
            bits(&(b.0, b.1, Vec::new())),
            "{:?}",
            path.path()
        );
        assert!(
            b.2.iter().all(|&v| v == 0.0),
            "dbeta untouched when not asked for"
        );
    }
}

/// Large enough for the threaded path (≥ PAR_MIN_BYTES of f32), with a partial last
/// reduction block: the public functions give the same bits on 1, 2 and 3 threads, and
/// the same bits as the serial sweep.
#[test]
fn results_are_bit_identical_for_1_2_and_3_threads() -> Result<(), Box<dyn std::error::Error>> {
    let (rows, d) = (301, 256);
    assert!(rows * d * 4 >= PAR_MIN_BYTES);
    let case = Case::<f32>::new(rows, d, 3.0, 2.0, 11);
    let ln = LayerNorm::from_weights(case.w.clone(), Some(vec![0.0; d]), 1e-5f32)?;
    let rms = RmsNorm::from_weights(case.w.clone(), None, 1e-6f32)?;
    let n = rows * d;
    let (mut y, mut mean, mut rstd, mut rrms) = (
        vec![0.0f32; n],
        vec![0.0f32; rows],
        vec![0.0f32; rows],
        vec![0.0f32; rows],
    );
    ln.forward_slice_with_stats(&case.x, &mut y, &mut mean, &mut rstd)?;
    rms.forward_slice_with_stats(&case.x, &mut y, &mut rrms)?;
    let run = || -> Result<(Grads<f32>, Grads<f32>), norm_autograd::GradError> {
        let (mut dx, mut dg, mut db) = (vec![0.0f32; n], vec![0.0f32; d], vec![0.0f32; d]);
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: Some(&mut db),
        };
        layer_norm_backward_slice(&ln, &case.x, &case.dy, &mean, &rstd, grads)?;
        let (mut sx, mut sg, mut sb) = (vec![0.0f32; n], vec![0.0f32; d], vec![0.0f32; d]);
        let grads = GradSlices {
            dx: &mut sx,
            dgamma: &mut sg,
            dbeta: Some(&mut sb),
        };
        rms_norm_backward_slice(&rms, &case.x, &case.dy, &rrms, grads)?;
        Ok(((dx, dg, db), (sx, sg, sb)))
    };
    let mut results = Vec::new();
    for threads in [1, 2, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build()?;
        let (l, r) = pool.install(run)?;
        results.push((threads, bits(&l), bits(&r)));
    }
    let path = ForcedPath::detected();
    let serial_ln = bits(&ln_on(&case, path, Sweep::Serial, 0));
    let serial_rms = bits(&rms_on(&case, path, Sweep::Serial, 0, true));
    for (threads, l, r) in results {
        assert_eq!(l, serial_ln, "LayerNorm on {threads} threads");
        assert_eq!(r, serial_rms, "RmsNorm on {threads} threads");
    }
    Ok(())
}
