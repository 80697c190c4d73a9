//! The bf16/f16 backward: on every kernel path, dgamma/dbeta are bit-identical to the
//! f32 backward of the widened inputs and dx is that backward's dx rounded once; every
//! split of the rows and every thread count gives the same bits; dx, dgamma and dbeta
//! agree with the f64 explicit-Jacobian reference (itself checked against finite
//! differences in f64 by `norm_backward.rs`) to the storage type's rounding; the
//! ndarray forms equal the slice forms and refuse bad shapes with typed errors.

use ndarray::Array2;
use norm_autograd::__private::{
    BackwardInput, ForcedPath, Saved, Stores, Sweep, backward_half_slice_on, backward_slice_on,
};
use norm_autograd::reference::{layer_norm_backward_reference, rms_norm_backward_reference};
use norm_autograd::{
    GradError, GradSlices, layer_norm_backward_half, layer_norm_backward_half_slice, rms_norm_backward_half,
};
use norm_core::{Element, Half, LayerNorm, NormError, RmsNorm, bf16, f16};

/// Deterministic values `loc + scale·u`, `u` uniform in [-1, 1) (splitmix64).
fn values(n: usize, seed: u64, loc: f64, scale: f64) -> Vec<f64> {
    let mut z = seed;
    (0..n)
        .map(|_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut v = z;
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v ^= v >> 31;
            loc + scale * (2.0 * ((v >> 11) as f64 / (1u64 << 53) as f64) - 1.0)
        })
        .collect()
}

trait H16: Half {
    fn of(v: f64) -> Self;
    fn ulp(v: f64) -> f64;
}

impl H16 for bf16 {
    fn of(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn ulp(v: f64) -> f64 {
        (v.abs().max(1e-30)).log2().floor().exp2() / 128.0
    }
}

impl H16 for f16 {
    fn of(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn ulp(v: f64) -> f64 {
        (v.abs().max(6.1e-5)).log2().floor().exp2() / 1024.0
    }
}

/// One problem in `H`, with its widened f32 twin.
struct Case<H> {
    d: usize,
    rows: usize,
    ln: bool,
    x: Vec<H>,
    dy: Vec<H>,
    w: Vec<H>,
    b: Option<Vec<H>>,
    eps: f32,
}

fn wide<H: Half>(v: &[H]) -> Vec<f32> {
    v.iter().map(|h| h.to_acc()).collect()
}

impl<H: H16> Case<H> {
    fn new(ln: bool, rows: usize, d: usize, loc: f64, scale: f64, seed: u64) -> Self {
        let cast = |v: Vec<f64>| v.into_iter().map(H::of).collect::<Vec<H>>();
        Case {
            d,
            rows,
            ln,
            x: cast(values(rows * d, seed, loc, scale)),
            dy: cast(values(rows * d, seed ^ 1, 0.0, 1.0)),
            w: cast(values(d, seed ^ 2, 1.0, 0.5)),
            b: ln.then(|| cast(values(d, seed ^ 3, 0.0, 0.5))),
            eps: 1e-5,
        }
    }

    /// The forward statistics (f32), as the half forward writes them.
    fn stats(&self) -> (Vec<f32>, Vec<f32>) {
        let (mut s0, mut s1) = (vec![0.0f32; self.rows], vec![0.0f32; self.rows]);
        let mut y = vec![H::default(); self.x.len()];
        if self.ln {
            let n = LayerNorm::from_weights(self.w.clone(), self.b.clone(), self.eps).expect("valid");
            n.forward_slice_with_stats(&self.x, &mut y, &mut s0, &mut s1)
                .expect("lengths");
        } else {
            let n = RmsNorm::from_weights(self.w.clone(), None, self.eps).expect("valid");
            n.forward_slice_with_stats(&self.x, &mut y, &mut s0)
                .expect("lengths");
        }
        (s0, s1)
    }

