//! Every `NormError` variant, produced through the public API by a table of calls, each
//! checked for its variant, the shapes or values its message names, and that nothing
//! was written to the caller's buffers.

use ndarray::{Array0, Array2, ArrayD, IxDyn, arr0};
use norm_core::{LayerNorm, NormError, RmsNorm};

/// `r` must be an error accepted by `want`, whose message contains every fragment.
fn check<T: std::fmt::Debug>(
    what: &str,
    r: Result<T, NormError>,
    want: impl Fn(&NormError) -> bool,
    fragments: &[&str],
) {
    let err = match r {
        Ok(v) => panic!("{what}: expected an error, got Ok({v:?})"),
        Err(e) => e,
    };
    assert!(want(&err), "{what}: wrong variant {err:?}");
    let msg = err.to_string();
    for f in fragments {
        assert!(msg.contains(f), "{what}: message {msg:?} lacks {f:?}");
    }
}

const SENTINEL: f32 = 7.25;

fn untouched(what: &str, buf: &[f32]) {
    assert!(
        buf.iter().all(|&v| v == SENTINEL),
        "{what}: buffer written on error"
    );
}

#[test]
fn zero_dim() {
    use NormError::ZeroDim;
    check("LN new(0)", LayerNorm::<f32>::new(0), |e| *e == ZeroDim, &["0"]);
    check("RMS new(0)", RmsNorm::<f64>::new(0), |e| *e == ZeroDim, &["0"]);
    check(
        "LN empty weight",
        LayerNorm::<f32>::from_weights(vec![], None, 1e-5),
        |e| *e == ZeroDim,
        &[],
    );
    check(
        "RMS empty weight",
        RmsNorm::<f64>::from_weights(vec![], Some(vec![]), 0.0),
        |e| *e == ZeroDim,
        &[],
    );
}

#[test]
fn weight_and_bias_lengths() {
    let wl = |w, d| move |e: &NormError| *e == NormError::WeightLen { weight: w, dim: d };
    let bl = |b, d| move |e: &NormError| *e == NormError::BiasLen { bias: b, dim: d };
    let ln = LayerNorm::<f32>::new(4).expect("d");
    let rms = RmsNorm::<f64>::new(4).expect("d");
    check(
        "LN with_weight 3",
        ln.clone().with_weight(vec![1.0; 3]),
        wl(3, 4),
        &["3", "4"],
    );
    check(
        "RMS with_weight 5",
        rms.clone().with_weight(vec![1.0; 5]),
        wl(5, 4),
        &["5", "4"],
    );
    check(
        "LN with_bias 5",
        ln.clone().with_bias(vec![0.0; 5]),
        bl(5, 4),
        &["5", "4"],
    );
    check(
        "RMS with_bias 0",
        rms.clone().with_bias(vec![]),
        bl(0, 4),
        &["0", "4"],
    );
    check(
        "LN from_weights",
        LayerNorm::<f32>::from_weights(vec![1.0; 3], Some(vec![0.0; 2]), 1e-5),
        bl(2, 3),
        &["2", "3"],
    );
    check(
        "RMS from_weights",
        RmsNorm::<f64>::from_weights(vec![1.0; 2], Some(vec![0.0; 7]), 1e-6),
        bl(7, 2),
        &["7", "2"],
    );
    // The right lengths are accepted and used.
    let ln = ln
        .with_weight(vec![2.0; 4])
        .expect("same length")
        .with_bias(vec![1.0; 4])
        .expect("same length");
    assert_eq!(
        (ln.weight(), ln.bias()),
        (&[2.0f32; 4][..], Some(&[1.0f32; 4][..]))
    );
    let rms = rms.with_bias(vec![0.5; 4]).expect("same length");
    assert_eq!(rms.bias(), Some(&[0.5f64; 4][..]));
}

