//! Hidden test and benchmark hooks: run the slice kernels on a chosen [`KernelPath`]
//! instead of the detected one, so every path the CPU supports can be checked against
//! the reference twins and timed side by side. Not part of the stable API.

use crate::fused::check_add_slices;
use crate::kernels::{Kind, Layer, Rms};
use crate::params::Affine;
use crate::simd::{Path, Stores};
use crate::{Element, KernelPath, LayerNorm, NormError, RmsNorm};

/// A kernel path this CPU supports; the only way to force one.
///
/// # Example
/// ```
/// use norm_core::{KernelPath, LayerNorm};
/// use norm_core::dispatch::ForcedPath;
///
/// let ln = LayerNorm::<f32>::new(3)?;
/// let x = [1.0f32, 2.0, 4.0];
/// let (mut mean, mut rstd) = ([0.0f32], [0.0f32]);
/// let mut ys = Vec::new();
/// for p in ForcedPath::all() {
///     let mut y = [0.0f32; 3];
///     p.layer_norm_slice(&ln, &x, &mut y, &mut mean, &mut rstd)?;
///     ys.push(y);
/// }
/// assert_eq!(ys.len(), KernelPath::available().len());
/// assert!(ys.iter().all(|y| (y[0] - ys[0][0]).abs() < 1e-6));
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForcedPath(Path, Stores);