    /// The half backward on `path`/`sweep`: (dx, dgamma, dbeta).
    fn half(&self, path: ForcedPath, sweep: Sweep, s: &(Vec<f32>, Vec<f32>)) -> (Vec<H>, Vec<f32>, Vec<f32>) {
        let saved = if self.ln {
            Saved::LayerNorm {
                mean: &s.0,
                rstd: &s.1,
            }
        } else {
            Saved::RmsNorm { rrms: &s.0 }
        };
        let input = BackwardInput {
            weight: &self.w,
            eps: self.eps,
            x: &self.x,
            dy: &self.dy,
            saved,
        };
        let (mut dx, mut dg, mut db) = (
            vec![H::default(); self.x.len()],
            vec![0.0f32; self.d],
            vec![0.0f32; self.d],
        );
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: Some(&mut db),
        };
        backward_half_slice_on(path, sweep, input, grads).expect("lengths");
        (dx, dg, db)
    }

    /// The f32 backward of the widened inputs on `path`.
    fn f32(&self, path: ForcedPath, s: &(Vec<f32>, Vec<f32>)) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let saved = if self.ln {
            Saved::LayerNorm {
                mean: &s.0,
                rstd: &s.1,
            }
        } else {
            Saved::RmsNorm { rrms: &s.0 }
        };
        let (x, dy, w) = (wide(&self.x), wide(&self.dy), wide(&self.w));
        let input = BackwardInput {
            weight: &w,
            eps: self.eps,
            x: &x,
            dy: &dy,
            saved,
        };
        let (mut dx, mut dg, mut db) = (vec![0.0f32; x.len()], vec![0.0f32; self.d], vec![0.0f32; self.d]);
        let grads = GradSlices {
            dx: &mut dx,
            dgamma: &mut dg,
            dbeta: Some(&mut db),
        };
        backward_slice_on(path, Sweep::Serial, input, grads).expect("lengths");
        (dx, dg, db)
    }

    /// Every path: bits against the f32 backward, splits and threads, and the f64
    /// reference; returns the largest dx error in ulps of `H`.
    fn check(&self) -> f64 {
        let s = self.stats();
        let (x64, dy64, w64): (Vec<f64>, Vec<f64>, Vec<f64>) = (
            self.x.iter().map(|v| f64::from(v.to_acc())).collect(),
            self.dy.iter().map(|v| f64::from(v.to_acc())).collect(),
            self.w.iter().map(|v| f64::from(v.to_acc())).collect(),
        );
        let eps = f64::from(self.eps);
        let (rdx, rdg, rdb) = if self.ln {
            layer_norm_backward_reference(&x64, &dy64, &w64, eps)
        } else {
            rms_norm_backward_reference(&x64, &dy64, &w64, eps)
        };
        let mut worst = 0.0f64;
        for path in ForcedPath::all() {
            let (dx, dg, db) = self.half(path, Sweep::Serial, &s);
            let (fdx, fdg, fdb) = self.f32(path, &s);
            assert_eq!(
                (&dg, &db),
                (&fdg, &fdb),
                "{:?}: dgamma/dbeta equal the f32 backward's",
                path.path()
            );
            for (h, f) in dx.iter().zip(&fdx) {
                assert_eq!(
                    *h,
                    <H as Element>::from_acc(*f),
                    "{:?}: dx is the f32 dx rounded once",
                    path.path()
                );
            }
            for sweep in [Sweep::Chunked(3), Sweep::Parallel] {
                assert_eq!(
                    self.half(path, sweep, &s),
                    (dx.clone(), dg.clone(), db.clone()),
                    "{sweep:?}"
                );
            }
            let streamed = self.half(path.with_stores(Stores::Streaming), Sweep::Serial, &s);
            assert_eq!(streamed.0, dx, "streamed dx changes no bit");
            // Against f64: dx per row to the storage rounding plus the f32 kernel's error
            // (relative to the row's largest |dx|: dx is a difference of O(1) terms).
            for (r, row) in rdx.chunks(self.d).enumerate() {
                // dx is rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ: its f32 error scales
                // with rstd·max|g| (the terms), not with dx itself (d = 1 gives dx = 0).
                let rs = f64::from(if self.ln { s.1[r] } else { s.0[r] });
                let g = (0..self.d).fold(0.0f64, |m, j| m.max((dy64[r * self.d + j] * w64[j]).abs()));
                let big = row.iter().fold(rs * g, |m, v| m.max(v.abs()));
                for (j, &want) in row.iter().enumerate() {
                    let got = f64::from(dx[r * self.d + j].to_acc());
                    let err = (got - want).abs();
                    assert!(
                        err <= H::ulp(want) + 1e-5 * big,
                        "{:?} row {r} col {j}: dx {got} vs reference {want}",
                        path.path()
                    );
                    if want.abs() >= 1e-2 * big {
                        worst = worst.max(err / H::ulp(want));
                    }
                }
            }
            for (g, w) in dg.iter().zip(&rdg).chain(db.iter().zip(&rdb)) {
                let scale = w.abs().max(1.0);
                assert!(
                    (f64::from(*g) - w).abs() <= 1e-5 * scale * self.rows as f64,
                    "{g} vs {w}"
                );
            }
        }
        worst
    }
}

