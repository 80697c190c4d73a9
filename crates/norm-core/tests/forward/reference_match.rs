//! The fast kernels against their f64 reference twins over random shapes (ranks 1–4,
//! including zero-row batches), input and output layouts, magnitudes, offsets, eps and
//! affine parameters (proptest), plus a fixed table of shapes that cross the kernels'
//! 16-lane chunking boundaries.

use ndarray::IxDyn;
use norm_core::Float;
use proptest::prelude::*;

use crate::common::{KINDS, LAYOUTS, Laid, Norm, Rng, check_against_reference, tol_for};

/// One random case: everything proptest shrinks over; the values come from `seed`.
#[derive(Debug, Clone)]
struct Case {
    kind: usize,
    outer: Vec<usize>,
    d: usize,
    layout: usize,
    log10_scale: i32,
    offset_ratio: f64,
    eps: f64,
    bias: bool,
    seed: u64,
}

fn case(log10_range: std::ops::RangeInclusive<i32>) -> impl Strategy<Value = Case> {
    (
        0..2usize,
        prop::collection::vec(0..5usize, 0..=3),
        prop_oneof![1..=40usize, 41..=300usize],
        0..LAYOUTS.len(),
        log10_range,
        prop::sample::select(vec![0.0, 1.0, -3.0, 100.0, 1e4]),
        prop::sample::select(vec![0.0, 1e-6, 1e-5, 1e-2, 1.0]),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(kind, outer, d, layout, log10_scale, offset_ratio, eps, bias, seed)| Case {
                kind,
                outer,
                d,
                layout,
                log10_scale,
                offset_ratio,
                eps,
                bias,
                seed,
            },
        )
}

/// Builds the input and the norm of a case and runs the full check.
fn run_case<F: Float>(c: &Case) {
    let mut rng = Rng::new(c.seed);
    let mut shape = c.outer.clone();
    shape.push(c.d);
    let n: usize = shape.iter().product();
    let scale = 10f64.powi(c.log10_scale);
    // Eps scaled with the data so that it matters at every magnitude, as in real use.
    // (Clamped: a huge eps is valid, an infinite one is not.)
    let eps = F::from_f64_round(c.eps * scale * scale).min(F::max_value());
    let norm = Norm::random(KINDS[c.kind], c.d, eps, c.bias, &mut rng);
    let xs = rng.normals::<F>(n, c.offset_ratio * scale, scale);
    let laid = Laid::new(&shape, &xs, LAYOUTS[c.layout]);
    let x = laid.view();
    assert_eq!(x.shape(), &shape[..]);
    // The f64 reference sums the raw row: for f64 inputs its own error grows with
    // |offset|/spread. For f32 inputs it is exact to far below f32 precision.
    let reference_err = if F::epsilon().to_f64_exact() < 1e-10 {
        1.0 + c.offset_ratio.abs()
    } else {
        1.0
    };
    check_against_reference(&norm, &x, tol_for::<F>(c.d) * reference_err);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// f32 over the whole exponent range the type offers for a row with an offset:
    /// squares overflow above ~1e19 and underflow below ~1e-19, both rescued.
    #[test]
    fn f32_fast_matches_reference(c in case(-36..=30)) {
        run_case::<f32>(&c);
    }

    /// f64 over the range in which the f64 reference itself stays exact.
    #[test]
    fn f64_fast_matches_reference(c in case(-100..=100)) {
        run_case::<f64>(&c);
    }
}

/// Row lengths around the 16-lane chunk size and common model widths, every layout.
#[test]
fn fixed_shapes_every_layout() {
    let shapes: &[&[usize]] = &[
        &[1],
        &[15],
        &[16],
        &[17],
        &[3, 31],
        &[2, 32],
        &[5, 33],
        &[4, 64],
        &[2, 3, 127],
        &[2, 2, 2, 129],
        &[3, 768],
        &[2, 4096],
    ];
    let mut rng = Rng::new(7);
    for &shape in shapes {
        let d = *shape.last().expect("rank >= 1");
        let n: usize = shape.iter().product();
        for kind in KINDS {
            for layout in LAYOUTS {
                let x32 = rng.normals::<f32>(n, 0.5, 2.0);
                let norm = Norm::random(kind, d, 1e-5f32, true, &mut rng);
                check_against_reference(&norm, &Laid::new(shape, &x32, layout).view(), tol_for::<f32>(d));
                let x64 = rng.normals::<f64>(n, 0.5, 2.0);
                let norm = Norm::random(kind, d, 1e-5f64, false, &mut rng);
                check_against_reference(&norm, &Laid::new(shape, &x64, layout).view(), tol_for::<f64>(d));
            }
        }
    }
}

/// Static-dimension arrays (not only `IxDyn`) give statistics of the right rank.
#[test]
fn static_dims_give_stats_of_one_lower_rank() {
    let ln = norm_core::LayerNorm::<f32>::new(8).expect("dim 8");
    let rms = norm_core::RmsNorm::<f32>::new(8).expect("dim 8");
    let x1 = ndarray::Array1::<f32>::linspace(-1.0, 2.0, 8);
    let (_, s) = ln.forward_with_stats(&x1).expect("rank 1");
    assert_eq!(s.mean.shape(), &[] as &[usize]);
    assert_eq!(s.rstd.ndim(), 0);
    let x3 = ndarray::Array3::<f32>::from_shape_fn((2, 3, 8), |(b, l, d)| (b * 5 + l * 3 + d) as f32 * 0.25);
    let (y, s) = rms.forward_with_stats(&x3).expect("rank 3");
    assert_eq!(y.shape(), &[2, 3, 8]);
    assert_eq!(s.rrms.shape(), &[2, 3]);
    let x4 = ndarray::Array4::<f32>::zeros((1, 2, 3, 8));
    let (_, s) = ln.forward_with_stats(&x4).expect("rank 4");
    assert_eq!(s.mean.shape(), &[1, 2, 3]);
    // A dynamic-rank stats array has the same shape.
    let (_, s) = ln.forward_with_stats(&x4.view().into_dyn()).expect("rank 4 dyn");
    assert_eq!(s.mean.raw_dim(), IxDyn(&[1, 2, 3]));
}
