//! The half-precision norms, `LayerNorm<bf16>`, `LayerNorm<f16>`, `RmsNorm<bf16>` and
//! `RmsNorm<f16>`: the drivers around the half-precision rows of `kernels/half.rs`,
//! which run the f32 bodies (the same shifted, blocked statistics, rescue and write pass
//! as `LayerNorm<f32>`) on 16-bit rows, widening as they load and rounding each output
//! once, to nearest with ties to even, as they store. Weight and bias are widened to
//! f32 once per call; eps and the statistics are f32.
//!
//! The fused residual add rounds `h = x + residual` to the storage type (as `x + r` on
//! `half`'s types does: the f32 sum of two bf16 or f16 values, rounded once, is the
//! correctly rounded sum) and normalizes that rounded `h`, so `y` is bit-identical to
//! what a user's unfused code computes: `h = x + r` stored, then `norm(h)`.

use ndarray::{Array, ArrayRef, Dimension};

use crate::NormError;
use crate::convert::Half;
use crate::dispatch::ForcedPath;
use crate::forward::WithStats;
use crate::fused::drive_add_rows;
use crate::kernels::{Kind, Out, RowParams, half_add_rows as half_add_rows_kernel, half_rows};
use crate::params::{Affine, AlignedRow, Matched};
use crate::rows::{RowKernel, check_nd, check_slices, check_stats_len, run_nd, run_rows};
use crate::simd::Path;

/// A half-precision norm's weight and bias widened to f32 (once per call), with eps.
pub(crate) struct Params32 {
    weight: AlignedRow<f32>,
    bias: Option<AlignedRow<f32>>,
    eps: f32,
    /// Empty: half-precision rows never take matched copies (`kernels::matches` wants
    /// rows of the accumulation type), but the row kernels' parameters carry a place.
    matched: Matched<f32>,
}

impl Params32 {
    pub(crate) fn of<H: Half>(p: &Affine<H>) -> Self {
        let path = Path::detected();
        let widen = |v: &[H]| {
            let mut w = AlignedRow::filled(0.0f32, v.len());
            H::widen(path, v, &mut w);
            w
        };
        Params32 {
            weight: widen(&p.weight),
            bias: p.bias.as_deref().map(widen),
            eps: p.eps,
            matched: Matched::default(),
        }
    }

    pub(crate) fn row(&self) -> RowParams<'_, f32> {
        RowParams {
            weight: &self.weight,
            bias: self.bias.as_deref(),
            eps: self.eps,
            matched: &self.matched,
        }
    }
}

/// The row kernel of norm `K` for storage type `H` on `path`.
#[inline(always)]
fn row<K: Kind, H: Half>(path: Path, p: RowParams<'_, f32>) -> HalfKernel<'_, K, H> {
    HalfKernel {
        path,
        p,
        kind: std::marker::PhantomData,
    }
}

/// The half-precision row kernel of norm `K` for storage type `H` on a path.
struct HalfKernel<'a, K, H> {
    path: Path,
    p: RowParams<'a, f32>,
    kind: std::marker::PhantomData<(K, H)>,
}

impl<K: Kind, H: Half> RowKernel<H, f32> for HalfKernel<'_, K, H> {
    #[inline(always)]
    fn row(&self, x: &[H], out: Out<'_, H>) -> (f32, f32) {
        half_rows::<K, H>(self.path, x, self.p, out, [None, None])
    }
    #[inline(always)]
    fn rows(&self, x: &[H], out: Out<'_, H>, stats: [Option<&mut [f32]>; 2]) {
        half_rows::<K, H>(self.path, x, self.p, out, stats);
    }
}

/// `norm(x)` over the last axis into a new array (with the statistics when `want_stats`).
pub(crate) fn half_forward_nd<K: Kind, H: Half, D: Dimension>(
    p: &Affine<H>,
    x: &ArrayRef<H, D>,
    want_stats: bool,
) -> Result<WithStats<H, D>, NormError> {
    check_nd(x.shape(), None, p.weight.len())?;
    let mut out = Array::from_elem(x.raw_dim(), H::default());
    let p32 = Params32::of(p);
    let stats = run_nd(x, &mut out, want_stats, &row::<K, H>(Path::detected(), p32.row()))?;
    Ok((out, stats))
}

/// `norm(x)` over the last axis into the caller's `out`.
pub(crate) fn half_forward_into_nd<K: Kind, H: Half, D: Dimension>(
    p: &Affine<H>,
    x: &ArrayRef<H, D>,
    out: &mut ArrayRef<H, D>,
) -> Result<(), NormError> {
    check_nd(x.shape(), Some(out.shape()), p.weight.len())?;
    let p32 = Params32::of(p);
    run_nd::<H, f32, D>(x, out, false, &row::<K, H>(Path::detected(), p32.row()))?;
    Ok(())
}

/// `norm(x)` over row-major slices on `how`'s path and stores, writing the statistics
/// that are given.
pub(crate) fn half_forward_slice<K: Kind, H: Half>(
    how: ForcedPath,
    p: &Affine<H>,
    x: &[H],
    out: &mut [H],
    [s0, s1]: [Option<&mut [f32]>; 2],
) -> Result<(), NormError> {
    let d = p.weight.len();
    let rows = check_slices(x.len(), out.len(), d)?;
    for (name, s) in K::STATS.into_iter().zip([&s0, &s1]) {
        if let Some(s) = s {
            check_stats_len(name, s.len(), rows)?;
        }
    }
    let p32 = Params32::of(p);
    run_rows(
        x,
        out,
        d,
        s0,
        s1,
        how.stores(),
        &row::<K, H>(how.simd_path(), p32.row()),
    );
    Ok(())
}

/// The fused norm `K` over checked row-major slices on `how`'s path: `h = x + r`
/// rounded, then the norm of that `h` (`r = None`: `h` holds the residual and is
/// overwritten).
pub(crate) fn half_add_rows<K: Kind, H: Half>(
    how: ForcedPath,
    p: &Affine<H>,
    (x, r): (&[H], Option<&[H]>),
    h: &mut [H],
    out: &mut [H],
) {
    let p32 = Params32::of(p);
    let (path, pr) = (how.simd_path(), p32.row());
    let rows = move |xr: &[H], rr: Option<&[H]>, hr: &mut [H], y: Out<'_, H>| {
        half_add_rows_kernel::<K, H>(path, (xr, rr), hr, pr, y);
    };
    drive_add_rows(how, p.weight.len(), (x, r), h, out, rows);
}