#[test]
fn half_backward_is_the_f32_backward_rounded_on_every_path_and_split() {
    for (i, (rows, d)) in [(1usize, 1usize), (3, 7), (40, 64), (70, 300), (33, 1000)]
        .into_iter()
        .enumerate()
    {
        for ln in [true, false] {
            let seed = 7 + i as u64;
            let w1 = Case::<bf16>::new(ln, rows, d, 0.0, 2.0, seed).check();
            let w2 = Case::<f16>::new(ln, rows, d, 0.0, 2.0, seed).check();
            // Offset rows: the shift keeps the statistics accurate.
            let w3 = Case::<bf16>::new(ln, rows, d, 300.0, 4.0, seed).check();
            let w4 = Case::<f16>::new(ln, rows, d, 100.0, 4.0, seed).check();
            eprintln!(
                "rows {rows} d {d} ln {ln}: dx error (ulps) bf16 {w1:.2} f16 {w2:.2} offset bf16 {w3:.2} f16 {w4:.2}"
            );
        }
    }
}

#[test]
fn half_backward_is_independent_of_the_thread_count() {
    // 256 rows × 1024 bf16 = 512 KiB: above the parallel threshold.
    let c = Case::<bf16>::new(true, 256, 1024, 1.0, 3.0, 99);
    let s = c.stats();
    let run = |t: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .expect("pool");
        pool.install(|| c.half(ForcedPath::detected(), Sweep::Auto, &s))
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
}

