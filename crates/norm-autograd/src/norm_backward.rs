//! LayerNorm and RmsNorm backward passes: the plain-slice layer (row-major `&[F]` rows;
//! the SIMD row kernels of `kernels.rs` on the detected CPU path, large batches split
//! across the rayon pool in fixed row blocks) and the ndarray layer (any rank, any
//! layout) on top of it. Both validate every shape and return `GradError`, never panic.

use std::borrow::Cow;

use ndarray::{Array, Array1, ArrayRef, Dimension};
use norm_core::{Float, LayerNorm, LayerNormStats, NormError, RmsNorm, RmsNormStats};

use std::ops::Range;

use norm_core::KernelPath;
use norm_core::simd::{Path, Stores};

use crate::GradError;
use crate::kernels::{
    LnRows, REDUCTION_BLOCK_ROWS, RmsRows, add_partial, block_count, block_rows, ln_rows_on, rms_rows_on,
};

/// The parameter gradients of a norm: dL/dgamma and, when there is a bias, dL/dbeta.
///
/// ```text
/// dgamma_j = Σ_rows dy_j · x̂_j        dbeta_j = Σ_rows dy_j
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NormGrads<F> {
    /// Gradient of the weight (gamma), length `dim`.
    pub dgamma: Array1<F>,
    /// Gradient of the bias (beta), length `dim`; `None` when the norm has no bias.
    pub dbeta: Option<Array1<F>>,
}