impl ForcedPath {
    /// `path`, if this CPU supports it.
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, dispatch::ForcedPath};
    ///
    /// assert!(ForcedPath::new(KernelPath::Portable).is_some());
    /// assert_eq!(ForcedPath::new(KernelPath::Avx512).is_some(), KernelPath::Avx512.is_available());
    /// ```
    pub fn new(path: KernelPath) -> Option<Self> {
        Path::new(path).map(|p| ForcedPath(p, Stores::Auto))
    }

    /// The path the public functions use on this CPU ([`KernelPath::detected`]), with
    /// stores chosen by size.
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, dispatch::ForcedPath, simd::Stores};
    ///
    /// let p = ForcedPath::detected();
    /// assert_eq!((p.path(), p.stores()), (KernelPath::detected(), Stores::Auto));
    /// ```
    pub fn detected() -> Self {
        ForcedPath(Path::detected(), Stores::Auto)
    }

    /// Every path this CPU supports, slowest first.
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, dispatch::ForcedPath};
    ///
    /// let paths: Vec<KernelPath> = ForcedPath::all().into_iter().map(|p| p.path()).collect();
    /// assert_eq!(paths, KernelPath::available());
    /// ```
    pub fn all() -> Vec<Self> {
        KernelPath::available()
            .into_iter()
            .filter_map(Self::new)
            .collect()
    }

    /// The path this forces.
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).map(|p| p.path());
    /// assert_eq!(p, Some(KernelPath::Portable));
    /// ```
    pub fn path(self) -> KernelPath {
        self.0.get()
    }

    /// The checked path, for running a [`SimdOp`](crate::simd::SimdOp) on it with
    /// [`run_on`](crate::simd::run_on) (how norm-autograd's backward kernels take a
    /// forced path).
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).ok_or("portable runs everywhere")?;
    /// assert_eq!(p.simd_path().get(), KernelPath::Portable);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn simd_path(self) -> Path {
        self.0
    }

    /// How this forces outputs to be stored.
    ///
    /// # Example
    /// ```
    /// use norm_core::{dispatch::ForcedPath, simd::Stores};
    ///
    /// let p = ForcedPath::detected().with_stores(Stores::Streaming);
    /// assert!(p.stores().stream::<f32>(1));
    /// ```
    pub fn stores(self) -> Stores {
        self.1
    }

    /// The same path, writing outputs as `stores` says (the norms use
    /// [`Stores::Auto`]: non-temporal stores for outputs of at least
    /// [`stream_min_bytes`](crate::simd::stream_min_bytes)). The stores never change a
    /// value.
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, RmsNorm, dispatch::ForcedPath, simd::Stores};
    ///
    /// let p = ForcedPath::new(KernelPath::detected()).ok_or("the detected path runs")?;
    /// let rms = RmsNorm::<f32>::new(40)?;
    /// let x: Vec<f32> = (0..400).map(|i| (i as f32).sin()).collect();
    /// let (mut a, mut b, mut r) = (vec![0.0f32; 400], vec![0.0f32; 400], vec![0.0f32; 10]);
    /// p.rms_norm_slice(&rms, &x, &mut a, &mut r)?;
    /// p.with_stores(Stores::Streaming).rms_norm_slice(&rms, &x, &mut b, &mut r)?;
    /// assert_eq!(a, b);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_stores(self, stores: Stores) -> Self {
        ForcedPath(self.0, stores)
    }

    /// [`LayerNorm::forward_slice_with_stats`] on this path.
    ///
    /// # Errors
    /// As [`LayerNorm::forward_slice_with_stats`].
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, LayerNorm, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).ok_or("portable runs everywhere")?;
    /// let ln = LayerNorm::<f64>::new(2)?;
    /// let (mut y, mut mean, mut rstd) = ([0.0; 2], [0.0], [0.0]);
    /// p.layer_norm_slice(&ln, &[1.0, 3.0], &mut y, &mut mean, &mut rstd)?;
    /// assert_eq!(mean, [2.0]);
    /// assert!(p.layer_norm_slice(&ln, &[1.0, 3.0], &mut y, &mut [], &mut rstd).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn layer_norm_slice<F: Element>(
        self,
        norm: &LayerNorm<F>,
        x: &[F],
        out: &mut [F],
        mean: &mut [F::Acc],
        rstd: &mut [F::Acc],
    ) -> Result<(), NormError> {
        F::forward_slice::<Layer>(self, &norm.p, x, out, [Some(mean), Some(rstd)])
    }

    /// [`RmsNorm::forward_slice_with_stats`] on this path.
    ///
    /// # Errors
    /// As [`RmsNorm::forward_slice_with_stats`].
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, RmsNorm, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).ok_or("portable runs everywhere")?;
    /// let rms = RmsNorm::<f64>::new(2)?.with_eps(0.0)?;
    /// let (mut y, mut rrms) = ([0.0; 2], [0.0]);
    /// p.rms_norm_slice(&rms, &[3.0, -3.0], &mut y, &mut rrms)?;
    /// assert_eq!(y, [1.0, -1.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rms_norm_slice<F: Element>(
        self,
        norm: &RmsNorm<F>,
        x: &[F],
        out: &mut [F],
        rrms: &mut [F::Acc],
    ) -> Result<(), NormError> {
        F::forward_slice::<Rms>(self, &norm.p, x, out, [Some(rrms), None])
    }

    /// [`LayerNorm::add_forward_slice`] on this path (`residual` overwritten with `h`
    /// when `h` is `None`, like [`LayerNorm::add_forward_slice_inplace`]).
    ///
    /// # Errors
    /// As [`LayerNorm::add_forward_slice`].
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, LayerNorm, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).ok_or("portable runs everywhere")?;
    /// let ln = LayerNorm::<f32>::new(2)?;
    /// let (mut res, mut h, mut y) = ([1.0f32, 1.0], [0.0f32; 2], [0.0f32; 2]);
    /// p.layer_norm_add_slice(&ln, &[0.0, 2.0], &mut res, Some(&mut h), &mut y)?;
    /// assert_eq!(h, [1.0, 3.0]);
    /// p.layer_norm_add_slice(&ln, &[0.0, 2.0], &mut res, None, &mut y)?; // in place
    /// assert_eq!(res, [1.0, 3.0]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn layer_norm_add_slice<F: Element>(
        self,
        norm: &LayerNorm<F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        self.add::<Layer, F>(&norm.p, x, residual, h, out)
    }

    /// [`RmsNorm::add_forward_slice`] on this path (`residual` overwritten with `h`
    /// when `h` is `None`, like [`RmsNorm::add_forward_slice_inplace`]).
    ///
    /// # Errors
    /// As [`RmsNorm::add_forward_slice`].
    ///
    /// # Example
    /// ```
    /// use norm_core::{KernelPath, RmsNorm, dispatch::ForcedPath};
    ///
    /// let p = ForcedPath::new(KernelPath::Portable).ok_or("portable runs everywhere")?;
    /// let rms = RmsNorm::<f32>::new(2)?;
    /// let (mut res, mut y) = ([1.0f32, -3.0], [0.0f32; 2]);
    /// p.rms_norm_add_slice(&rms, &[2.0, 0.0], &mut res, None, &mut y)?;
    /// assert_eq!(res, [3.0, -3.0]);
    /// assert!((y[0] - 1.0).abs() < 1e-5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rms_norm_add_slice<F: Element>(
        self,
        norm: &RmsNorm<F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        self.add::<Rms, F>(&norm.p, x, residual, h, out)
    }

    /// The fused norm `K` on this path (`h = None`: in place, into `residual`).
    fn add<K: Kind, F: Element>(
        self,
        p: &Affine<F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        let d = p.weight.len();
        check_add_slices(d, x.len(), residual.len(), h.as_ref().map(|h| h.len()), out.len())?;
        match h {
            Some(h) => F::add_rows::<K>(self, p, (x, Some(residual)), h, out),
            None => F::add_rows::<K>(self, p, (x, None), residual, out),
        }
        Ok(())
    }
}