#[test]
fn half_ndarray_forms_match_the_slice_forms_and_refuse_bad_shapes() -> Result<(), GradError> {
    let (r, d) = (5, 12);
    let c = Case::<f16>::new(true, r, d, 0.5, 2.0, 5);
    let ln = LayerNorm::from_weights(c.w.clone(), c.b.clone(), c.eps)?;
    let x = Array2::from_shape_vec((r, d), c.x.clone()).expect("shape");
    let dy = Array2::from_shape_vec((r, d), c.dy.clone()).expect("shape");
    let (_, stats) = ln.forward_with_stats(&x)?;
    let (dx, grads) = layer_norm_backward_half(&ln, &x, &stats, &dy)?;
    let (mut dxs, mut dg, mut db) = (vec![f16::ZERO; r * d], vec![0.0f32; d], vec![0.0f32; d]);
    let (mean, rstd) = (stats.mean.to_vec(), stats.rstd.to_vec());
    layer_norm_backward_half_slice(
        &ln,
        &c.x,
        &c.dy,
        &mean,
        &rstd,
        GradSlices {
            dx: &mut dxs,
            dgamma: &mut dg,
            dbeta: Some(&mut db),
        },
    )?;
    assert_eq!(dx.as_slice(), Some(&dxs[..]));
    assert_eq!(
        (grads.dgamma.to_vec(), grads.dbeta.map(|b| b.to_vec())),
        (dg, Some(db))
    );
    // A transposed layout gives the same gradients.
    let (xt, dyt) = (x.t().to_owned(), dy.t().to_owned());
    let (dx2, grads2) = layer_norm_backward_half(&ln, &xt.t(), &stats, &dyt.t())?;
    assert_eq!((dx2, grads2.dgamma.clone()), (dx, grads.dgamma.clone()));
    // RmsNorm without bias: no dbeta.
    let rms = RmsNorm::<f16>::from_weights(c.w.clone(), None, 1e-6)?;
    let (_, st) = rms.forward_with_stats(&x)?;
    let (_, g) = rms_norm_backward_half(&rms, &x, &st, &dy)?;
    assert!(g.dbeta.is_none());
    // Typed errors.
    let bad = Array2::from_elem((r, d + 1), f16::ZERO);
    assert!(matches!(
        layer_norm_backward_half(&ln, &x, &stats, &bad),
        Err(GradError::ShapeMismatch { what: "dy", .. })
    ));
    assert!(matches!(
        layer_norm_backward_half(&ln, &bad, &stats, &bad),
        Err(GradError::Norm(NormError::FeatureMismatch { .. }))
    ));
    let short = GradSlices {
        dx: &mut dxs[..3],
        dgamma: &mut vec![0.0f32; d],
        dbeta: None,
    };
    assert!(matches!(
        layer_norm_backward_half_slice(&ln, &c.x, &c.dy, &mean, &rstd, short),
        Err(GradError::Norm(NormError::BufferLen { name: "dx", .. }))
    ));
    Ok(())
}

#[test]
fn half_backward_rows_at_the_extremes_are_the_f32_rescue_rounded_on_every_path() {
    // bf16 holds f32's range: rows near ±MAX overflow `x − mean` (LayerNorm) or
    // `Σ g·x` (RmsNorm) in the vector pass and go through the scaled rescue, which the
    // 16-bit rows reach through the same kernel as f32 rows. Rows 0 and 2 are at the
    // extremes, rows 1 and 3 ordinary, so the pipelined and grouped passes both have to
    // step around a rescued row.
    let d = 37;
    let rows = 4;
    let big = values(rows * d, 5, 0.0, 1.0);
    let x: Vec<bf16> = big
        .iter()
        .enumerate()
        .map(|(i, &u)| {
            let v = match i / d {
                0 => 3.0e38 * u.signum() * (0.5 + 0.5 * u.abs()),
                2 => 1.6e38 + 1.0e37 * u,
                _ => u,
            };
            bf16::from_f64(v)
        })
        .collect();
    for ln in [true, false] {
        let mut c = Case::<bf16>::new(ln, rows, d, 0.0, 1.0, 11);
        c.x = x.clone();
        let s = c.stats();
        for path in ForcedPath::all() {
            for stores in [Stores::Cached, Stores::Streaming] {
                let p = path.with_stores(stores);
                let (dx, dg, db) = c.half(p, Sweep::Serial, &s);
                let (fdx, fdg, fdb) = c.f32(p, &s);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&dg), bits(&fdg), "{:?} ln {ln}: dgamma", path.path());
                assert_eq!(bits(&db), bits(&fdb), "{:?} ln {ln}: dbeta", path.path());
                for (j, (h, f)) in dx.iter().zip(&fdx).enumerate() {
                    assert_eq!(
                        h.to_bits(),
                        bf16::from_f32(*f).to_bits(),
                        "{:?} ln {ln} {stores:?}: dx[{j}] is the f32 dx rounded once",
                        path.path()
                    );
                }
                // The rescue gives finite dx for finite rows near ±MAX.
                assert!(
                    dx.iter().all(|v| v.to_f32().is_finite()),
                    "{:?} ln {ln}: finite dx",
                    path.path()
                );
            }
        }
    }
}
