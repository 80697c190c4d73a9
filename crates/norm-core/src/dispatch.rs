//! Hidden test and benchmark hooks: run the slice kernels on a chosen [`KernelPath`]
//! instead of the detected one, so every path the CPU supports can be checked against
//! the reference twins and timed side by side. Not part of the stable API.

use crate::fused::{Kind, Params, add_rows, check_add_slices};
use crate::kernels::{Path, layer_norm_row_on, rms_norm_row_on};
use crate::rows::{check_slices, check_stats_len, run_rows};
use crate::{Float, KernelPath, LayerNorm, NormError, RmsNorm};

/// A kernel path this CPU supports; the only way to force one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForcedPath(Path, KernelPath);

impl ForcedPath {
    /// `path`, if this CPU supports it.
    pub fn new(path: KernelPath) -> Option<Self> {
        Path::new(path).map(|p| ForcedPath(p, path))
    }

    /// Every path this CPU supports, slowest first.
    pub fn all() -> Vec<Self> {
        KernelPath::available()
            .into_iter()
            .filter_map(Self::new)
            .collect()
    }

    /// The path this forces.
    pub fn path(self) -> KernelPath {
        self.1
    }

    /// [`LayerNorm::forward_slice_with_stats`] on this path.
    ///
    /// # Errors
    /// As [`LayerNorm::forward_slice_with_stats`].
    pub fn layer_norm_slice<F: Float>(
        self,
        norm: &LayerNorm<F>,
        x: &[F],
        out: &mut [F],
        mean: &mut [F],
        rstd: &mut [F],
    ) -> Result<(), NormError> {
        let rows = check_slices(x.len(), out.len(), norm.dim())?;
        check_stats_len("mean", mean.len(), rows)?;
        check_stats_len("rstd", rstd.len(), rows)?;
        let (w, b, eps) = (norm.weight(), norm.bias(), norm.eps());
        run_rows(x, out, norm.dim(), Some(mean), Some(rstd), |xr, or| {
            layer_norm_row_on(self.0, xr, w, b, eps, or)
        });
        Ok(())
    }

    /// [`RmsNorm::forward_slice_with_stats`] on this path.
    ///
    /// # Errors
    /// As [`RmsNorm::forward_slice_with_stats`].
    pub fn rms_norm_slice<F: Float>(
        self,
        norm: &RmsNorm<F>,
        x: &[F],
        out: &mut [F],
        rrms: &mut [F],
    ) -> Result<(), NormError> {
        let rows = check_slices(x.len(), out.len(), norm.dim())?;
        check_stats_len("rrms", rrms.len(), rows)?;
        let (w, b, eps) = (norm.weight(), norm.bias(), norm.eps());
        run_rows(x, out, norm.dim(), Some(rrms), None, |xr, or| {
            (rms_norm_row_on(self.0, xr, w, b, eps, or), F::zero())
        });
        Ok(())
    }

    /// [`LayerNorm::add_forward_slice`] on this path (`residual` overwritten with `h`
    /// when `h` is `None`, like [`LayerNorm::add_forward_slice_inplace`]).
    ///
    /// # Errors
    /// As [`LayerNorm::add_forward_slice`].
    pub fn layer_norm_add_slice<F: Float>(
        self,
        norm: &LayerNorm<F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        let p = Params {
            weight: norm.weight(),
            bias: norm.bias(),
            eps: norm.eps(),
        };
        self.add(Kind::Layer, p, x, residual, h, out)
    }

    /// [`RmsNorm::add_forward_slice`] on this path (`residual` overwritten with `h`
    /// when `h` is `None`, like [`RmsNorm::add_forward_slice_inplace`]).
    ///
    /// # Errors
    /// As [`RmsNorm::add_forward_slice`].
    pub fn rms_norm_add_slice<F: Float>(
        self,
        norm: &RmsNorm<F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        let p = Params {
            weight: norm.weight(),
            bias: norm.bias(),
            eps: norm.eps(),
        };
        self.add(Kind::Rms, p, x, residual, h, out)
    }

    fn add<F: Float>(
        self,
        kind: Kind,
        p: Params<'_, F>,
        x: &[F],
        residual: &mut [F],
        h: Option<&mut [F]>,
        out: &mut [F],
    ) -> Result<(), NormError> {
        let d = p.weight.len();
        check_add_slices(d, x.len(), residual.len(), h.as_ref().map(|h| h.len()), out.len())?;
        match h {
            Some(h) => add_rows(self.0, kind, p, x, Some(residual), h, out),
            None => add_rows(self.0, kind, p, x, None, residual, out),
        }
        Ok(())
    }
}
