//! The block driver of the backward: rows are cut into fixed reduction blocks of
//! [`REDUCTION_BLOCK_ROWS`] (by absolute row index), each block's dgamma/dbeta partial
//! is summed by the row kernels into its own zeroed buffer, and the partials are added
//! to the totals in block order — serially, in shuffled chunks (a test hook), or on the
//! rayon pool, always with the same bits. Knows nothing of the norm being computed: a
//! block is a closure.

use std::ops::Range;

use norm_core::Float;

/// Rows per reduction block: dgamma/dbeta are summed within blocks of this many rows
/// (in row order), and the block partials are added to the total in block order.
///
/// Because the blocks are fixed by the absolute row index, the result is the same bit
/// for bit however the rows are split across calls or threads.
pub const REDUCTION_BLOCK_ROWS: usize = 32;

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

/// The parameter gradients being summed: `dgamma` and, when wanted, `dbeta` (`d` each).
pub(crate) struct Totals<'a, F> {
    /// dL/dgamma.
    pub dgamma: &'a mut [F],
    /// dL/dbeta, when wanted.
    pub dbeta: Option<&'a mut [F]>,
}

/// The work of one reduction block: `block(rows, weight, dx_rows, partial_dgamma,
/// partial_dbeta)`, the partials zeroed by the caller (`partial_dbeta` empty when no
/// dbeta is wanted).
/// `dx` holds elements of `X`: `F` itself, or a half-precision storage type whose
/// blocks are computed in `F = f32` and rounded (norm-autograd's `half.rs`).
pub(crate) trait Block<F, X = F>: Fn(Range<usize>, &[F], &mut [X], &mut [F], &mut [F]) + Sync {}
impl<F, X, T: Fn(Range<usize>, &[F], &mut [X], &mut [F], &mut [F]) + Sync> Block<F, X> for T {}

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
    fn new<F, X>(d: usize, with_dbeta: bool, dx: &[X]) -> Self {
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
    /// offset. The buffer comes from this thread's pool (see [`Pooled`]), so repeated
    /// calls allocate nothing.
    fn buffer<F: Float>(self, len: usize) -> (Pooled<F>, usize) {
        let size = std::mem::size_of::<F>();
        let buf = Pooled::<F>::zeroed(len + PAGE / size);
        let base = buf.as_ptr() as usize % PAGE;
        let start = ((self.target + PAGE - base) % PAGE) / size;
        (buf, start)
    }

    /// The dgamma and dbeta (empty without dbeta) parts of one block partial.
    fn split<F>(self, part: &mut [F]) -> (&mut [F], &mut [F]) {
        let (pg, rest) = part.split_at_mut(self.r);
        let pb = if self.stride > self.r {
            &mut rest[..self.d]
        } else {
            &mut rest[..0]
        };
        (&mut pg[..self.d], pb)
    }
}

/// Largest buffer [`Pooled`] gives back to its thread's pool, in bytes.
const POOL_MAX_BYTES: usize = 1 << 20;
/// Most buffers a thread's pool holds.
const POOL_MAX_BUFFERS: usize = 8;

