//! Backward row kernels over contiguous `&[F]` rows (one row of x, dy, dx at a time),
//! and the fixed-block driver that sums dgamma/dbeta deterministically.
//!
//! Nothing here validates: the slice and ndarray layers in `norm_backward.rs` check
//! lengths first. Derivations: `docs/math.md`, section "Backward".

use std::ops::Range;

use norm_core::Float;

/// Rows per reduction block: dgamma/dbeta are summed within blocks of this many rows
/// (in row order), and the block partials are added to the total in block order.
///
/// Because the blocks are fixed by the absolute row index, the result is the same bit
/// for bit however the rows are split across calls or threads.
pub const REDUCTION_BLOCK_ROWS: usize = 32;

/// Independent accumulators per row reduction (breaks the add dependency chain).
const LANES: usize = 8;

/// Pairwise fold of the accumulators, in a fixed order.
#[inline(always)]
fn fold<F: Float>(mut acc: [F; LANES]) -> F {
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

/// `(Σ (x_i − m), Σ g_i, Σ g_i·(x_i − m))` with `g = dy·w`, lane-parallel, one pass.
#[inline(always)]
fn sums_centered<F: Float>(x: &[F], dy: &[F], w: &[F], m: F) -> (F, F, F) {
    let mut ac = [F::zero(); LANES];
    let mut ag = [F::zero(); LANES];
    let mut agc = [F::zero(); LANES];
    let n = x.len() / LANES * LANES;
    for ((xc, dc), wc) in x[..n]
        .chunks_exact(LANES)
        .zip(dy[..n].chunks_exact(LANES))
        .zip(w[..n].chunks_exact(LANES))
    {
        for l in 0..LANES {
            let c = xc[l] - m;
            let g = dc[l] * wc[l];
            ac[l] += c;
            ag[l] += g;
            agc[l] += g * c;
        }
    }
    let (mut tc, mut tg, mut tgc) = (F::zero(), F::zero(), F::zero());
    for ((&xv, &dv), &wv) in x[n..].iter().zip(&dy[n..]).zip(&w[n..]) {
        let c = xv - m;
        let g = dv * wv;
        tc += c;
        tg += g;
        tgc += g * c;
    }
    (fold(ac) + tc, fold(ag) + tg, fold(agc) + tgc)
}

/// `Σ dy_i·w_i·x_i`, lane-parallel.
#[inline(always)]
fn sum_gx<F: Float>(x: &[F], dy: &[F], w: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let n = x.len() / LANES * LANES;
    for ((xc, dc), wc) in x[..n]
        .chunks_exact(LANES)
        .zip(dy[..n].chunks_exact(LANES))
        .zip(w[..n].chunks_exact(LANES))
    {
        for l in 0..LANES {
            acc[l] += dc[l] * wc[l] * xc[l];
        }
    }
    let mut t = F::zero();
    for ((&xv, &dv), &wv) in x[n..].iter().zip(&dy[n..]).zip(&w[n..]) {
        t += dv * wv * xv;
    }
    fold(acc) + t
}

/// LayerNorm backward of one row: writes `dx` and adds this row's `dy·x̂` to `dgamma`
/// and its `dy` to `dbeta` (when given).
///
/// ```text
/// x̂  = (x - mean)·rstd,    g = dy·gamma
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂))
/// ```
///
/// `mean` is the forward's mean rounded to `F`; for rows with a large offset
/// (1e6 + N(0, 0.01) in f32) that rounding is larger than the spread, so the kernel
/// first measures the residual `c = mean(x - mean)` (the differences are exact) and
/// centers with `(x - mean) - c`. That residual comes out of the same pass as the two
/// gradient sums, so the kernel reads each row twice: once for the sums, once to write.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward_row<F: Float>(
    x: &[F],
    dy: &[F],
    mean: F,
    rstd: F,
    weight: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) {
    let d = x.len();
    let inv_d = F::one() / F::from_usize(d).unwrap_or_else(F::one);
    // One pass for the three sums; with x̂ = ((x − mean) − c)·rstd,
    // Σ g·x̂ = rstd·(Σ g·(x − mean) − c·Σ g).
    let (sc, sg, sgc) = sums_centered(x, dy, weight, mean);
    let c = sc * inv_d;
    let sgx = rstd * (sgc - c * sg);
    let mg = sg * inv_d;
    let mgx = sgx * inv_d;
    match dbeta {
        Some(db) => {
            for (((((o, &xv), &dv), &wv), dg), db) in dx
                .iter_mut()
                .zip(x)
                .zip(dy)
                .zip(weight)
                .zip(dgamma.iter_mut())
                .zip(db.iter_mut())
            {
                let xh = ((xv - mean) - c) * rstd;
                *o = rstd * ((dv * wv - mg) - xh * mgx);
                *dg += dv * xh;
                *db += dv;
            }
        }
        None => {
            for ((((o, &xv), &dv), &wv), dg) in
                dx.iter_mut().zip(x).zip(dy).zip(weight).zip(dgamma.iter_mut())
            {
                let xh = ((xv - mean) - c) * rstd;
                *o = rstd * ((dv * wv - mg) - xh * mgx);
                *dg += dv * xh;
            }
        }
    }
}