/// Checks the lengths of a slice-level backward call; returns the number of rows.
fn check_slice_args<F>(
    d: usize,
    x: &[F],
    dy: &[F],
    dx: &[F],
    stats: &[(&'static str, usize)],
    dgamma: &[F],
    dbeta: Option<&[F]>,
) -> Result<usize, GradError> {
    if d == 0 {
        return Err(NormError::ZeroDim.into());
    }
    if !x.len().is_multiple_of(d) {
        return Err(NormError::SliceLen { len: x.len(), dim: d }.into());
    }
    for (name, got) in [("dy", dy.len()), ("dx", dx.len())] {
        if got != x.len() {
            return Err(NormError::BufferLen {
                name,
                got,
                expected: x.len(),
            }
            .into());
        }
    }
    let rows = x.len() / d;
    for &(name, got) in stats {
        if got != rows {
            return Err(NormError::StatsShape {
                name,
                got: vec![got],
                expected: vec![rows],
            }
            .into());
        }
    }
    for (what, got) in [("dgamma", Some(dgamma.len())), ("dbeta", dbeta.map(<[F]>::len))] {
        if let Some(got) = got
            && got != d
        {
            return Err(GradError::ShapeMismatch {
                what,
                expected: vec![d],
                got: vec![got],
            });
        }
    }
    Ok(rows)
}

/// How the slice drivers hand out rows. Every variant computes each reduction block's
/// dgamma/dbeta partial the same way and adds the partials to the totals in block
/// order, so all of them give the same bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// All rows in one pass on the calling thread, block after block.
    Serial,
    /// Groups of this many reduction blocks, the last group first, partials combined
    /// afterwards in block order (mimics a thread pool finishing out of order).
    Chunked(usize),
    /// Groups of blocks on the current rayon pool whatever the input size (serial
    /// without the `rayon` feature).
    Parallel,
    /// What the public functions do: [`Sweep::Parallel`] for inputs of at least
    /// [`PAR_MIN_BYTES`] when the pool has more than one thread, else [`Sweep::Serial`].
    Auto,
}

/// Inputs (`x`) smaller than this many bytes run on the calling thread: a parallel
/// split costs a few microseconds and an extra pass over the block partials.
pub const PAR_MIN_BYTES: usize = 256 * 1024;

/// Target bytes of `x` per parallel task (whole reduction blocks, at least one).
#[cfg(feature = "rayon")]
const TASK_BYTES: usize = 256 * 1024;

/// A kernel path this CPU supports, and how dx is stored: the only way to force either
/// (test and bench hook).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForcedPath(Path, Stores);

impl ForcedPath {
    /// `path`, if this CPU supports it (stores chosen by size).
    pub fn new(path: KernelPath) -> Option<Self> {
        Path::new(path).map(|p| ForcedPath(p, Stores::Auto))
    }

    /// The path the public functions use on this CPU.
    pub fn detected() -> Self {
        ForcedPath(Path::detected(), Stores::Auto)
    }

    /// The same path with dx stored as `stores` says.
    pub fn with_stores(self, stores: Stores) -> Self {
        ForcedPath(self.0, stores)
    }

    /// Whether a dx of `len` elements of `F` goes out as non-temporal stores.
    fn stream<F>(self, len: usize) -> bool {
        self.1.stream::<F>(len)
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
        self.0.get()
    }
}

/// Whether a backward over `len` elements of `F` goes to the thread pool under
/// [`Sweep::Auto`].
fn auto_parallel<F>(len: usize) -> bool {
    #[cfg(feature = "rayon")]
    {
        len.saturating_mul(std::mem::size_of::<F>()) >= PAR_MIN_BYTES && rayon::current_num_threads() > 1
    }
    #[cfg(not(feature = "rayon"))]
    {
        let _ = len;
        false
    }
}

/// Sets `v` to zero.
#[inline]
fn zero<F: Float>(v: &mut [F]) {
    v.iter_mut().for_each(|t| *t = F::zero());
}

/// The work of one reduction block: `block(rows, weight, dx_rows, partial_dgamma,
/// partial_dbeta)` (partials zeroed by the caller).
trait Block<F>: Fn(Range<usize>, &[F], &mut [F], &mut [F], Option<&mut [F]>) + Sync {}
impl<F, T: Fn(Range<usize>, &[F], &mut [F], &mut [F], Option<&mut [F]>) + Sync> Block<F> for T {}

/// Bytes in a page: loads and stores whose addresses agree in their low 12 bits look
/// alike to the CPU ("4K aliasing") and a load that seems to follow a store waits.
const PAGE: usize = 4096;

/// Where the kernels' own arrays (a copy of gamma, the dgamma/dbeta partials) go: at the
/// same page offset as `dx` or half a page from it. The write pass aligns its vector
/// stores to dx's 64-byte lines, so gamma and the partials are then aligned too; and
/// with these offsets no store to them is a little behind a load modulo 4096, which
/// would make the loads wait (4K aliasing) when the buffers happen to line up.
#[derive(Clone, Copy)]
struct Layout {
    /// Row length.
    d: usize,
    /// Elements from a block's dgamma partial to its dbeta partial (`d` rounded up to
    /// half a page).
    r: usize,
    /// Elements per block partial: `r`, or `2·r` with dbeta.
    stride: usize,
    /// Byte offset of `dx` within its page.
    target: usize,
}

impl Layout {
    fn new<F>(d: usize, with_dbeta: bool, dx: &[F]) -> Self {
        let size = std::mem::size_of::<F>();
        let r = (d * size).div_ceil(PAGE / 2) * (PAGE / 2) / size;
        Layout {
            d,
            r,
            stride: if with_dbeta { 2 * r } else { r },
            target: dx.as_ptr() as usize % PAGE,
        }
    }

    /// A zeroed buffer and the index in it where `len` elements start at the target page
    /// offset.
    fn buffer<F: Float>(self, len: usize) -> (Vec<F>, usize) {
        let size = std::mem::size_of::<F>();
        let buf = vec![F::zero(); len + PAGE / size];
        let base = buf.as_ptr() as usize % PAGE;
        let start = ((self.target + PAGE - base) % PAGE) / size;
        (buf, start)
    }

    /// The dgamma and (with dbeta) dbeta parts of one block partial.
    fn split<F>(self, part: &mut [F]) -> (&mut [F], Option<&mut [F]>) {
        let (pg, rest) = part.split_at_mut(self.r);
        let pb = (self.stride > self.r).then(|| &mut rest[..self.d]);
        (&mut pg[..self.d], pb)
    }
}

/// Drives `block` over every reduction block, then sums the partials in block order
/// into `dgamma`/`dbeta` (overwritten).
#[allow(clippy::too_many_arguments)]
fn drive<F: Float>(
    sweep: Sweep,
    rows: usize,
    weight: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
    block: impl Block<F>,
) {
    let lay = Layout::new(weight.len(), dbeta.is_some(), dx);
    let (mut wbuf, ws) = lay.buffer::<F>(lay.d);
    wbuf[ws..ws + lay.d].copy_from_slice(weight);
    let w = &wbuf[ws..ws + lay.d];
    match sweep {
        Sweep::Serial => serial(lay, rows, w, dx, dgamma, dbeta, &block),
        Sweep::Auto if !auto_parallel::<F>(dx.len()) => serial(lay, rows, w, dx, dgamma, dbeta, &block),
        Sweep::Auto | Sweep::Parallel => parallel(lay, rows, w, dx, dgamma, dbeta, &block),
        Sweep::Chunked(per_chunk) => chunked(per_chunk, lay, rows, w, dx, dgamma, dbeta, &block),
    }
}

/// Zeroes block `b`'s partial and runs the block into it.
fn run_block<F: Float>(
    block: &impl Block<F>,
    lay: Layout,
    b: usize,
    rows: usize,
    w: &[F],
    dx_rows: &mut [F],
    part: &mut [F],
) {
    let (pg, mut pb) = lay.split(part);
    zero(pg);
    if let Some(pb) = pb.as_deref_mut() {
        zero(pb);
    }
    block(block_rows(b, rows), w, dx_rows, pg, pb);
}

/// Block after block on the calling thread, one partial buffer added to the totals
/// after each block.
fn serial<F: Float>(
    lay: Layout,
    rows: usize,
    w: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    mut dbeta: Option<&mut [F]>,
    block: &impl Block<F>,
) {
    zero(dgamma);
    if let Some(db) = dbeta.as_deref_mut() {
        zero(db);
    }
    let (mut buf, s0) = lay.buffer::<F>(lay.stride);
    let part = &mut buf[s0..s0 + lay.stride];
    for (b, dx_rows) in dx.chunks_mut(REDUCTION_BLOCK_ROWS * lay.d).enumerate() {
        run_block(block, lay, b, rows, w, dx_rows, part);
        let (pg, pb) = lay.split(part);
        add_partial(pg, pb.as_deref(), dgamma, dbeta.as_deref_mut());
    }
}

/// Groups of `per_chunk` blocks, last group first; partials combined afterwards.
#[allow(clippy::too_many_arguments)]
fn chunked<F: Float>(
    per_chunk: usize,
    lay: Layout,
    rows: usize,
    w: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
    block: &impl Block<F>,
) {
    let per_chunk = per_chunk.max(1);
    let len = block_count(rows) * lay.stride;
    let (mut buf, s0) = lay.buffer::<F>(len);
    let partials = &mut buf[s0..s0 + len];
    let groups: Vec<_> = dx
        .chunks_mut(per_chunk * REDUCTION_BLOCK_ROWS * lay.d)
        .zip(partials.chunks_mut(per_chunk * lay.stride))
        .enumerate()
        .collect();
    for (gi, (dx_group, part_group)) in groups.into_iter().rev() {
        let blocks = dx_group
            .chunks_mut(REDUCTION_BLOCK_ROWS * lay.d)
            .zip(part_group.chunks_mut(lay.stride));
        for (k, (dx_rows, part)) in blocks.enumerate() {
            run_block(block, lay, gi * per_chunk + k, rows, w, dx_rows, part);
        }
    }
    combine_partials(lay, partials, dgamma, dbeta);
}

/// Groups of whole blocks (about [`TASK_BYTES`] of `x` each) on the current rayon
/// pool, one partial per block; then the totals, column slices in parallel, each
/// column summed in block order.
#[cfg(feature = "rayon")]
fn parallel<F: Float>(
    lay: Layout,
    rows: usize,
    w: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
    block: &impl Block<F>,
) {
    use rayon::prelude::*;
    let d = lay.d;
    let per_task = (TASK_BYTES / (REDUCTION_BLOCK_ROWS * d * std::mem::size_of::<F>())).max(1);
    let len = block_count(rows) * lay.stride;
    let (mut buf, s0) = lay.buffer::<F>(len);
    let partials = &mut buf[s0..s0 + len];
    dx.par_chunks_mut(per_task * REDUCTION_BLOCK_ROWS * d)
        .zip(partials.par_chunks_mut(per_task * lay.stride))
        .enumerate()
        .for_each(|(t, (dx_group, part_group))| {
            let blocks = dx_group
                .chunks_mut(REDUCTION_BLOCK_ROWS * d)
                .zip(part_group.chunks_mut(lay.stride));
            for (k, (dx_rows, part)) in blocks.enumerate() {
                run_block(block, lay, t * per_task + k, rows, w, dx_rows, part);
            }
        });
    let partials = &*partials;
    const COLS: usize = 256;
    let sum_cols = |off: usize, total: &mut [F]| {
        total.par_chunks_mut(COLS).enumerate().for_each(|(c, tot)| {
            zero(tot);
            let j0 = off + c * COLS;
            let n = tot.len();
            for part in partials.chunks_exact(lay.stride) {
                for (t, &p) in tot.iter_mut().zip(&part[j0..j0 + n]) {
                    *t += p;
                }
            }
        });
    };
    sum_cols(0, dgamma);
    if let Some(db) = dbeta {
        sum_cols(lay.r, db);
    }
}

/// Without the `rayon` feature: [`serial`].
#[cfg(not(feature = "rayon"))]
fn parallel<F: Float>(
    lay: Layout,
    rows: usize,
    w: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
    block: &impl Block<F>,
) {
    serial(lay, rows, w, dx, dgamma, dbeta, block)
}

/// Sums per-block partials (laid out as `lay` says) in block order into `dgamma` and
/// `dbeta` (overwritten).
fn combine_partials<F: Float>(
    lay: Layout,
    partials: &mut [F],
    dgamma: &mut [F],
    mut dbeta: Option<&mut [F]>,
) {
    zero(dgamma);
    if let Some(db) = dbeta.as_deref_mut() {
        zero(db);
    }
    for part in partials.chunks_exact_mut(lay.stride) {
        let (pg, pb) = lay.split(part);
        add_partial(pg, pb.as_deref(), dgamma, dbeta.as_deref_mut());
    }
}

/// LayerNorm backward on an explicit kernel path and [`Sweep`] (test and bench hook).
///
/// # Errors
/// As [`layer_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_slice_on<F: Float>(
    path: ForcedPath,
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    let d = weight.len();
    let rows = check_slice_args(
        d,
        x,
        dy,
        dx,
        &[("mean", mean.len()), ("rstd", rstd.len())],
        dgamma,
        dbeta.as_deref(),
    )?;
    let stream = path.stream::<F>(dx.len());
    drive(
        sweep,
        rows,
        weight,
        dx,
        dgamma,
        dbeta,
        |r, weight, dx_rows, pg, pb| {
            let e = r.start * d..r.end * d;
            let op = LnRows {
                x: &x[e.clone()],
                dy: &dy[e],
                mean: &mean[r.clone()],
                rstd: &rstd[r],
                weight,
                dx: dx_rows,
                dgamma: pg,
                dbeta: pb,
                stream,
            };
            ln_rows_on(path.0, op);
        },
    );
    Ok(())
}