#[test]
fn invalid_eps() {
    let bad = |e: &NormError| matches!(e, NormError::InvalidEps { .. });
    for eps in [-1.0f32, -1e-30, f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let s = format!("{eps}");
        check(
            "LN with_eps",
            LayerNorm::<f32>::new(3).expect("d").with_eps(eps),
            bad,
            &[&s],
        );
        check(
            "RMS from_weights",
            RmsNorm::<f32>::from_weights(vec![1.0], None, eps),
            bad,
            &[&s],
        );
    }
    check(
        "f64 eps",
        RmsNorm::<f64>::new(3).expect("d").with_eps(-0.5),
        bad,
        &["-0.5"],
    );
    // Zero and huge finite eps are valid.
    assert!(LayerNorm::<f32>::new(3).expect("d").with_eps(0.0).is_ok());
    assert!(RmsNorm::<f64>::new(3).expect("d").with_eps(f64::MAX).is_ok());
    assert_eq!(LayerNorm::<f32>::DEFAULT_EPS, 1e-5);
    assert_eq!(RmsNorm::<f32>::DEFAULT_EPS, 1e-6);
}

#[test]
fn zero_rank() {
    let is = |e: &NormError| *e == NormError::ZeroRank;
    let x: Array0<f32> = arr0(1.0);
    let ln = LayerNorm::<f32>::new(1).expect("d");
    let rms = RmsNorm::<f32>::new(1).expect("d");
    check("LN forward", ln.forward(&x), is, &["0-dimensional"]);
    check("RMS forward", rms.forward(&x), is, &["0-dimensional"]);
    check("LN stats", ln.forward_with_stats(&x), is, &[]);
    check("RMS stats", rms.forward_with_stats(&x), is, &[]);
    let mut out = arr0(SENTINEL);
    check("LN into", ln.forward_into(&x, &mut out), is, &[]);
    check("RMS into", rms.forward_into(&x, &mut out), is, &[]);
    untouched("0-d out", out.as_slice().expect("contiguous"));
    let xd = ArrayD::<f32>::zeros(IxDyn(&[]));
    check("LN dyn 0-d", ln.forward(&xd), is, &[]);
}

#[test]
fn feature_mismatch() {
    let fm = |shape: Vec<usize>, got, dim| {
        move |e: &NormError| {
            *e == NormError::FeatureMismatch {
                shape: shape.clone(),
                got,
                dim,
            }
        }
    };
    let ln = LayerNorm::<f32>::new(4).expect("d");
    let rms = RmsNorm::<f32>::new(4).expect("d");
    let x = Array2::<f32>::zeros((2, 3));
    check(
        "LN (2,3) vs 4",
        ln.forward(&x),
        fm(vec![2, 3], 3, 4),
        &["[2, 3]", "3", "4"],
    );
    check(
        "RMS (2,3) vs 4",
        rms.forward(&x),
        fm(vec![2, 3], 3, 4),
        &["[2, 3]"],
    );
    check("LN stats", ln.forward_with_stats(&x), fm(vec![2, 3], 3, 4), &[]);
    // The last axis of the *view* counts: (3, 4)ᵀ has 3 features.
    check(
        "RMS transposed",
        rms.forward(&Array2::<f32>::zeros((3, 4)).t()),
        fm(vec![4, 3], 3, 4),
        &["[4, 3]"],
    );
    assert!(rms.forward(&Array2::<f32>::zeros((4, 3)).t()).is_ok());
    // A last axis of length 0 is refused (the layer normalizes >= 1 feature).
    let empty_last = Array2::<f32>::zeros((5, 0));
    check(
        "LN (5,0)",
        ln.forward(&empty_last),
        fm(vec![5, 0], 0, 4),
        &["[5, 0]", "0"],
    );
    let mut out = Array2::from_elem((2, 3), SENTINEL);
    check(
        "LN into",
        ln.forward_into(&x, &mut out),
        fm(vec![2, 3], 3, 4),
        &[],
    );
    check(
        "RMS into",
        rms.forward_into(&x, &mut out),
        fm(vec![2, 3], 3, 4),
        &[],
    );
    untouched("feature mismatch out", out.as_slice().expect("contiguous"));
}

