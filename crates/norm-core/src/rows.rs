//! Drivers that apply a row kernel to every row: of a flat row-major slice, or of an
//! ndarray of any rank and layout (contiguous fast path, per-lane path for strided views).
//! Also the shape checks shared by both norms. Generic over the storage type, so the
//! half-precision norms (`storage.rs`) run on the same drivers.

use ndarray::{Array, ArrayRef, ArrayView1, ArrayViewMut1, Axis, Dimension};

use crate::NormError;
use crate::kernels::Out;
use crate::simd::{Store, Stores, stream_fence};

/// Checks a flat row-major input of row length `d` against its output; returns the row count.
pub(crate) fn check_slices(len: usize, out_len: usize, d: usize) -> Result<usize, NormError> {
    if d == 0 {
        return Err(NormError::ZeroDim);
    }
    if !len.is_multiple_of(d) {
        return Err(NormError::SliceLen { len, dim: d });
    }
    if out_len != len {
        return Err(NormError::BufferLen {
            name: "out",
            got: out_len,
            expected: len,
        });
    }
    Ok(len / d)
}

/// Checks a per-row statistics slice.
pub(crate) fn check_stats_len(name: &'static str, got: usize, rows: usize) -> Result<(), NormError> {
    if got != rows {
        return Err(NormError::StatsShape {
            name,
            got: vec![got],
            expected: vec![rows],
        });
    }
    Ok(())
}

/// Checks an ndarray input against the layer dimension (and an output, when given).
pub(crate) fn check_nd(shape: &[usize], out: Option<&[usize]>, dim: usize) -> Result<(), NormError> {
    let Some(&last) = shape.last() else {
        return Err(NormError::ZeroRank);
    };
    if last != dim {
        return Err(NormError::FeatureMismatch {
            shape: shape.to_vec(),
            got: last,
            dim,
        });
    }
    if let Some(out) = out
        && out != shape
    {
        return Err(NormError::OutputShape {
            input: shape.to_vec(),
            output: out.to_vec(),
        });
    }
    Ok(())
}

/// Inputs smaller than this many bytes run on the calling thread: a parallel split
/// costs a few microseconds, which only pays off on larger batches.
#[cfg(feature = "rayon")]
pub(crate) const PAR_MIN_BYTES: usize = 256 * 1024;

/// Target input bytes per parallel block. Blocks are whole rows, and their size depends
/// only on the row length and element type, never on the thread count.
#[cfg(feature = "rayon")]
pub(crate) const BLOCK_BYTES: usize = 64 * 1024;

/// Rows per parallel block for rows of `d` elements of `elem` bytes (at least one).
#[cfg(feature = "rayon")]
pub(crate) fn rows_per_block(d: usize, elem: usize) -> usize {
    (BLOCK_BYTES / (d.max(1) * elem.max(1))).max(1)
}

/// Whether a batch of `len` elements of type `F` is worth splitting across threads.
#[cfg(feature = "rayon")]
#[inline]
pub(crate) fn go_parallel<F>(len: usize) -> bool {
    len.saturating_mul(std::mem::size_of::<F>()) >= PAR_MIN_BYTES && rayon::current_num_threads() > 1
}