/// RmsNorm backward on an explicit kernel path and [`Sweep`] (test and bench hook).
///
/// # Errors
/// As [`rms_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_slice_on<F: Float>(
    path: ForcedPath,
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    rrms: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    let d = weight.len();
    let rows = check_slice_args(d, x, dy, dx, &[("rrms", rrms.len())], dgamma, dbeta.as_deref())?;
    let stream = path.stream::<F>(dx.len());
    drive(
        sweep,
        rows,
        weight,
        dx,
        dgamma,
        dbeta,
        |r, weight, dx_rows, pg, pb| {
            let e = r.start * d..r.end * d;
            let op = RmsRows {
                x: &x[e.clone()],
                dy: &dy[e],
                rrms: &rrms[r],
                weight,
                dx: dx_rows,
                dgamma: pg,
                dbeta: pb,
                stream,
            };
            rms_rows_on(path.0, op);
        },
    );
    Ok(())
}

/// [`layer_norm_backward_slice`] with an explicit [`Sweep`] (test hook).
///
/// # Errors
/// As [`layer_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_slice_sweep<F: Float>(
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    layer_norm_backward_slice_on(
        ForcedPath::detected(),
        sweep,
        weight,
        x,
        dy,
        mean,
        rstd,
        dx,
        dgamma,
        dbeta,
    )
}