#[test]
fn output_shape() {
    let os = |i: Vec<usize>, o: Vec<usize>| {
        move |e: &NormError| {
            *e == NormError::OutputShape {
                input: i.clone(),
                output: o.clone(),
            }
        }
    };
    let ln = LayerNorm::<f32>::new(4).expect("d");
    let rms = RmsNorm::<f32>::new(4).expect("d");
    let x = Array2::<f32>::zeros((2, 4));
    for shape in [(4, 2), (3, 4), (2, 5), (0, 4)] {
        let mut out = Array2::from_elem(shape, SENTINEL);
        let want = vec![shape.0, shape.1];
        let msg = format!("{want:?}");
        check(
            "LN into",
            ln.forward_into(&x, &mut out),
            os(vec![2, 4], want.clone()),
            &[&msg, "[2, 4]"],
        );
        check(
            "RMS into",
            rms.forward_into(&x, &mut out),
            os(vec![2, 4], want),
            &[&msg],
        );
        untouched("wrong-shape out", out.as_slice().expect("contiguous"));
    }
    // Same element count, different rank (dynamic dimension).
    let xd = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
    let mut out = ArrayD::from_elem(IxDyn(&[8]), SENTINEL);
    check(
        "rank differs",
        ln.forward_into(&xd, &mut out),
        os(vec![2, 4], vec![8]),
        &["[8]"],
    );
    untouched("rank-mismatch out", out.as_slice().expect("contiguous"));
}

#[test]
fn slice_lengths() {
    let ln = LayerNorm::<f32>::new(3).expect("d");
    let rms = RmsNorm::<f32>::new(3).expect("d");
    let sl = |len, dim| move |e: &NormError| *e == NormError::SliceLen { len, dim };
    let bl = |got, expected| {
        move |e: &NormError| {
            *e == NormError::BufferLen {
                name: "out",
                got,
                expected,
            }
        }
    };
    let x = [1.0f32; 7];
    let mut out = [SENTINEL; 7];
    check("LN 7 % 3", ln.forward_slice(&x, &mut out), sl(7, 3), &["7", "3"]);
    check(
        "RMS 7 % 3",
        rms.forward_slice(&x, &mut out),
        sl(7, 3),
        &["7", "3"],
    );
    let (mut m, mut r) = ([SENTINEL; 2], [SENTINEL; 2]);
    check(
        "LN stats 7 % 3",
        ln.forward_slice_with_stats(&x, &mut out, &mut m, &mut r),
        sl(7, 3),
        &[],
    );
    check(
        "RMS stats 7 % 3",
        rms.forward_slice_with_stats(&x, &mut out, &mut r),
        sl(7, 3),
        &[],
    );
    untouched("out", &out);

    let x = [1.0f32; 6];
    let mut short = [SENTINEL; 5];
    check(
        "LN out 5 vs 6",
        ln.forward_slice(&x, &mut short),
        bl(5, 6),
        &["out", "5", "6"],
    );
    check(
        "RMS out 5 vs 6",
        rms.forward_slice(&x, &mut short),
        bl(5, 6),
        &["out"],
    );
    let mut long = [SENTINEL; 9];
    check("LN out 9 vs 6", ln.forward_slice(&x, &mut long), bl(9, 6), &["9"]);
    check(
        "LN stats out",
        ln.forward_slice_with_stats(&x, &mut long, &mut m, &mut r),
        bl(9, 6),
        &[],
    );
    untouched("short", &short);
    untouched("long", &long);
}

