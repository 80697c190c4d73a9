//! bf16 and f16 storage: on every kernel path, each output equals the f32 kernel's
//! output on the widened row rounded once (bit for bit), and lies within 1 ulp of the
//! f64 reference rounded to the storage type, or, near zero where the storage spacing is
//! finer than the f32 kernel's absolute error, within that error plus 1 spacing;
//! statistics equal the f32 kernel's.
//! Ordinary and offset rows, NaN/inf rows, f16 rows whose squares overflow f16 (not
//! f32) and rows near 65504, bf16 rows whose squares overflow f32 (rescued), outputs
//! that overflow the storage type; the fused add rounds `h` like `half`'s `+`; every
//! layout and thread count gives the same bits. The largest ulp error seen per type,
//! norm and path is printed (`--nocapture`).

use std::sync::Mutex;

use ndarray::{Array2, Array3, Axis};
use norm_core::dispatch::ForcedPath;
use norm_core::reference::{layer_norm_reference, rms_norm_reference};
use norm_core::{Element, Half, KernelPath, LayerNorm, NormError, RmsNorm, bf16, f16};
use proptest::prelude::*;

use crate::common::{KINDS, Kind, Rng};

/// What the tests need of a storage type beyond [`Half`].
trait H16: Half {
    const NAME: &'static str;
    fn from_f64(v: f64) -> Self;
    fn bits(self) -> u16;
}