/// [`rms_norm_backward_slice`] with an explicit [`Sweep`] (test hook).
///
/// # Errors
/// As [`rms_norm_backward_slice`].
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_slice_sweep<F: Float>(
    sweep: Sweep,
    weight: &[F],
    x: &[F],
    dy: &[F],
    rrms: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    rms_norm_backward_slice_on(
        ForcedPath::detected(),
        sweep,
        weight,
        x,
        dy,
        rrms,
        dx,
        dgamma,
        dbeta,
    )
}

/// LayerNorm backward over row-major rows of length `norm.dim()`: writes `dx`
/// (overwriting), `dgamma` and, when given, `dbeta` (both overwritten, not accumulated).
///
/// ```text
/// x̂  = (x - mean)·rstd,   g = dy·gamma
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂))          (per row)
/// dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy        (fixed row blocks, fixed order)
/// ```
///
/// `mean` and `rstd` are the statistics written by
/// [`LayerNorm::forward_slice_with_stats`]. `dbeta` may be passed even when the norm has
/// no bias: it is then the gradient a bias would get.
///
/// # Errors
/// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`,
/// [`NormError::BufferLen`] if `dy` or `dx` differ in length from `x`,
/// [`NormError::StatsShape`] if `mean`/`rstd` do not hold one value per row,
/// [`GradError::ShapeMismatch`] if `dgamma`/`dbeta` are not `dim` long.
///
/// # Example
/// ```
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward_slice;
///
/// let ln = LayerNorm::<f64>::new(3)?;
/// let x = [1.0, 2.0, 4.0, -1.0, 0.0, 1.0];
/// let (mut y, mut mean, mut rstd) = ([0.0; 6], [0.0; 2], [0.0; 2]);
/// ln.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
/// let dy = [1.0, 0.0, 0.0, 0.5, 0.5, -1.0];
/// let (mut dx, mut dgamma, mut dbeta) = ([0.0; 6], [0.0; 3], [0.0; 3]);
/// layer_norm_backward_slice(&ln, &x, &dy, &mean, &rstd, &mut dx, &mut dgamma, Some(&mut dbeta))?;
/// assert!(dx[..3].iter().sum::<f64>().abs() < 1e-12); // LayerNorm's dx sums to zero per row
/// assert_eq!(dbeta, [1.5, 0.5, -1.0]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_slice<F: Float>(
    norm: &LayerNorm<F>,
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    layer_norm_backward_slice_sweep(Sweep::Auto, norm.weight(), x, dy, mean, rstd, dx, dgamma, dbeta)
}

