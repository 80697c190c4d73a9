//! Quick end-to-end checks of the public API against the f64 reference twins.
use ndarray::{Array2, array};
use norm_core::reference::{layer_norm_reference, rms_norm_reference};
use norm_core::{LayerNorm, NormError, RmsNorm};

#[test]
fn offset_rows_match_reference() {
    let d = 512;
    let x: Vec<f32> = (0..4 * d)
        .map(|i| 1e4 + ((i * 7919 % 1000) as f32 / 500.0 - 1.0))
        .collect();
    let ln = LayerNorm::<f32>::new(d).unwrap();
    let mut y = vec![0.0; x.len()];
    ln.forward_slice(&x, &mut y).unwrap();
    let (r, _, _) = layer_norm_reference(&x, ln.weight(), ln.bias(), ln.eps());
    let err = y
        .iter()
        .zip(&r)
        .map(|(a, b)| (*a as f64 - b).abs())
        .fold(0.0, f64::max);
    assert!(err < 1e-5, "max err {err}");
}

#[test]
fn huge_and_tiny_rows() {
    for scale in [1e30f32, 1e-30] {
        let x: Vec<f32> = (0..64).map(|i| scale * ((i % 7) as f32 - 3.0)).collect();
        let ln = LayerNorm::<f32>::new(64).unwrap().with_eps(0.0).unwrap();
        let rms = RmsNorm::<f32>::new(64).unwrap().with_eps(0.0).unwrap();
        let mut y = vec![0.0; 64];
        ln.forward_slice(&x, &mut y).unwrap();
        let (r, _, _) = layer_norm_reference(&x, ln.weight(), None, 0.0);
        let err = y
            .iter()
            .zip(&r)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "ln scale {scale} err {err}");
        rms.forward_slice(&x, &mut y).unwrap();
        let (r, _) = rms_norm_reference(&x, rms.weight(), None, 0.0);
        let err = y
            .iter()
            .zip(&r)
            .map(|(a, b)| (*a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "rms scale {scale} err {err}");
    }
}

#[test]
fn transposed_view_and_errors() {
    let x = Array2::<f64>::from_shape_fn((6, 3), |(i, j)| (i * 3 + j) as f64 * 0.37 - 1.0);
    let ln = LayerNorm::<f64>::new(6).unwrap();
    let a = ln.forward(&x.t()).unwrap();
    let b = ln.forward(&x.t().to_owned()).unwrap();
    assert_eq!(a, b);
    assert!(matches!(
        ln.forward(&x),
        Err(NormError::FeatureMismatch { got: 3, dim: 6, .. })
    ));
    let c = LayerNorm::<f64>::new(2).unwrap().with_eps(0.0).unwrap();
    let y = c.forward(&array![[1.0, 1.0], [1.0, 3.0]]).unwrap();
    assert!(y[[0, 0]].is_nan() && y[[1, 0]] == -1.0);
}