/// RmsNorm backward of one row: writes `dx` and adds this row's `dy·x̂` to `dgamma`
/// and its `dy` to `dbeta` (when given).
///
/// ```text
/// x̂  = x·rrms,    g = dy·gamma
/// dx = rrms·(g - x̂·mean(g·x̂))
/// ```
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rms_norm_backward_row<F: Float>(
    x: &[F],
    dy: &[F],
    rrms: F,
    weight: &[F],
    dx: &mut [F],
    dgamma: &mut [F],
    dbeta: Option<&mut [F]>,
) {
    let d = x.len();
    let inv_d = F::one() / F::from_usize(d).unwrap_or_else(F::one);
    // Σ g·x̂ = rrms·Σ g·x.
    let mgx = rrms * sum_gx(x, dy, weight) * inv_d;
    match dbeta {
        Some(db) => {
            for (((((o, &xv), &dv), &wv), dg), db) in dx
                .iter_mut()
                .zip(x)
                .zip(dy)
                .zip(weight)
                .zip(dgamma.iter_mut())
                .zip(db.iter_mut())
            {
                let xh = xv * rrms;
                *o = rrms * (dv * wv - xh * mgx);
                *dg += dv * xh;
                *db += dv;
            }
        }
        None => {
            for ((((o, &xv), &dv), &wv), dg) in
                dx.iter_mut().zip(x).zip(dy).zip(weight).zip(dgamma.iter_mut())
            {
                let xh = xv * rrms;
                *o = rrms * (dv * wv - xh * mgx);
                *dg += dv * xh;
            }
        }
    }
}

/// Runs `block(rows, partial_dgamma, partial_dbeta)` for each fixed block of
/// [`REDUCTION_BLOCK_ROWS`] rows among `first_block..` (block indices are absolute), with
/// zeroed partials, and stores each block's partials in `partials` (`2·d` values per
/// block: dgamma then dbeta). `rows` is the total row count.
///
/// This is the unit of work a threaded driver hands out; [`combine_partials`] then adds
/// the partials in block order, so the split never changes a bit of the result.
pub(crate) fn block_partials<F: Float>(
    blocks: Range<usize>,
    rows: usize,
    d: usize,
    with_dbeta: bool,
    partials: &mut [F],
    mut block: impl FnMut(Range<usize>, &mut [F], Option<&mut [F]>),
) {
    for (b, part) in blocks.zip(partials.chunks_exact_mut(2 * d)) {
        part.iter_mut().for_each(|v| *v = F::zero());
        let start = b * REDUCTION_BLOCK_ROWS;
        let end = (start + REDUCTION_BLOCK_ROWS).min(rows);
        let (pg, pb) = part.split_at_mut(d);
        block(start..end, pg, with_dbeta.then_some(pb));
    }
}

/// Adds per-block partials (`2·d` values per block, in block order) into `dgamma` and
/// `dbeta`, which are first set to zero.
pub(crate) fn combine_partials<F: Float>(
    partials: &[F],
    d: usize,
    dgamma: &mut [F],
    mut dbeta: Option<&mut [F]>,
) {
    dgamma.iter_mut().for_each(|v| *v = F::zero());
    if let Some(db) = dbeta.as_deref_mut() {
        db.iter_mut().for_each(|v| *v = F::zero());
    }
    for part in partials.chunks_exact(2 * d) {
        let (pg, pb) = part.split_at(d);
        for (t, &p) in dgamma.iter_mut().zip(pg) {
            *t += p;
        }
        if let Some(db) = dbeta.as_deref_mut() {
            for (t, &p) in db.iter_mut().zip(pb) {
                *t += p;
            }
        }
    }
}

/// Number of reduction blocks for `rows` rows.
pub(crate) fn block_count(rows: usize) -> usize {
    rows.div_ceil(REDUCTION_BLOCK_ROWS)
}

/// The serial driver: every row through `row(i, dgamma_partial, dbeta_partial)`, in
/// fixed blocks, partials combined in block order. Keeps one partial buffer, adding it
/// into the totals after each block (the same additions, in the same order, as
/// [`combine_partials`] over all blocks).
pub(crate) fn run_blocked<F: Float>(
    rows: usize,
    d: usize,
    dgamma: &mut [F],
    mut dbeta: Option<&mut [F]>,
    mut row: impl FnMut(usize, &mut [F], Option<&mut [F]>),
) {
    let with_dbeta = dbeta.is_some();
    let mut part = vec![F::zero(); 2 * d];
    dgamma.iter_mut().for_each(|v| *v = F::zero());
    if let Some(db) = dbeta.as_deref_mut() {
        db.iter_mut().for_each(|v| *v = F::zero());
    }
    for b in 0..block_count(rows) {
        block_partials(b..b + 1, rows, d, with_dbeta, &mut part, |range, pg, mut pb| {
            for i in range {
                row(i, pg, pb.as_deref_mut());
            }
        });
        combine_into(&part, d, dgamma, dbeta.as_deref_mut());
    }
}

/// `dgamma += part[..d]`, `dbeta += part[d..]`.
fn combine_into<F: Float>(part: &[F], d: usize, dgamma: &mut [F], dbeta: Option<&mut [F]>) {
    let (pg, pb) = part.split_at(d);
    for (t, &p) in dgamma.iter_mut().zip(pg) {
        *t += p;
    }
    if let Some(db) = dbeta {
        for (t, &p) in db.iter_mut().zip(pb) {
            *t += p;
        }
    }
}