/// RmsNorm backward over row-major rows of length `norm.dim()`: writes `dx`, `dgamma`
/// and, when given, `dbeta` (all overwritten).
///
/// ```text
/// x̂  = x·rrms,   g = dy·gamma
/// dx = rrms·(g - x̂·mean(g·x̂))                     (per row)
/// dgamma = Σ_rows dy·x̂,   dbeta = Σ_rows dy        (fixed row blocks, fixed order)
/// ```
///
/// # Errors
/// As [`layer_norm_backward_slice`], with the statistic named `rrms`.
///
/// # Example
/// ```
/// use norm_core::RmsNorm;
/// use norm_autograd::rms_norm_backward_slice;
///
/// let rms = RmsNorm::<f64>::new(2)?.with_eps(0.0)?;
/// let x = [3.0, 4.0];
/// let (mut y, mut rrms) = ([0.0; 2], [0.0; 1]);
/// rms.forward_slice_with_stats(&x, &mut y, &mut rrms)?;
/// let (mut dx, mut dgamma) = ([0.0; 2], [0.0; 2]);
/// rms_norm_backward_slice(&rms, &x, &[1.0, -2.0], &rrms, &mut dx, &mut dgamma, None)?;
/// assert!((dx[0] * x[0] + dx[1] * x[1]).abs() < 1e-12); // with eps = 0, dx ⟂ x
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_slice<F: Float>(
    norm: &RmsNorm<F>,
    x: &[F],
    dy: &[F],
    rrms: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    rms_norm_backward_slice_sweep(Sweep::Auto, norm.weight(), x, dy, rrms, dx, dgamma, dbeta)
}

/// Row-major contents of `a`: borrowed when it is contiguous in standard order.
fn row_major<F: Float, D: Dimension>(a: &ArrayRef<F, D>) -> Cow<'_, [F]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().copied().collect()),
    }
}