impl H16 for bf16 {
    const NAME: &'static str = "bf16";
    fn from_f64(v: f64) -> Self {
        bf16::from_f64(v)
    }
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

impl H16 for f16 {
    const NAME: &'static str = "f16";
    fn from_f64(v: f64) -> Self {
        f16::from_f64(v)
    }
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

/// Distance in ulps of the storage type (0 for two NaNs, `u32::MAX` for one NaN).
fn ulps(a: u16, b: u16) -> u32 {
    let ord = |u: u16| {
        if u & 0x8000 != 0 {
            -i32::from(u & 0x7fff)
        } else {
            i32::from(u)
        }
    };
    ord(a).abs_diff(ord(b))
}

/// The largest ulp error seen, per (type, norm, path), printed at the end of each test.
static WORST: Mutex<Vec<(String, u32)>> = Mutex::new(Vec::new());

fn record(key: String, e: u32) {
    let mut w = WORST.lock().unwrap_or_else(|p| p.into_inner());
    match w.iter_mut().find(|(k, _)| *k == key) {
        Some((_, v)) => *v = (*v).max(e),
        None => w.push((key, e)),
    }
}

fn print_worst() {
    let w = WORST.lock().unwrap_or_else(|p| p.into_inner());
    for (k, v) in w.iter() {
        eprintln!("largest ulp error {k}: {v}");
    }
}

/// The spacing of storage type `H` just below `|v|` for bits `u` (the smallest subnormal
/// at zero).
fn spacing<H: H16>(u: u16) -> f64 {
    let mag = u & 0x7fff;
    let below = mag.saturating_sub(1);
    (f64::from(half_to_f32::<H>(mag)) - f64::from(half_to_f32::<H>(below)))
        .max(f64::from(half_to_f32::<H>(1)))
}

/// Whether bits `u` are a NaN of storage type `H`.
fn is_nan<H: H16>(u: u16) -> bool {
    half_to_f32::<H>(u).is_nan()
}

fn half_to_f32<H: H16>(u: u16) -> f32 {
    match H::NAME {
        "bf16" => bf16::from_bits(u).to_f32(),
        _ => f16::from_bits(u).to_f32(),
    }
}

/// One case: rows `x` (already in `H`), weight, bias, eps, through every path.
/// Checks (1) bits equal the f32 kernel on the widened row rounded once, with equal
/// statistics; (2) each finite-reference output is within `max_ulps` of the f64
/// reference rounded to `H` (NaN where the reference is NaN). Returns the outputs of
/// the detected path.
fn check<H: H16>(kind: Kind, x: &[H], weight: &[H], bias: Option<&[H]>, eps: f32, max_ulps: u32) -> Vec<H> {
    let d = weight.len();
    let rows = x.len() / d;
    let wide = |v: &[H]| v.iter().map(|h| h.to_acc()).collect::<Vec<f32>>();
    let (x32, w32, b32) = (wide(x), wide(weight), bias.map(wide));
    // The f64 reference and, per element, its x̂ = (x − μ)/σ (RmsNorm: x/rms).
    let (reference, xhat): (Vec<f64>, Vec<f64>) = match kind {
        Kind::Ln => {
            let (y, mean, rstd) = layer_norm_reference(&x32, &w32, b32.as_deref(), eps).expect("valid");
            let xh = x32
                .iter()
                .enumerate()
                .map(|(i, &v)| (f64::from(v) - mean[i / d]) * rstd[i / d]);
            (y, xh.collect())
        }
        Kind::Rms => {
            let (y, rrms) = rms_norm_reference(&x32, &w32, b32.as_deref(), eps).expect("valid");
            let xh = x32.iter().enumerate().map(|(i, &v)| f64::from(v) * rrms[i / d]);
            (y, xh.collect())
        }
    };
    let want: Vec<u16> = reference.iter().map(|&v| H::from_f64(v).bits()).collect();
    let mut last = Vec::new();
    for how in ForcedPath::all() {
        let mut y = vec![H::default(); x.len()];
        let mut y32 = vec![0.0f32; x.len()];
        let (mut s0, mut s1, mut t0, mut t1) = (
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
            vec![0.0f32; rows],
        );
        match kind {
            Kind::Ln => {
                let n =
                    LayerNorm::from_weights(weight.to_vec(), bias.map(<[H]>::to_vec), eps).expect("valid");
                how.layer_norm_slice(&n, x, &mut y, &mut s0, &mut s1)
                    .expect("lengths");
                let n32 = LayerNorm::from_weights(w32.clone(), b32.clone(), eps).expect("valid");
                how.layer_norm_slice(&n32, &x32, &mut y32, &mut t0, &mut t1)
                    .expect("lengths");
            }
            Kind::Rms => {
                let n = RmsNorm::from_weights(weight.to_vec(), bias.map(<[H]>::to_vec), eps).expect("valid");
                how.rms_norm_slice(&n, x, &mut y, &mut s0).expect("lengths");
                let n32 = RmsNorm::from_weights(w32.clone(), b32.clone(), eps).expect("valid");
                how.rms_norm_slice(&n32, &x32, &mut y32, &mut t0)
                    .expect("lengths");
            }
        }
        let path = how.path().name();
        for (i, (&got, &f)) in y.iter().zip(&y32).enumerate() {
            let once = <H as Element>::from_acc(f).bits();
            assert!(
                got.bits() == once || (is_nan::<H>(got.bits()) && f.is_nan()),
                "{} {kind:?} {path}: element {i} is {:#06x}, the f32 kernel rounded once gives {once:#06x}",
                H::NAME,
                got.bits()
            );
        }
        for (a, b) in s0.iter().zip(&t0).chain(s1.iter().zip(&t1)) {
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "{} {kind:?} {path}: stats {a} vs {b}",
                H::NAME
            );
        }
        let mut worst = 0;
        for (i, (&got, &w)) in y.iter().zip(&want).enumerate() {
            // A row holding ±∞ or NaN is NaN throughout (documented; the reference
            // gives x/∞ = 0 for its finite elements).
            if reference[i].is_nan() || x32[i / d * d..(i / d + 1) * d].iter().any(|v| !v.is_finite()) {
                assert!(
                    is_nan::<H>(got.bits()),
                    "{} {kind:?} {path}: element {i} should be NaN",
                    H::NAME
                );
                continue;
            }
            let e = ulps(got.bits(), w);
            if e > max_ulps {
                // Near zero the storage type's spacing can be finer than the f32
                // kernel's own absolute error (a few f32 ulps of |γ|·(1 + |x̂|) + |β|):
                // f16 subnormals are 6e-8 apart, bf16's spacing at 2e-5 is 1.2e-7. There
                // the output (still the f32 result rounded once, checked above) must be
                // within that f32 error plus `max_ulps` spacings of the reference.
                let j = i % d;
                let f32_error = 16.0
                    * f64::from(f32::EPSILON)
                    * (f64::from(w32[j].abs()) * (1.0 + xhat[i].abs())
                        + b32.as_ref().map_or(0.0, |b| f64::from(b[j].abs())));
                let miss = (f64::from(half_to_f32::<H>(got.bits())) - reference[i]).abs();
                let allowed = f32_error + f64::from(max_ulps.max(1)) * spacing::<H>(w);
                assert!(
                    miss <= allowed,
                    "{} {kind:?} {path}: element {i} = {} is {e} ulps ({miss:e}) from the reference {}, \
                     more than {max_ulps} ulps and than the f32 kernel's error + spacing {allowed:e} (x row {:?})",
                    H::NAME,
                    half_to_f32::<H>(got.bits()),
                    reference[i],
                    &x32[i / d * d..(i / d + 1) * d].iter().take(8).collect::<Vec<_>>()
                );
                record(
                    format!("{} {kind:?} {path} (near zero, within the f32 error)", H::NAME),
                    e,
                );
            } else {
                worst = worst.max(e);
            }
        }
        record(format!("{} {kind:?} {path}", H::NAME), worst);
        last = y;
    }
    last
}

fn rows<H: H16>(rng: &mut Rng, n: usize, loc: f64, scale: f64) -> Vec<H> {
    (0..n).map(|_| H::from_f64(loc + scale * rng.normal())).collect()
}

fn params<H: H16>(rng: &mut Rng, d: usize, with_bias: bool) -> (Vec<H>, Option<Vec<H>>) {
    let w = rows::<H>(rng, d, 1.0, 0.5);
    let b = with_bias.then(|| rows::<H>(rng, d, 0.0, 0.5));
    (w, b)
}

fn ordinary<H: H16>(seed: u64, d: usize, n_rows: usize, loc: f64, scale: f64, with_bias: bool, eps: f32) {
    let mut rng = Rng::new(seed);
    let x = rows::<H>(&mut rng, d * n_rows, loc, scale);
    let (w, b) = params::<H>(&mut rng, d, with_bias);
    for kind in KINDS {
        check(kind, &x, &w, b.as_deref(), eps, 1);
    }
}

#[test]
fn ordinary_and_offset_rows_are_within_one_ulp() {
    // d covers scalar tails, one vector, blocked totals (≥ 256) and long rows.
    for (i, d) in [1usize, 3, 8, 17, 64, 300, 768, 4099].into_iter().enumerate() {
        let seed = 100 + i as u64;
        ordinary::<bf16>(seed, d, 4, 0.0, 1.0, i % 2 == 0, 1e-5);
        ordinary::<f16>(seed, d, 4, 0.0, 1.0, i % 2 == 1, 1e-5);
        // Offset rows: |mean| far above the spread.
        ordinary::<bf16>(seed, d, 3, 1e4, 30.0, true, 1e-5);
        ordinary::<f16>(seed, d, 3, 1000.0, 1.0, true, 1e-5);
        // Scales far from 1.
        ordinary::<bf16>(seed, d, 2, 0.0, 1e-20, false, 0.0);
        ordinary::<f16>(seed, d, 2, 0.0, 1e-3, false, 0.0);
    }
    print_worst();
}

#[test]
fn f16_outputs_near_zero_are_within_the_f32_kernels_error() {
    // Found by the property test below: element 112 of this f16 LayerNorm row is
    // -4.6909e-5 against the reference -4.7300e-5, 7 f16 subnormal spacings (6e-8 each)
    // off, yet equal to the f32 kernel's output rounded once: the f32 error (~4e-7 at
    // |x̂| ≈ 0) is what shows, not the rounding.
    let mut rng = Rng::new(8_409_024_222_293_773_227);
    let x = rows::<f16>(&mut rng, 350, 0.0, 1.0);
    let (w, _) = params::<f16>(&mut rng, 350, false);
    let y = check(Kind::Ln, &x, &w, None, 1e-6, 1);
    assert!(
        y.iter().any(|v| v.to_f32().abs() < 6.1e-5 && v.to_f32() != 0.0),
        "a subnormal output"
    );
    print_worst();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_rows_are_within_one_ulp(seed in any::<u64>(), d in 1usize..700, n in 1usize..4,
                                      loc in prop_oneof![Just(0.0), -50.0f64..50.0, Just(3000.0)],
                                      scale in prop_oneof![Just(1.0), 1e-3f64..100.0],
                                      bias in any::<bool>()) {
        ordinary::<bf16>(seed, d, n, loc, scale, bias, 1e-5);
        ordinary::<f16>(seed, d, n, loc.clamp(-1000.0, 1000.0), scale.min(50.0), bias, 1e-6);
    }
}

#[test]
fn f16_rows_whose_squares_overflow_f16_and_rows_near_65504() {
    let mut rng = Rng::new(7);
    for d in [5usize, 64, 513] {
        // Squares up to 4e9: far past f16's 65504, nothing for f32.
        let big: Vec<f16> = (0..2 * d)
            .map(|_| f16::from_f64((30000.0 * rng.normal()).clamp(-65504.0, 65504.0)))
            .collect();
        let near: Vec<f16> = (0..2 * d)
            .map(|i| f16::from_f64(65504.0 - 32.0 * (i % 7) as f64))
            .collect();
        let mixed: Vec<f16> = (0..d)
            .map(|i| f16::from_f64(if i % 2 == 0 { 65504.0 } else { -65504.0 }))
            .collect();
        let (w, b) = params::<f16>(&mut rng, d, true);
        for kind in KINDS {
            for x in [&big, &near, &mixed] {
                check(kind, x, &w, b.as_deref(), 1e-5, 1);
            }
        }
    }
    print_worst();
}

#[test]
fn bf16_rows_whose_squares_overflow_or_underflow_f32_are_rescued() {
    let mut rng = Rng::new(8);
    for d in [4usize, 100] {
        let w = vec![bf16::ONE; d];
        for (loc, scale) in [(0.0, 1e25), (1e30, 1e28), (0.0, 1e-25), (-3e38, 1e36)] {
            let x = rows::<bf16>(&mut rng, 2 * d, loc, scale);
            for kind in KINDS {
                check(kind, &x, &w, None, 0.0, 1);
            }
        }
    }
}

#[test]
fn outputs_past_the_storage_range_become_infinite() {
    // Weight 60000 and outputs beyond ±1.1 overflow f16 (65520 rounds to ∞).
    let d = 16;
    let x: Vec<f16> = (0..d).map(|i| f16::from_f64(i as f64)).collect();
    let w = vec![f16::from_f64(60000.0); d];
    for kind in KINDS {
        let y = check(kind, &x, &w, None, 1e-5, 0);
        assert!(
            y.iter().any(|v| v.is_infinite()),
            "{kind:?}: some output overflows"
        );
    }
    // bf16 shares f32's range: weights near bf16::MAX overflow the same way.
    let x: Vec<bf16> = (0..d).map(|i| bf16::from_f64(i as f64)).collect();
    let w = vec![bf16::MAX; d];
    for kind in KINDS {
        let y = check(kind, &x, &w, None, 1e-5, 0);
        assert!(y.iter().any(|v| v.is_infinite()));
    }
}

#[test]
fn non_finite_rows_give_nan_in_that_row_only_and_constant_rows_behave_as_in_f32() {
    let d = 40;
    let mut rng = Rng::new(9);
    fn with<H: H16>(rng: &mut Rng, d: usize, bad: f64) {
        let mut x = rows::<H>(rng, 3 * d, 0.0, 1.0);
        x[d + 5] = H::from_f64(bad);
        let w = vec![H::from_f64(1.0); d];
        for kind in KINDS {
            let y = check(kind, &x, &w, None, 1e-5, 1);
            assert!(
                y[d..2 * d].iter().all(|v| v.to_acc().is_nan()),
                "{} {kind:?} {bad}",
                H::NAME
            );
            assert!(y[..d].iter().chain(&y[2 * d..]).all(|v| v.to_acc().is_finite()));
        }
        // A constant row: zeros with eps > 0, NaN (0/0) with eps = 0, as in f32.
        let c = vec![H::from_f64(3.0); d];
        for kind in KINDS {
            let y = check(kind, &c, &w, None, 1e-5, 0);
            let expect_zero = kind == Kind::Ln;
            assert!(!expect_zero || y.iter().all(|v| v.to_acc() == 0.0));
            let y = check(kind, &c, &w, None, 0.0, 0);
            assert!(kind != Kind::Ln || y.iter().all(|v| v.to_acc().is_nan()));
        }
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        with::<bf16>(&mut rng, d, bad);
        with::<f16>(&mut rng, d, bad);
    }
    // An f16 input of 1e5 is already ∞ in storage: the row is NaN.
    with::<f16>(&mut rng, d, 1e5);
}

macro_rules! api_checks {
    ($test:ident, $h:ident) => {
        #[test]
        fn $test() -> Result<(), NormError> {
            let mut rng = Rng::new(11);
            let (r, d) = (6, 24);
            let xv = rows::<$h>(&mut rng, r * d, 0.5, 2.0);
            let x = Array2::from_shape_vec((r, d), xv.clone()).expect("shape");
            let (w, b) = params::<$h>(&mut rng, d, true);
            let ln = LayerNorm::<$h>::from_weights(w.clone(), b.clone(), 1e-5)?;
            let rms = RmsNorm::<$h>::from_weights(w, None, 1e-6)?;
            // forward == forward_slice == forward_into; stats in f32 match the slice form.
            let (y, st) = ln.forward_with_stats(&x)?;
            assert_eq!(y, ln.forward(&x)?);
            let (mut ys, mut mean, mut rstd) = (vec![$h::ZERO; r * d], vec![0.0f32; r], vec![0.0f32; r]);
            ln.forward_slice_with_stats(&xv, &mut ys, &mut mean, &mut rstd)?;
            assert_eq!(y.as_slice(), Some(&ys[..]));
            assert_eq!(
                (st.mean.to_vec(), st.rstd.to_vec()),
                (mean.clone(), rstd.clone())
            );
            let (yr, sr) = rms.forward_with_stats(&x)?;
            let mut into = Array2::from_elem((r, d), $h::ZERO);
            rms.forward_into(&x, &mut into)?;
            assert_eq!(yr, into);
            assert_eq!(sr.rrms.len(), r);
            // Any layout: a transposed copy viewed back, and a 3-d reshape.
            let xt = x.t().to_owned();
            assert_eq!(ln.forward(&xt.t())?, y);
            let x3 = x.clone().into_shape_with_order((2, 3, d)).expect("shape");
            let y3 = ln.forward(&x3)?;
            assert_eq!(
                y3.index_axis(Axis(0), 1).as_slice(),
                y.slice(ndarray::s![3.., ..]).as_slice()
            );
            // Fused: h rounds like `half`'s `+`, y is the norm of that h, every form.
            let res = Array2::from_shape_vec((r, d), rows::<$h>(&mut rng, r * d, 0.0, 3.0)).expect("shape");
            let (h, yf) = ln.add_forward(&x, &res)?;
            assert_eq!(h, &x + &res);
            assert_eq!(yf, ln.forward(&h)?);
            let mut stream = res.clone();
            let mut yi = Array2::from_elem((r, d), $h::ZERO);
            rms.add_forward_inplace(&x, &mut stream, &mut yi)?;
            assert_eq!((&stream, &yi), (&h, &rms.forward(&h)?));
            let (mut h2, mut y2) = (
                Array2::from_elem((d, r), $h::ZERO),
                Array2::from_elem((d, r), $h::ZERO),
            );
            // Strided outputs take the unfused route: the same bits.
            ln.add_forward_into(
                &x,
                &res,
                &mut h2.view_mut().reversed_axes(),
                &mut y2.view_mut().reversed_axes(),
            )?;
            assert_eq!((h2.t(), y2.t()), (h.view(), yf.view()));
            let (mut hs, mut ysl) = (vec![$h::ZERO; r * d], vec![$h::ZERO; r * d]);
            ln.add_forward_slice(&xv, res.as_slice().expect("contiguous"), &mut hs, &mut ysl)?;
            assert_eq!(
                (&hs[..], &ysl[..]),
                (h.as_slice().expect("c"), yf.as_slice().expect("c"))
            );
            // Typed errors, as for f32.
            assert_eq!(
                ln.forward(&Array2::from_elem((2, 3), $h::ZERO))
                    .unwrap_err(),
                NormError::FeatureMismatch {
                    shape: vec![2, 3],
                    got: 3,
                    dim: d
                }
            );
            assert!(matches!(
                ln.forward_slice(&xv[..5], &mut ys[..5]),
                Err(NormError::SliceLen { len: 5, .. })
            ));
            assert!(matches!(
                ln.forward_slice_with_stats(&xv, &mut ys, &mut mean[..1], &mut vec![0.0; r]),
                Err(NormError::StatsShape { name: "mean", .. })
            ));
            assert!(matches!(
                ln.add_forward(&x, &Array2::from_elem((r, d + 1), $h::ZERO)),
                Err(NormError::FeatureMismatch { .. }) | Err(NormError::ResidualShape { .. })
            ));
            assert!(matches!(
                LayerNorm::<$h>::new(4)?.with_eps(-1.0),
                Err(NormError::InvalidEps { .. })
            ));
            assert_eq!(LayerNorm::<$h>::new(4)?.eps(), 1e-5f32);
            Ok(())
        }
    };
}

api_checks!(bf16_api_forms_agree_and_errors_are_typed, bf16);
api_checks!(f16_api_forms_agree_and_errors_are_typed, f16);

#[test]
fn fused_h_is_the_correctly_rounded_sum_on_every_path_and_store() {
    let mut rng = Rng::new(12);
    let d = 200;
    fn go<H: H16>(rng: &mut Rng, d: usize) {
        // Exponents far apart and close, so the sum's rounding matters.
        let x = rows::<H>(rng, 4 * d, 0.0, 100.0);
        let r: Vec<H> = (0..4 * d)
            .map(|i| H::from_f64(rng.normal() * [1e-3, 1.0, 1e3][i % 3]))
            .collect();
        let ln = LayerNorm::<H>::new(d).expect("d > 0");
        for how in ForcedPath::all() {
            for stores in [
                norm_core::simd::Stores::Cached,
                norm_core::simd::Stores::Streaming,
            ] {
                let how = how.with_stores(stores);
                let (mut h, mut y) = (vec![H::default(); 4 * d], vec![H::default(); 4 * d]);
                let mut res = r.clone();
                how.layer_norm_add_slice(&ln, &x, &mut res, Some(&mut h), &mut y)
                    .expect("lengths");
                for i in 0..4 * d {
                    let exact = x[i].to_acc() as f64 + r[i].to_acc() as f64;
                    assert_eq!(
                        h[i].bits(),
                        H::from_f64(exact).bits(),
                        "{} {:?}",
                        H::NAME,
                        how.path()
                    );
                }
                let mut y2 = vec![H::default(); 4 * d];
                let (mut m, mut s) = (vec![0.0f32; 4], vec![0.0f32; 4]);
                how.layer_norm_slice(&ln, &h, &mut y2, &mut m, &mut s)
                    .expect("lengths");
                assert_eq!(y, y2);
                // In place: the residual becomes h.
                how.layer_norm_add_slice(&ln, &x, &mut res, None, &mut y2)
                    .expect("lengths");
                assert_eq!((res, &y2), (h, &y));
            }
        }
    }
    go::<bf16>(&mut rng, d);
    go::<f16>(&mut rng, d);
}

/// The streaming fused rows write `h` in their write pass, streamed where `h` and `y` sit
/// at the same offset from a cache line: carve both from one buffer so that they do (and,
/// shifted by one element, so that they do not), and check `h` and `y` against the
/// plain-store call, with and without a bias.
#[test]
fn streamed_fused_h_matches_plain_stores_at_shared_and_different_alignments() {
    fn go<H: H16>(rng: &mut Rng) {
        let d = 256;
        let n = 5 * d;
        let x = rows::<H>(rng, n, 0.5, 2.0);
        let r: Vec<H> = (0..n).map(|_| H::from_f64(rng.normal())).collect();
        let (w, b) = params::<H>(rng, d, true);
        let ln = LayerNorm::from_weights(w, b, 1e-5).expect("valid");
        for how in ForcedPath::all() {
            let (mut h0, mut y0) = (vec![H::default(); n], vec![H::default(); n]);
            how.with_stores(norm_core::simd::Stores::Cached)
                .layer_norm_add_slice(&ln, &x, &mut r.clone(), Some(&mut h0), &mut y0)
                .expect("lengths");
            // n + 32 elements of 2 bytes apart: the same offset from a cache line.
            for skew in [0, 1] {
                let mut buf = vec![H::default(); 2 * n + 64];
                let (a, rest) = buf.split_at_mut(n + 32 + skew);
                let (h, y) = (&mut a[..n], &mut rest[..n]);
                how.with_stores(norm_core::simd::Stores::Streaming)
                    .layer_norm_add_slice(&ln, &x, &mut r.clone(), Some(h), y)
                    .expect("lengths");
                let bits = |v: &[H]| v.iter().map(|e| e.bits()).collect::<Vec<_>>();
                assert_eq!(
                    bits(&buf[..n]),
                    bits(&h0),
                    "{} {:?} skew {skew}: h",
                    H::NAME,
                    how.path()
                );
                assert_eq!(
                    bits(&buf[n + 32 + skew..2 * n + 32 + skew]),
                    bits(&y0),
                    "{} {:?} skew {skew}: y",
                    H::NAME,
                    how.path()
                );
            }
        }
    }
    let mut rng = Rng::new(31);
    go::<bf16>(&mut rng);
    go::<f16>(&mut rng);
}

#[test]
fn results_do_not_depend_on_threads_or_stores() {
    // 512 KiB of bf16: above the parallel threshold.
    let (r, d) = (512, 512);
    let mut rng = Rng::new(13);
    let x = Array3::from_shape_vec((2, r / 2, d), rows::<bf16>(&mut rng, r * d, 1.0, 3.0)).expect("shape");
    let ln = LayerNorm::<bf16>::new(d).expect("d > 0");
    let rms = RmsNorm::<f16>::new(d).expect("d > 0");
    let xf = x.mapv(|v| f16::from_f32(v.to_f32()));
    let run = |t: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .expect("pool");
        pool.install(|| {
            (
                ln.forward_with_stats(&x).expect("ok"),
                rms.forward(&xf).expect("ok"),
            )
        })
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(3));
    let flat = x.as_slice().expect("contiguous");
    for how in ForcedPath::all() {
        let mut a = vec![bf16::ZERO; r * d];
        let (mut m, mut s) = (vec![0.0f32; r], vec![0.0f32; r]);
        how.with_stores(norm_core::simd::Stores::Cached)
            .layer_norm_slice(&ln, flat, &mut a, &mut m, &mut s)
            .expect("lengths");
        // Streamed, into an output one element off a cache-line boundary.
        let mut c = vec![bf16::ZERO; r * d + 1];
        how.with_stores(norm_core::simd::Stores::Streaming)
            .layer_norm_slice(&ln, flat, &mut c[1..], &mut m, &mut s)
            .expect("lengths");
        let c = &c[1..];
        assert_eq!(&a[..], c, "{:?}", how.path());
        // The detected path gives the public entry points' bits; the other paths sum in
        // another order, so an output may round to a neighbouring bf16 (measured: one of
        // 262144), never further.
        let o = one.0.0.as_slice().expect("contiguous");
        if how.path() == KernelPath::detected() {
            assert_eq!(&a[..], o);
        }
        // Bit patterns mapped to a line on which neighbouring bf16 values are neighbours
        // (−0 and +0 both at 0), so the distance counts representable steps.
        let line = |v: bf16| {
            let b = i32::from(v.to_bits());
            if b & 0x8000 != 0 { -(b & 0x7fff) } else { b }
        };
        for (p, q) in a.iter().zip(o) {
            let ulps = (line(*p) - line(*q)).abs();
            assert!(ulps <= 1, "{:?}: {p} against {q}", how.path());
        }
    }
}