thread_local! {
    /// Buffers returned by [`Pooled`], kept for the next call on this thread.
    static POOL: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A zeroed buffer taken from this thread's pool and given back when dropped: after the
/// first calls at a size, a backward allocates nothing for its gamma copy and partials
/// (the training study calls it thousands of times per run on small rows).
/// The `Vec` is boxed so that it moves in and out of the pool's `Box<dyn Any>` without
/// a new allocation.
#[allow(clippy::box_collection)]
pub(crate) struct Pooled<F: 'static>(Option<Box<Vec<F>>>);

impl<F: Float> Pooled<F> {
    fn zeroed(len: usize) -> Self {
        let found = POOL.with(|p| {
            let mut p = p.borrow_mut();
            // The smallest buffer of this type that holds `len` without growing, else
            // any of this type (it grows once), so a small gamma copy and large partials
            // do not trade buffers and grow each other.
            let cap = |b: &Box<dyn std::any::Any>| b.downcast_ref::<Vec<F>>().map(Vec::capacity);
            let i = (0..p.len())
                .filter(|&i| cap(&p[i]).is_some_and(|c| c >= len))
                .min_by_key(|&i| cap(&p[i]))
                .or_else(|| (0..p.len()).find(|&i| cap(&p[i]).is_some()))?;
            Some(p.swap_remove(i))
        });
        let mut v: Box<Vec<F>> = found.and_then(|b| b.downcast().ok()).unwrap_or_default();
        v.clear();
        v.resize(len, F::zero());
        Pooled(Some(v))
    }
}

impl<F: 'static> Drop for Pooled<F> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            // Only small buffers are kept (the small-row calls the pool is for), and only
            // a few per thread: a large batch's partials are freed, not held for the life
            // of the thread. A thread being torn down has no pool left: freed too.
            if v.capacity() * std::mem::size_of::<F>() <= POOL_MAX_BYTES {
                let _ = POOL.try_with(|p| {
                    let mut p = p.borrow_mut();
                    if p.len() < POOL_MAX_BUFFERS {
                        p.push(v);
                    }
                });
            }
        }
    }
}

impl<F: 'static> std::ops::Deref for Pooled<F> {
    type Target = [F];
    fn deref(&self) -> &[F] {
        self.0.as_deref().map_or(&[], |v| v.as_slice())
    }
}

impl<F: 'static> std::ops::DerefMut for Pooled<F> {
    fn deref_mut(&mut self) -> &mut [F] {
        self.0.as_deref_mut().map_or(&mut [], |v| v.as_mut_slice())
    }
}

/// What every block of one backward call shares.
#[derive(Clone, Copy)]
struct Job<'a, F> {
    lay: Layout,
    /// Rows in the whole call.
    rows: usize,
    /// gamma, copied to [`Layout`]'s page offset.
    w: &'a [F],
}

impl<F: Float> Job<'_, F> {
    /// Zeroes block `b`'s partial and runs the block into it.
    fn run_block<X>(self, block: &impl Block<F, X>, b: usize, dx_rows: &mut [X], part: &mut [F]) {
        let (pg, pb) = self.lay.split(part);
        zero(pg);
        zero(pb);
        block(block_rows(b, self.rows), self.w, dx_rows, pg, pb);
    }
}

/// Drives `block` over every reduction block of `rows` rows (`dx` holds them all), then
/// sums the partials in block order into the totals (overwritten).
pub(crate) fn drive<F: Float, X: Send>(
    sweep: Sweep,
    rows: usize,
    weight: &[F],
    dx: &mut [X],
    totals: Totals<'_, F>,
    block: impl Block<F, X>,
) {
    let lay = Layout::new::<F, X>(weight.len(), totals.dbeta.is_some(), dx);
    let (mut wbuf, ws) = lay.buffer::<F>(lay.d);
    wbuf[ws..ws + lay.d].copy_from_slice(weight);
    let job = Job {
        lay,
        rows,
        w: &wbuf[ws..ws + lay.d],
    };
    match sweep {
        Sweep::Serial => serial(job, dx, totals, &block),
        Sweep::Auto if !auto_parallel::<X>(dx.len()) => serial(job, dx, totals, &block),
        Sweep::Auto | Sweep::Parallel => parallel(job, dx, totals, &block),
        Sweep::Chunked(per_chunk) => chunked(per_chunk, job, dx, totals, &block),
    }
}