/// Checks x, dy, dx and the statistics of an ndarray backward call.
fn check_nd<F, D: Dimension>(
    dim: usize,
    x: &ArrayRef<F, D>,
    dy: &ArrayRef<F, D>,
    dx: Option<&[usize]>,
    stats: &[(&'static str, &[usize])],
) -> Result<(), GradError> {
    let shape = x.shape();
    let Some((&last, lead)) = shape.split_last() else {
        return Err(NormError::ZeroRank.into());
    };
    if last != dim {
        return Err(NormError::FeatureMismatch {
            shape: shape.to_vec(),
            got: last,
            dim,
        }
        .into());
    }
    for (what, got) in [("dy", Some(dy.shape())), ("dx", dx)] {
        if let Some(got) = got
            && got != shape
        {
            return Err(GradError::ShapeMismatch {
                what,
                expected: shape.to_vec(),
                got: got.to_vec(),
            });
        }
    }
    for &(name, got) in stats {
        if got != lead {
            return Err(NormError::StatsShape {
                name,
                got: got.to_vec(),
                expected: lead.to_vec(),
            }
            .into());
        }
    }
    Ok(())
}

/// Runs a slice-level backward writing into `dx` (any layout).
fn with_dx_slice<F: Float, D: Dimension>(
    dx: &mut ArrayRef<F, D>,
    f: impl FnOnce(&mut [F]) -> Result<(), GradError>,
) -> Result<(), GradError> {
    if let Some(s) = dx.as_slice_mut() {
        return f(s);
    }
    let mut tmp = vec![F::zero(); dx.len()];
    f(&mut tmp)?;
    for (o, &v) in dx.iter_mut().zip(&tmp) {
        *o = v;
    }
    Ok(())
}

/// LayerNorm backward over the last axis of an array of any rank ≥ 1 and any layout,
/// into the caller's buffers (`dx` same shape as `x`; `dgamma`, `dbeta` `dim` long; all
/// overwritten).
///
/// ```text
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂)),  g = dy·gamma,  x̂ = (x - mean)·rstd
/// ```
///
/// # Errors
/// [`NormError::ZeroRank`] / [`NormError::FeatureMismatch`] for a bad `x`,
/// [`GradError::ShapeMismatch`] if `dy` or `dx` differ in shape from `x` or
/// `dgamma`/`dbeta` are not `dim` long, [`NormError::StatsShape`] if the statistics are
/// not shaped like `x` without its last axis.
///
/// # Example
/// ```
/// use ndarray::{Array2, Array3};
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward_into;
///
/// let ln = LayerNorm::<f32>::new(8)?;
/// let x = Array3::<f32>::from_shape_fn((2, 3, 8), |(b, l, d)| (b + 2 * l) as f32 + (d * d) as f32 * 0.1);
/// let (_, stats) = ln.forward_with_stats(&x)?;
/// let dy = Array3::<f32>::ones((2, 3, 8));
/// let mut dx = Array3::<f32>::zeros((2, 3, 8));
/// let (mut dgamma, mut dbeta) = (vec![0.0f32; 8], vec![0.0f32; 8]);
/// layer_norm_backward_into(&ln, &x, &stats, &dy, &mut dx, &mut dgamma, Some(&mut dbeta))?;
/// assert!(dx.iter().all(|v| v.abs() < 1e-5)); // a constant dy is removed by the mean
/// assert_eq!(dbeta, vec![6.0f32; 8]);
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward_into<F: Float, D: Dimension>(
    norm: &LayerNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &LayerNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    check_nd(
        norm.dim(),
        x,
        dy,
        Some(dx.shape()),
        &[("mean", stats.mean.shape()), ("rstd", stats.rstd.shape())],
    )?;
    let (xs, dys) = (row_major(x), row_major(dy));
    let (mean, rstd) = (row_major(&stats.mean), row_major(&stats.rstd));
    with_dx_slice(dx, |dxs| {
        layer_norm_backward_slice(norm, &xs, &dys, &mean, &rstd, dxs, dgamma, dbeta)
    })
}

/// LayerNorm backward over the last axis: returns `dx` (shaped like `x`) and the
/// parameter gradients (`dbeta` only when the norm has a bias).
///
/// # Errors
/// As [`layer_norm_backward_into`].
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::LayerNorm;
/// use norm_autograd::layer_norm_backward;
///
/// let ln = LayerNorm::<f64>::new(3)?;
/// let x = array![[1.0, 2.0, 6.0], [0.0, -1.0, 1.0]];
/// let (_, stats) = ln.forward_with_stats(&x)?;
/// let (dx, grads) = layer_norm_backward(&ln, &x, &stats, &array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])?;
/// assert!(dx.row(0).sum().abs() < 1e-12);
/// assert_eq!(grads.dbeta.map(|b| b.to_vec()), Some(vec![1.0, 1.0, 0.0]));
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn layer_norm_backward<F: Float, D: Dimension>(
    norm: &LayerNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &LayerNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    allocating(x.raw_dim(), norm.dim(), norm.bias().is_some(), |dx, dg, db| {
        layer_norm_backward_into(norm, x, stats, dy, dx, dg, db)
    })
}

