//! The fused residual add + norm of rows, for both norms and every storage type:
//! `h = x + r`, `y = norm(h)`, in one call per run of rows, pipelined by the plain rows'
//! rule (`pipelines`: the first reduction of row `i + 1` runs beside row `i`'s write
//! pass; the bf16/f16 rows on every CPU, the f32/f64 rows in cache on AMD CPUs and out
//! of cache on the x86-64 paths of other CPUs; on an Intel Xeon model 207 the f32 fused
//! rows ran 3-26% slower pipelined in cache, the bf16 ones 3-10% faster there and 10-30%
//! out of cache). With plain stores the first pass
//! writes `h` as it sums and the later passes read it from L1; with streaming stores the
//! passes before the write pass compute `x + r` again from L1 and the write pass writes `h`
//! and `y` together, both streamed. The same operations on the same values either way, so
//! the same bits, and the same bits as the unfused norm of `h`.

use super::stats::{Ahead, Beside, Cursor, First, Reach};
use super::write::{h_store, write};
use super::{
    Coef, Io, Kind, Native, Out, RowParams, finish, first_pass, moments, needs_rescue, pipelines, shift_of,
};
use crate::Float;
use crate::simd::{Path, Simd, SimdOp, Store, run_on};
#[allow(unused_imports)]
use num_traits::{Float as _, One as _};

/// Fused rows of norm `K`: `h = x + r` (in `E`), `out = norm(h)` for whole rows of
/// `p.weight.len()` elements (`r = None`: the residual is read from `h` and
/// overwritten, in place).
pub(super) struct AddRows<'a, K, I, E, F> {
    pub(super) x: &'a [E],
    pub(super) r: Option<&'a [E]>,
    pub(super) h: &'a mut [E],
    pub(super) p: RowParams<'a, F>,
    pub(super) out: Out<'a, E>,
    pub(super) kind: std::marker::PhantomData<(K, I)>,
}

impl<K: Kind, F: Float, E, I: Io<E, F>> SimdOp<F> for AddRows<'_, K, I, E, F> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        let AddRows { x, r, h, p, out, .. } = self;
        let d = p.weight.len();
        let rows = x.len().checked_div(d).unwrap_or(0);
        let (store, near) = (out.store, out.near);
        let row = |i: usize| (&x[i * d..(i + 1) * d], r.map(|r| &r[i * d..(i + 1) * d]));
        let mut hs = h.chunks_exact_mut(d).take(rows);
        let mut ys = out.y.chunks_exact_mut(d);
        let Some(mut hc) = hs.next() else {
            return;
        };
        // The shift of each row is taken before its first pass can overwrite `h`.
        let pipelined = pipelines::<S, E>(d, store);
        let prefetch = Reach::of(store);
        let (x0, r0) = row(0);
        let shift_at = |x: &[E], r: &[E]| shift_of::<K, F>(d, |i| I::add_at(x, r, i));
        let mut shift = shift_at(x0, r0.unwrap_or(hc));
        let mut first = add_first::<K, S, E, I>(s, shift, (x0, r0), &mut *hc, store);
        for i in 0..rows {
            let Some(y) = ys.next() else {
                return;
            };
            let (xr, rr) = row(i);
            let out = Out {
                y,
                store,
                near,
                seam: None,
            };
            let hn = hs.next();
            let (xn, rn) = row((i + 1).min(rows - 1));
            let shift_n = hn.as_deref().map_or(shift, |hn| shift_at(xn, rn.unwrap_or(hn)));
            let hn = match hn {
                Some(hn) if pipelined => hn,
                hn => {
                    let mut ahead = Ahead::after(xr, Some(rr.unwrap_or(hc)), prefetch);
                    add_row::<K, S, E, I>(s, (xr, rr), hc, (shift, first), p, out, &mut ahead);
                    let Some(hn) = hn else {
                        return;
                    };
                    first = add_first::<K, S, E, I>(s, shift_n, (xn, rn), &mut *hn, store);
                    (hc, shift) = (hn, shift_n);
                    continue;
                }
            };
            let term = First::<K, S>::new(s, shift_n);
            // Beside the next row's first reduction, the prefetch of the row after it.
            let ahead = Ahead::after(xn, Some(rn.unwrap_or(&*hn)), prefetch);
            first = if store == Store::Cached {
                let src = I::add_into::<S>(xn, rn, &mut *hn, Store::Cached);
                let mut next = (Cursor::new(s, d, src, term), ahead);
                add_row::<K, S, E, I>(s, (xr, rr), hc, (shift, first), p, out, &mut next);
                next.0.finish(s)
            } else {
                let mut next = (Cursor::new(s, d, I::sum::<S>(xn, rn.unwrap_or(hn)), term), ahead);
                add_row::<K, S, E, I>(s, (xr, rr), hc, (shift, first), p, out, &mut next);
                next.0.finish(s)
            };
            (hc, shift) = (hn, shift_n);
        }
    }
}