/// NaN, infinite and huge weights and biases (quiet and signalling bf16 NaNs with their
/// payloads, ±∞, an ∞ weight on an element equal to its row's mean, so `0 · ∞`): every
/// output, NaNs included, has exactly the bits of the f32 kernel's output on the same
/// path rounded by `half`'s general conversion, plain and fused, on every path. The
/// vector stores of the half kernels skip the bf16 NaN fix-up for computed values
/// (`Simd::store_half_as`); this pins that they round every NaN they meet the same.
#[test]
fn non_finite_weights_round_every_nan_like_the_general_conversion() {
    let d = 33;
    // Symmetric rows around 0 and around 5: element 16 equals the mean exactly.
    let x32: Vec<f32> = (0..2 * d)
        .map(|i| (i % d) as f32 - 16.0 + if i < d { 0.0 } else { 5.0 })
        .collect();
    let r32: Vec<f32> = (0..2 * d).map(|i| 0.25 * ((i * 7) % 5) as f32 - 0.5).collect();
    let specials = [0x7fc0u16, 0x7f81, 0xffa5, 0x7f80, 0xff80, 0x7f7f, 0x7fd3];
    let mut w: Vec<bf16> = (0..d).map(|i| bf16::from_f32(0.5 + 0.1 * i as f32)).collect();
    let mut b: Vec<bf16> = (0..d).map(|i| bf16::from_f32(0.01 * i as f32 - 0.1)).collect();
    for (k, &s) in specials.iter().enumerate() {
        w[1 + 3 * k] = bf16::from_bits(s);
        b[2 + 3 * k] = bf16::from_bits(specials[(k + 3) % specials.len()]);
    }
    w[16] = bf16::from_bits(0x7f80);
    let x: Vec<bf16> = x32.iter().map(|&v| bf16::from_f32(v)).collect();
    let r: Vec<bf16> = r32.iter().map(|&v| bf16::from_f32(v)).collect();
    let wide = |v: &[bf16]| v.iter().map(|h| h.to_f32()).collect::<Vec<f32>>();
    let round = |v: &[f32]| {
        v.iter()
            .map(|&f| bf16::from_f32(f).to_bits())
            .collect::<Vec<u16>>()
    };
    let bits = |v: &[bf16]| v.iter().map(|h| h.to_bits()).collect::<Vec<u16>>();
    for p in ForcedPath::all() {
        for bias in [true, false] {
            let bb = bias.then(|| b.clone());
            let ln = LayerNorm::<bf16>::from_weights(w.clone(), bb.clone(), 1e-5).unwrap();
            let rms = RmsNorm::<bf16>::from_weights(w.clone(), bb.clone(), 1e-6).unwrap();
            let ln32 = LayerNorm::<f32>::from_weights(wide(&w), bb.as_deref().map(wide), 1e-5).unwrap();
            let rms32 = RmsNorm::<f32>::from_weights(wide(&w), bb.as_deref().map(wide), 1e-6).unwrap();
            let n = 2 * d;
            let (mut y, mut h) = (vec![bf16::ZERO; n], vec![bf16::ZERO; n]);
            let (mut y32, mut m, mut s) = (vec![0.0f32; n], vec![0.0f32; 2], vec![0.0f32; 2]);
            let what = format!("{:?} bias={bias}", p.path());
            p.layer_norm_slice(&ln, &x, &mut y, &mut m, &mut s).unwrap();
            p.layer_norm_slice(&ln32, &wide(&x), &mut y32, &mut m, &mut s)
                .unwrap();
            assert_eq!(bits(&y), round(&y32), "LayerNorm {what}");
            assert!(y.iter().any(|v| v.is_nan()), "the case has NaN outputs");
            p.rms_norm_slice(&rms, &x, &mut y, &mut s).unwrap();
            p.rms_norm_slice(&rms32, &wide(&x), &mut y32, &mut s).unwrap();
            assert_eq!(bits(&y), round(&y32), "RmsNorm {what}");
            // Fused: h = x + r rounded, then the norm of the rounded h (as the f32 kernel
            // on the widened h).
            let mut rr = r.clone();
            p.layer_norm_add_slice(&ln, &x, &mut rr, Some(&mut h), &mut y)
                .unwrap();
            p.layer_norm_slice(&ln32, &wide(&h), &mut y32, &mut m, &mut s)
                .unwrap();
            assert_eq!(bits(&y), round(&y32), "fused LayerNorm {what}");
            p.rms_norm_add_slice(&rms, &x, &mut rr, None, &mut y).unwrap();
            p.rms_norm_slice(&rms32, &wide(&rr), &mut y32, &mut s).unwrap();
            assert_eq!(bits(&y), round(&y32), "fused RmsNorm in place {what}");
        }
    }
}
