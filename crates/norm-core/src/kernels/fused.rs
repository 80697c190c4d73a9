//! The fused residual add + norm of one row, for both norms: `h = x + r`, `y = norm(h)`.
//! With plain stores the first pass writes `h` as it sums and the later passes read it
//! from L1; with streaming stores the passes before the write pass compute `x + r`
//! again from L1 and the write pass writes `h` and `y` together, both streamed. The same
//! operations on the same values either way, so the same bits, and the same bits as the
//! unfused norm of `h`.

use super::stats::{AddInto, Ahead, Plain, Sum};
use super::write::{h_store, write};
use super::{
    Coef, Kind, Native, Out, RowParams, finish, first_pass, moments, needs_rescue, rescue, shift_of,
};
use crate::Float;
use crate::simd::{Path, Simd, SimdOp, Store, run_on};
#[allow(unused_imports)]
use num_traits::Float as _;

/// Residual add + norm `K` of one row: `h = x + r`, `out = norm(h)`; returns the row's
/// statistics. With `r = None` the residual is read from `h` and overwritten (in place).
struct AddRow<'a, K, F> {
    x: &'a [F],
    r: Option<&'a [F]>,
    h: &'a mut [F],
    p: RowParams<'a, F>,
    out: Out<'a, F>,
    kind: std::marker::PhantomData<K>,
}

impl<K: Kind, F: Float> SimdOp<F> for AddRow<'_, K, F> {
    type Out = (F, F);
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> (F, F) {
        let (x, r, h, p, out) = (self.x, self.r, self.h, self.p, self.out);
        let n = x.len();
        let shift = shift_of::<K, F>(x[0] + r.map_or(h[0], |r| r[0]));
        let mut ahead = Ahead::after(x, Some(r.unwrap_or(h)));
        let h_plain = |h| AddInto {
            x,
            r,
            h,
            h_store: Store::Cached,
        };
        if out.store == Store::Cached {
            let first = first_pass::<K, S>(s, n, shift, h_plain(&mut *h));
            let (m, var) = moments::<K, S>(s, n, shift, first, Plain(h));
            return finish::<K, S, F, Native>(s, h, (shift, m, var), p, out, &mut ahead);
        }
        let rv: &[F] = r.unwrap_or(h);
        let first = first_pass::<K, S>(s, n, shift, Sum { x, r: rv });
        let (m, var) = moments::<K, S>(s, n, shift, first, Sum { x, r: rv });
        if needs_rescue(var, p.eps) {
            first_pass::<K, S>(s, n, shift, h_plain(&mut *h));
            return rescue::<K, F>(h, p, out.y);
        }
        let rr = F::one() / (var + p.eps).sqrt();
        let h_store = h_store::<S, F>(h.as_ptr(), out.y.as_ptr(), r.is_none());
        let src = AddInto { x, r, h, h_store };
        write::<K, S>(s, src, p, Coef { shift, m, r: rr }, out, &mut ahead);
        K::stats(shift + m, rr)
    }
}

/// `h = x + r` then norm `K` of `h`, on `path` (`r = None`: the residual is `h`, in
/// place); returns the row's statistics.
#[inline(always)]
pub(crate) fn add_row<K: Kind, F: Float>(
    path: Path,
    (x, r): (&[F], Option<&[F]>),
    h: &mut [F],
    p: RowParams<'_, F>,
    out: Out<'_, F>,
) -> (F, F) {
    let kind = std::marker::PhantomData::<K>;
    run_on(
        path,
        AddRow {
            x,
            r,
            h,
            p,
            out,
            kind,
        },
    )
}