/// The first pass of fused row `(x, r)` alone: with plain stores it writes `h` as it
/// sums, with streaming stores it computes `x + r` again (`h` written in the write pass).
#[inline(always)]
fn add_first<K: Kind, S: Simd, E, I: Io<E, S::E>>(
    s: S,
    shift: S::E,
    (x, r): (&[E], Option<&[E]>),
    h: &mut [E],
    store: Store,
) -> [S::E; 2] {
    let n = x.len();
    if store == Store::Cached {
        first_pass::<K, S>(s, n, shift, I::add_into::<S>(x, r, h, Store::Cached))
    } else {
        first_pass::<K, S>(s, n, shift, I::sum::<S>(x, r.unwrap_or(h)))
    }
}

/// One fused row after its first pass (`shift` and the first sum given): the moments,
/// then the rescue path or the write pass, with `beside`'s steps beside it.
#[inline(always)]
fn add_row<K: Kind, S: Simd, E, I: Io<E, S::E>>(
    s: S,
    (x, r): (&[E], Option<&[E]>),
    h: &mut [E],
    (shift, first): (S::E, [S::E; 2]),
    p: RowParams<'_, S::E>,
    out: Out<'_, E>,
    beside: &mut impl Beside<S>,
) {
    let n = p.weight.len();
    if out.store == Store::Cached {
        // The first pass wrote `h`.
        let (m, var) = moments::<K, S>(s, n, shift, first, I::src::<S>(h));
        finish::<K, S, E, I>(s, (h, I::src::<S>(h)), (shift, m, var), p, out, beside);
        return;
    }
    let (m, var) = moments::<K, S>(s, n, shift, first, I::sum::<S>(x, r.unwrap_or(h)));
    if needs_rescue(var, p.eps) {
        first_pass::<K, S>(s, n, shift, I::add_into::<S>(x, r, &mut *h, Store::Cached));
        I::rescue::<K>(h, p, out.y);
        return;
    }
    let rr = S::E::one() / (var + p.eps).sqrt();
    let h_store = h_store::<S, E>(h.as_ptr(), out.y.as_ptr(), r.is_none());
    let src = I::add_into::<S>(x, r, h, h_store);
    write::<K, S, _, _>(s, src, p, Coef { shift, m, r: rr }, I::sink::<S>(out), beside);
}

/// Fused rows `h = x + r`, then norm `K` of `h`, on `path` (`r = None`: the residual is
/// `h`, in place).
#[inline(always)]
pub(crate) fn add_rows<K: Kind, F: Float>(
    path: Path,
    (x, r): (&[F], Option<&[F]>),
    h: &mut [F],
    p: RowParams<'_, F>,
    out: Out<'_, F>,
) {
    let kind = std::marker::PhantomData::<(K, Native)>;
    run_on(
        path,
        AddRows {
            x,
            r,
            h,
            p,
            out,
            kind,
        },
    );
}