/// A row kernel as the drivers apply it: to one row (the strided lanes), or to a run of
/// consecutive rows in one call (the contiguous rows, which the kernels pipeline where
/// that measured faster: bf16/f16, f32/f64 in cache on AMD CPUs and out of cache on the
/// x86-64 paths of other CPUs).
pub(crate) trait RowKernel<E, S>: Sync {
    /// `out = norm(x)` for one row; returns its two statistics.
    fn row(&self, x: &[E], out: Out<'_, E>) -> (S, S);
    /// `out = norm(x)` for whole rows `x` (`out` as long); each row's two statistics go
    /// to `stats` where given. Bit-identical to [`row`](RowKernel::row) on each row.
    fn rows(&self, x: &[E], out: Out<'_, E>, stats: [Option<&mut [S]>; 2]);
}

/// Applies `kernel` to each `d`-long row of `x`, writing `out`; the two per-row
/// statistics go to `s0`/`s1` when given. Lengths must already be checked.
///
/// Each run of rows is written as `stores` decides from the size of the whole `out`
/// (so never differently per thread; under `Auto`, bf16/f16 rows short enough for
/// [`plain_stores_for_half_rows`](crate::simd::plain_stores_for_half_rows) keep plain
/// stores); each block that streamed is fenced before it returns.
///
/// With the `rayon` feature, large batches are split into fixed blocks of whole rows
/// ([`rows_per_block`]) run on the current rayon pool. Every row is computed by the same
/// kernel whichever thread runs it, so the output is bit-identical for any thread count.
pub(crate) fn run_rows<E: Elem, S: Stat>(
    x: &[E],
    out: &mut [E],
    d: usize,
    s0: Option<&mut [S]>,
    s1: Option<&mut [S]>,
    stores: Stores,
    kernel: &impl RowKernel<E, S>,
) {
    // Decided once for the whole call from the bytes it moves (x read, y written), as is
    // whether the call stays near the core (`kernels::near`); short 16-bit rows keep
    // plain stores where streaming them measured slower.
    let half = std::mem::size_of::<E>() == 2;
    let moved = std::mem::size_of::<E>().saturating_mul(x.len() + out.len());
    let store = match stores {
        Stores::Auto if half && crate::simd::plain_stores_for_half_rows(d) => Store::Cached,
        _ => stores.store_moved(moved),
    };
    let near = crate::kernels::near(moved);
    #[cfg(feature = "rayon")]
    if d > 0 && go_parallel::<E>(x.len()) {
        use rayon::prelude::*;
        let rb = rows_per_block(d, std::mem::size_of::<E>());
        let mut c0 = s0.map(|s| s.chunks_mut(rb));
        let mut c1 = s1.map(|s| s.chunks_mut(rb));
        let blocks: Vec<_> = x
            .chunks(rb * d)
            .zip(out.chunks_mut(rb * d))
            .map(|(xb, ob)| {
                let a = c0.as_mut().and_then(Iterator::next);
                let b = c1.as_mut().and_then(Iterator::next);
                (xb, ob, a, b)
            })
            .collect();
        blocks.into_par_iter().for_each(|(xb, y, a, b)| {
            run_rows_serial(
                xb,
                Out {
                    y,
                    store,
                    near,
                    seam: None,
                },
                a,
                b,
                kernel,
            )
        });
        return;
    }
    run_rows_serial(
        x,
        Out {
            y: out,
            store,
            near,
            seam: None,
        },
        s0,
        s1,
        kernel,
    );
}

/// The serial body of [`run_rows`]: one call of the kernel over all the rows.
fn run_rows_serial<E: Elem, S: Stat>(
    x: &[E],
    out: Out<'_, E>,
    s0: Option<&mut [S]>,
    s1: Option<&mut [S]>,
    kernel: &impl RowKernel<E, S>,
) {
    let store = out.store;
    kernel.rows(x, out, [s0, s1]);
    if store == Store::Streaming {
        stream_fence();
    }
}

/// Per-row statistics arrays, shaped like the input without its last axis.
pub type StatPair<F, D> = (
    Array<F, <D as Dimension>::Smaller>,
    Array<F, <D as Dimension>::Smaller>,
);

/// Applies `row` to every last-axis lane of `x` (any rank, any strides), writing `out`.
/// Shapes must already be checked (`x.ndim() >= 1`, same shapes). Returns the statistics.
pub(crate) fn run_nd<E: Elem, S: Stat, D: Dimension>(
    x: &ArrayRef<E, D>,
    out: &mut ArrayRef<E, D>,
    want_stats: bool,
    kernel: &impl RowKernel<E, S>,
) -> Result<StatPair<S, D>, NormError> {
    let ax = Axis(x.ndim() - 1);
    let d = x.len_of(ax);
    let stats_dim = x.raw_dim().try_remove_axis(ax);
    if let (Some(xs), Some(os)) = (x.as_slice(), out.as_slice_mut()) {
        // Contiguous row-major: the slice layer, no copies.
        if !want_stats {
            run_rows(xs, os, d, None, None, Stores::Auto, kernel);
            let z = S::default();
            return Ok((
                Array::from_elem(stats_dim.clone(), z),
                Array::from_elem(stats_dim, z),
            ));
        }
        let rows = xs.len().checked_div(d).unwrap_or(0);
        let mut s0 = vec![S::default(); rows];
        let mut s1 = vec![S::default(); rows];
        run_rows(xs, os, d, Some(&mut s0), Some(&mut s1), Stores::Auto, kernel);
        let shape_err = |_| NormError::StatsShape {
            name: "stats",
            got: vec![rows],
            expected: stats_dim.slice().to_vec(),
        };
        let a0 = Array::from_shape_vec(stats_dim.clone(), s0).map_err(shape_err)?;
        let a1 = Array::from_shape_vec(stats_dim.clone(), s1).map_err(shape_err)?;
        return Ok((a0, a1));
    }
    // Strided: one lane at a time through scratch rows when a lane is not contiguous;
    // large batches in fixed blocks of lanes on the rayon pool (each lane computed by
    // the same kernel whichever thread runs it, so the bits never depend on threads).
    let mut s0 = Array::from_elem(stats_dim.clone(), S::default());
    let mut s1 = Array::from_elem(stats_dim, S::default());
    let lanes = x
        .lanes(ax)
        .into_iter()
        .zip(out.lanes_mut(ax))
        .zip(s0.iter_mut().zip(s1.iter_mut()));
    #[cfg(feature = "rayon")]
    if d > 0 && go_parallel::<E>(x.len()) {
        use rayon::prelude::*;
        let lanes: Vec<_> = lanes.collect();
        let rb = rows_per_block(d, std::mem::size_of::<E>());
        let mut blocks: Vec<_> = Vec::with_capacity(lanes.len().div_ceil(rb));
        let mut it = lanes.into_iter().peekable();
        while it.peek().is_some() {
            blocks.push(it.by_ref().take(rb).collect::<Vec<_>>());
        }
        blocks
            .into_par_iter()
            .for_each(|block| strided_lanes(d, block, kernel));
        return Ok((s0, s1));
    }
    strided_lanes(d, lanes, kernel);
    Ok((s0, s1))
}

/// Lanes gathered together into scratch rows: neighbouring lanes of a transposed array
/// sit next to each other in memory, so reading element `k` of all of them at once
/// touches one or two cache lines instead of one line per lane.
const TILE: usize = 16;

/// Runs `row` over strided lanes (input lane, output lane, the two statistics), `TILE`
/// lanes at a time. Input lanes that are not contiguous are gathered into scratch rows,
/// element `k` of every lane of the tile before element `k + 1`; outputs that are not
/// contiguous are scattered back the same way. Each lane still runs the same row kernel on the same
/// values, so the results are the contiguous ones, bit for bit.
fn strided_lanes<'a, E: Elem + 'a, S: Stat + 'a>(
    d: usize,
    lanes: impl IntoIterator<Item = LaneJob<'a, E, S>>,
    kernel: &impl RowKernel<E, S>,
) {
    let mut xin = vec![E::default(); TILE * d];
    let mut yout = vec![E::default(); TILE * d];
    let mut lanes = lanes.into_iter().peekable();
    while lanes.peek().is_some() {
        let mut tile: Vec<LaneJob<'a, E, S>> = lanes.by_ref().take(TILE).collect();
        if tile.iter().any(|((xl, _), _)| xl.as_slice().is_none()) {
            for k in 0..d {
                for (j, ((xl, _), _)) in tile.iter().enumerate() {
                    xin[j * d + k] = xl[k];
                }
            }
        }
        let mut scatter = false;
        for (j, ((xl, ol), (a, b))) in tile.iter_mut().enumerate() {
            let xr = match xl.as_slice() {
                Some(x) => x,
                None => &xin[j * d..(j + 1) * d],
            };
            // One row at a time: `near` matters only to runs of rows.
            let (sa, sb) = match ol.as_slice_mut() {
                Some(o) => kernel.row(
                    xr,
                    Out {
                        y: o,
                        store: Store::Cached,
                        near: false,
                        seam: None,
                    },
                ),
                None => {
                    scatter = true;
                    kernel.row(
                        xr,
                        Out {
                            y: &mut yout[j * d..(j + 1) * d],
                            store: Store::Cached,
                            near: false,
                            seam: None,
                        },
                    )
                }
            };
            **a = sa;
            **b = sb;
        }
        if scatter {
            for k in 0..d {
                for (j, ((_, ol), _)) in tile.iter_mut().enumerate() {
                    if !ol.is_standard_layout() {
                        ol[k] = yout[j * d + k];
                    }
                }
            }
        }
    }
}

/// One strided lane's work: input lane, output lane, and where its two statistics go.
type LaneJob<'a, E, S> = ((ArrayView1<'a, E>, ArrayViewMut1<'a, E>), (&'a mut S, &'a mut S));

/// What the drivers move: an element of any storage type (`f32`, `f64`, `bf16`, `f16`).
pub(crate) trait Elem: Copy + Default + Send + Sync {}
impl<T: Copy + Default + Send + Sync> Elem for T {}

/// A per-row statistic (the accumulation type).
pub(crate) trait Stat: Copy + Default + Send + Sync {}
impl<T: Copy + Default + Send + Sync> Stat for T {}