/// Block after block on the calling thread, one partial buffer added to the totals
/// after each block.
fn serial<F: Float, X>(job: Job<'_, F>, dx: &mut [X], totals: Totals<'_, F>, block: &impl Block<F, X>) {
    let Totals { dgamma, mut dbeta } = totals;
    zero(dgamma);
    if let Some(db) = dbeta.as_deref_mut() {
        zero(db);
    }
    let lay = job.lay;
    let (mut buf, s0) = lay.buffer::<F>(lay.stride);
    let part = &mut buf[s0..s0 + lay.stride];
    for (b, dx_rows) in dx.chunks_mut(REDUCTION_BLOCK_ROWS * lay.d).enumerate() {
        job.run_block(block, b, dx_rows, part);
        let (pg, pb) = lay.split(part);
        add_partial(pg, pb, dgamma, dbeta.as_deref_mut());
    }
}

/// Groups of `per_chunk` blocks, last group first; partials combined afterwards.
fn chunked<F: Float, X>(
    per_chunk: usize,
    job: Job<'_, F>,
    dx: &mut [X],
    totals: Totals<'_, F>,
    block: &impl Block<F, X>,
) {
    let (lay, per_chunk) = (job.lay, per_chunk.max(1));
    let len = block_count(job.rows) * lay.stride;
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
            job.run_block(block, gi * per_chunk + k, dx_rows, part);
        }
    }
    combine_partials(lay, partials, totals);
}

/// Groups of whole blocks (about [`TASK_BYTES`] of `x` each) on the current rayon
/// pool, one partial per block; then the totals, column slices in parallel, each
/// column summed in block order.
#[cfg(feature = "rayon")]
fn parallel<F: Float, X: Send>(
    job: Job<'_, F>,
    dx: &mut [X],
    totals: Totals<'_, F>,
    block: &impl Block<F, X>,
) {
    use rayon::prelude::*;
    let lay = job.lay;
    let d = lay.d;
    let per_task = (TASK_BYTES / (REDUCTION_BLOCK_ROWS * d * std::mem::size_of::<X>())).max(1);
    let len = block_count(job.rows) * lay.stride;
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
                job.run_block(block, t * per_task + k, dx_rows, part);
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
    sum_cols(0, totals.dgamma);
    if let Some(db) = totals.dbeta {
        sum_cols(lay.r, db);
    }
}

/// Without the `rayon` feature: [`serial`].
#[cfg(not(feature = "rayon"))]
fn parallel<F: Float, X: Send>(
    job: Job<'_, F>,
    dx: &mut [X],
    totals: Totals<'_, F>,
    block: &impl Block<F, X>,
) {
    serial(job, dx, totals, block)
}

/// Sums per-block partials (laid out as `lay` says) in block order into the totals
/// (overwritten).
fn combine_partials<F: Float>(lay: Layout, partials: &mut [F], totals: Totals<'_, F>) {
    let Totals { dgamma, mut dbeta } = totals;
    zero(dgamma);
    if let Some(db) = dbeta.as_deref_mut() {
        zero(db);
    }
    for part in partials.chunks_exact_mut(lay.stride) {
        let (pg, pb) = lay.split(part);
        add_partial(pg, pb, dgamma, dbeta.as_deref_mut());
    }
}

/// Number of reduction blocks for `rows` rows.
fn block_count(rows: usize) -> usize {
    rows.div_ceil(REDUCTION_BLOCK_ROWS)
}

/// Row range of reduction block `b` among `rows` rows.
fn block_rows(b: usize, rows: usize) -> Range<usize> {
    let start = b * REDUCTION_BLOCK_ROWS;
    start..(start + REDUCTION_BLOCK_ROWS).min(rows)
}

/// Adds one block's partials into the totals: `dgamma += pg`, `dbeta += pb` (when
/// wanted).
fn add_partial<F: Float>(pg: &[F], pb: &[F], dgamma: &mut [F], dbeta: Option<&mut [F]>) {
    for (t, &p) in dgamma.iter_mut().zip(pg) {
        *t += p;
    }
    if let Some(db) = dbeta {
        for (t, &p) in db.iter_mut().zip(pb) {
            *t += p;
        }
    }
}