/// RmsNorm backward over the last axis of an array of any rank ≥ 1 and any layout, into
/// the caller's buffers (all overwritten).
///
/// ```text
/// dx = rrms·(g - x̂·mean(g·x̂)),  g = dy·gamma,  x̂ = x·rrms
/// ```
///
/// # Errors
/// As [`layer_norm_backward_into`], with the statistic named `rrms`.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use norm_core::RmsNorm;
/// use norm_autograd::rms_norm_backward_into;
///
/// let rms = RmsNorm::<f64>::new(4)?;
/// let x = Array2::<f64>::from_shape_fn((4, 3), |(i, j)| (i * 3 + j) as f64 - 5.0);
/// let xt = x.t(); // a (3, 4) transposed view
/// let (_, stats) = rms.forward_with_stats(&xt)?;
/// let dy = Array2::<f64>::ones((3, 4));
/// let mut dx = Array2::<f64>::zeros((3, 4));
/// let mut dgamma = vec![0.0; 4];
/// rms_norm_backward_into(&rms, &xt, &stats, &dy, &mut dx, &mut dgamma, None)?;
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn rms_norm_backward_into<F: Float, D: Dimension>(
    norm: &RmsNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &RmsNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
    dx: &mut ArrayRef<F, D>,
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) -> Result<(), GradError> {
    check_nd(
        norm.dim(),
        x,
        dy,
        Some(dx.shape()),
        &[("rrms", stats.rrms.shape())],
    )?;
    let (xs, dys, rrms) = (row_major(x), row_major(dy), row_major(&stats.rrms));
    with_dx_slice(dx, |dxs| {
        rms_norm_backward_slice(norm, &xs, &dys, &rrms, dxs, dgamma, dbeta)
    })
}

/// RmsNorm backward over the last axis: returns `dx` (shaped like `x`) and the parameter
/// gradients (`dbeta` only when the norm has a bias).
///
/// # Errors
/// As [`rms_norm_backward_into`].
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::RmsNorm;
/// use norm_autograd::rms_norm_backward;
///
/// let rms = RmsNorm::<f64>::new(2)?;
/// let x = array![[3.0, 4.0]];
/// let (_, stats) = rms.forward_with_stats(&x)?;
/// let (dx, grads) = rms_norm_backward(&rms, &x, &stats, &array![[1.0, 1.0]])?;
/// assert!(grads.dbeta.is_none());
/// assert!((grads.dgamma[0] - 3.0 * stats.rrms[0]).abs() < 1e-15);
/// # let _ = dx;
/// # Ok::<(), norm_autograd::GradError>(())
/// ```
pub fn rms_norm_backward<F: Float, D: Dimension>(
    norm: &RmsNorm<F>,
    x: &ArrayRef<F, D>,
    stats: &RmsNormStats<F, D::Smaller>,
    dy: &ArrayRef<F, D>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    allocating(x.raw_dim(), norm.dim(), norm.bias().is_some(), |dx, dg, db| {
        rms_norm_backward_into(norm, x, stats, dy, dx, dg, db)
    })
}

/// The allocating backward forms: fresh `dx`, `dgamma` and (with a bias) `dbeta`,
/// filled by the matching `_into` function.
fn allocating<F: Float, D: Dimension>(
    shape: D,
    dim: usize,
    has_bias: bool,
    fill: impl FnOnce(&mut Array<F, D>, &mut [F], Option<&mut [F]>) -> Result<(), GradError>,
) -> Result<(Array<F, D>, NormGrads<F>), GradError> {
    let mut dx = Array::zeros(shape);
    let mut dgamma = vec![F::zero(); dim];
    let mut dbeta = has_bias.then(|| vec![F::zero(); dim]);
    fill(&mut dx, &mut dgamma, dbeta.as_deref_mut())?;
    Ok((
        dx,
        NormGrads {
            dgamma: Array1::from(dgamma),
            dbeta: dbeta.map(Array1::from),
        },
    ))
}