#[test]
fn stats_lengths() {
    let ln = LayerNorm::<f32>::new(3).expect("d");
    let rms = RmsNorm::<f32>::new(3).expect("d");
    let ss = |name, got: usize, rows: usize| {
        move |e: &NormError| {
            *e == NormError::StatsShape {
                name,
                got: vec![got],
                expected: vec![rows],
            }
        }
    };
    let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // two rows
    let mut out = [SENTINEL; 6];
    let (mut one, mut two, mut three) = ([SENTINEL; 1], [SENTINEL; 2], [SENTINEL; 3]);
    check(
        "LN mean 1",
        ln.forward_slice_with_stats(&x, &mut out, &mut one, &mut two),
        ss("mean", 1, 2),
        &["mean", "[1]", "[2]"],
    );
    check(
        "LN rstd 3",
        ln.forward_slice_with_stats(&x, &mut out, &mut two, &mut three),
        ss("rstd", 3, 2),
        &["rstd", "[3]"],
    );
    check(
        "RMS rrms 1",
        rms.forward_slice_with_stats(&x, &mut out, &mut one),
        ss("rrms", 1, 2),
        &["rrms"],
    );
    check(
        "RMS rrms 3",
        rms.forward_slice_with_stats(&x, &mut out, &mut three),
        ss("rrms", 3, 2),
        &[],
    );
    untouched("out", &out);
    untouched("one", &one);
    untouched("three", &three);
    // Zero rows want zero statistics.
    check(
        "RMS empty",
        rms.forward_slice_with_stats(&[], &mut [], &mut one),
        ss("rrms", 1, 0),
        &[],
    );
    assert!(rms.forward_slice_with_stats(&[], &mut [], &mut []).is_ok());
}

/// Odd but valid inputs never panic: a broadcast (stride-0) view, a single feature,
/// a weight of zeros, subnormal eps.
#[test]
fn odd_valid_inputs() {
    let row = ndarray::Array1::<f32>::linspace(-1.0, 1.0, 5);
    let b = row.broadcast((3, 5)).expect("broadcastable");
    let ln = LayerNorm::<f32>::new(5).expect("d");
    let y = ln.forward(&b).expect("broadcast view");
    for r in 0..3 {
        assert_eq!(y.row(r), y.row(0));
    }
    let col = ndarray::Array1::<f32>::from_elem(1, 3.0);
    let c = col.broadcast((4, 5)).expect("stride-0 rows");
    let y = ln.forward(&c).expect("constant broadcast rows");
    assert!(
        y.iter().all(|&v| v == 0.0),
        "constant rows with eps > 0 give beta = 0"
    );
    let zero_w = LayerNorm::from_weights(vec![0.0f32; 5], None, f32::from_bits(1)).expect("valid");
    assert!(
        zero_w
            .forward(&row)
            .expect("zero weight")
            .iter()
            .all(|&v| v == 0.0)
    );
}

/// The public reference twins make the same checks as the norms instead of panicking on
/// an index or silently averaging a partial row.
#[test]
fn reference_twins_reject_bad_input() {
    use norm_core::reference::{layer_norm_reference, rms_norm_reference};
    let x = [1.0f32, 2.0, 3.0, 4.0];
    check(
        "LN ref empty weight",
        layer_norm_reference(&x, &[], None, 1e-5),
        |e| *e == NormError::ZeroDim,
        &["0"],
    );
    check(
        "RMS ref short bias",
        rms_norm_reference(&x, &[1.0, 1.0], Some(&[0.0][..]), 1e-6),
        |e| *e == NormError::BiasLen { bias: 1, dim: 2 },
        &["1", "2"],
    );
    check(
        "LN ref partial row",
        layer_norm_reference(&x, &[1.0; 3], None, 1e-5),
        |e| *e == NormError::SliceLen { len: 4, dim: 3 },
        &["4", "3"],
    );
    check(
        "RMS ref NaN eps",
        rms_norm_reference(&x, &[1.0; 2], None, f32::NAN),
        |e| matches!(e, NormError::InvalidEps { eps } if eps.is_nan()),
        &["NaN"],
    );
    // Zero rows are not an error.
    let (y, m, r) = layer_norm_reference::<f64>(&[], &[1.0; 3], None, 0.0).expect("zero rows");
    assert!(y.is_empty() && m.is_empty() && r.is_empty());
}
