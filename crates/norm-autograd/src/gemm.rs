//! The layers' matrix products `C = A·B` written into the caller's buffer (no packing
//! buffer, no allocation), on norm-core's vector layer. What does not live here: any blocking for large matrices (the
//! layers' matrices are tens to hundreds of rows and columns).

use norm_core::Float;
use norm_core::simd::{Path, Simd, SimdOp, run_on};

/// Depth of one accumulation block. Every element of `C` is a chain of multiply-adds
/// from 0 over `p` within a block of `KC` steps (fused on the AVX2+FMA and AVX-512
/// paths, a multiply then an add on the portable path); blocks are added to `C` in
/// order. On x86-64 that is how matrixmultiply (ndarray's `dot`) rounds, with its `kc`
/// of 256 for f32 and f64 and its FMA kernel only where the CPU has AVX2 and FMA, so the
/// products here have the same bits as `dot` on the same x86-64 CPU (tested). Elsewhere
/// they agree with `dot` within rounding only (on aarch64 matrixmultiply's NEON kernel
/// fuses, while norm-core's portable path does not).
const KC: usize = 256;

/// `A` read by strides: element `(i, p)` is `data[i·rs + p·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Strided<'a, F> {
    pub data: &'a [F],
    pub rs: usize,
    pub cs: usize,
}

/// `C (m, n) = A (m, k) · B (k, n)`; `B` row-major with row stride `ldb`, `C`
/// row-major `(m, n)`.
struct Gemm<'a, F> {
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'a, F>,
    b: &'a [F],
    ldb: usize,
    c: &'a mut [F],
}

impl<F: Float> Gemm<'_, F> {
    /// Columns `j0..j0 + T·W` of rows `i0..i0 + R`: `R·T` vectors accumulated at once
    /// (independent chains, so the FMA units stay busy), per block of `KC`.
    #[inline(always)]
    fn tile<S: Simd<E = F>, const R: usize, const T: usize>(&mut self, s: S, i0: usize, j0: usize) {
        let w = S::W;
        let (a, b, ldb, n) = (self.a, self.b, self.ldb, self.n);
        for p0 in (0..self.k).step_by(KC) {
            let mut acc = [[s.splat(F::zero()); T]; R];
            for p in p0..(p0 + KC).min(self.k) {
                let brow = &b[p * ldb + j0..p * ldb + j0 + T * w];
                let bv: [S::V; T] = std::array::from_fn(|q| s.load(&brow[q * w..]));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = s.splat(a.data[(i0 + r) * a.rs + p * a.cs]);
                    for (acc, &bv) in acc.iter_mut().zip(&bv) {
                        *acc = s.mul_add(av, bv, *acc);
                    }
                }
            }
            for (r, acc) in acc.iter().enumerate() {
                let crow = &mut self.c[(i0 + r) * n..(i0 + r + 1) * n];
                for (q, &acc) in acc.iter().enumerate() {
                    let dst = &mut crow[j0 + q * w..j0 + (q + 1) * w];
                    let v = if p0 == 0 { acc } else { s.add(s.load(dst), acc) };
                    s.store(dst, v);
                }
            }
        }
    }

    /// Rows `i0..i0 + R`, every full vector of columns.
    #[inline(always)]
    fn rows<S: Simd<E = F>, const R: usize>(&mut self, s: S, i0: usize, full: usize) {
        let w = S::W;
        let mut j = 0;
        while j + 4 * w <= full {
            self.tile::<S, R, 4>(s, i0, j);
            j += 4 * w;
        }
        if j + 2 * w <= full {
            self.tile::<S, R, 2>(s, i0, j);
            j += 2 * w;
        }
        if j < full {
            self.tile::<S, R, 1>(s, i0, j);
        }
    }

    /// Columns `j0..n` (fewer than one vector) of row `i`, one scalar chain each.
    #[inline(always)]
    fn tail<S: Simd<E = F>>(&mut self, s: S, i: usize, j0: usize) {
        const MAX: usize = 64;
        let (a, b, ldb, n) = (self.a, self.b, self.ldb, self.n);
        let crow = &mut self.c[i * n..(i + 1) * n];
        let mut j = j0;
        while j < n {
            let width = (n - j).min(MAX);
            for p0 in (0..self.k).step_by(KC) {
                let mut acc = [F::zero(); MAX];
                for p in p0..(p0 + KC).min(self.k) {
                    let av = a.data[i * a.rs + p * a.cs];
                    for (acc, &bv) in acc[..width].iter_mut().zip(&b[p * ldb + j..p * ldb + j + width]) {
                        *acc = s.mul_add1(av, bv, *acc);
                    }
                }
                for (c, &acc) in crow[j..j + width].iter_mut().zip(&acc[..width]) {
                    *c = if p0 == 0 { acc } else { *c + acc };
                }
            }
            j += width;
        }
    }
}

impl<F: Float> SimdOp<F> for Gemm<'_, F> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = F>>(mut self, s: S) {
        let full = self.n / S::W * S::W;
        if self.k == 0 {
            self.c.fill(F::zero());
            return;
        }
        let mut i = 0;
        while i + 4 <= self.m {
            self.rows::<S, 4>(s, i, full);
            i += 4;
        }
        while i < self.m {
            self.rows::<S, 1>(s, i, full);
            i += 1;
        }
        for i in 0..self.m {
            self.tail(s, i, full);
        }
    }
}

/// `c = a · b` for a row-major `b` (`k × n`, row stride `ldb`) and a row-major `c`
/// (`m × n`, overwritten), on the detected kernel path.
///
/// The caller guarantees the sizes: `a` covers `(m, k)` through its strides, `b` holds
/// `k` rows of `n`, `c` holds `m·n`.
pub(crate) fn gemm_into<F: Float>(
    m: usize,
    n: usize,
    k: usize,
    a: Strided<'_, F>,
    b: &[F],
    ldb: usize,
    c: &mut [F],
) {
    debug_assert!(c.len() == m * n && (k == 0 || b.len() >= (k - 1) * ldb + n));
    run_on(
        Path::detected(),
        Gemm {
            m,
            n,
            k,
            a,
            b,
            ldb,
            c,
        },
    );
}

/// `A` of a standard-layout matrix (`cols` columns), or of its transpose.
pub(crate) fn strided<F>(a: &[F], cols: usize, transposed: bool) -> Strided<'_, F> {
    if transposed {
        Strided {
            data: a,
            rs: 1,
            cs: cols,
        }
    } else {
        Strided {
            data: a,
            rs: cols,
            cs: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GradError;
    use ndarray::{Array2, ArrayRef2};

    /// Checks `a · b` and returns the product (on x86-64 the same bits as ndarray's
    /// `a.dot(b)` on the same CPU; see [`KC`]).
    fn matmul<F: Float>(
        what: &'static str,
        a: &ArrayRef2<F>,
        b: &ArrayRef2<F>,
    ) -> Result<Array2<F>, GradError> {
        if a.ncols() != b.nrows() {
            return Err(GradError::MatMul {
                what,
                left: a.shape().to_vec(),
                right: b.shape().to_vec(),
            });
        }
        let (m, k, n) = (a.nrows(), a.ncols(), b.ncols());
        let mut c = Array2::zeros((m, n));
        let a = a.as_standard_layout();
        let b = b.as_standard_layout();
        let (Some(a), Some(b), Some(cs)) = (a.as_slice(), b.as_slice(), c.as_slice_mut()) else {
            unreachable!("standard-layout arrays have row-major slices");
        };
        gemm_into(m, n, k, strided(a, k, false), b, n, cs);
        Ok(c)
    }

    fn check<F: Float + std::fmt::Debug>(m: usize, k: usize, n: usize, seed: u64) {
        let f = |i: usize, j: usize, s: u64| {
            let t = ((i * 131 + j * 71) as u64 ^ s).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            F::from_f64_round((t as f64 / (1u64 << 24) as f64 - 0.5) * 8.0)
        };
        let a = Array2::from_shape_fn((m, k), |(i, j)| f(i, j, seed));
        let b = Array2::from_shape_fn((k, n), |(i, j)| f(i, j, seed + 1));
        let got = matmul("test", &a, &b).unwrap();
        // On x86-64, the same bits as matrixmultiply through ndarray (same blocking, the
        // same fused or unfused multiply-adds); see `KC` for other targets.
        let want = if cfg!(target_arch = "x86_64") {
            a.dot(&b)
        } else {
            got.clone()
        };
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| g.to_f64_exact().to_bits() == w.to_f64_exact().to_bits()),
            "{m}x{k}x{n}"
        );
        // The transposed operand through strides equals the copy.
        let at = a.t().as_standard_layout().into_owned();
        let mut c = vec![F::zero(); m * n];
        gemm_into(
            m,
            n,
            k,
            strided(at.as_slice().unwrap(), m, true),
            b.as_slice().unwrap(),
            n,
            &mut c,
        );
        assert!(
            c.iter()
                .zip(&want)
                .all(|(g, w)| g.to_f64_exact().to_bits() == w.to_f64_exact().to_bits())
        );
        // And a slow f64 twin within rounding.
        for i in 0..m {
            for j in 0..n {
                let s: f64 = (0..k)
                    .map(|p| a[[i, p]].to_f64_exact() * b[[p, j]].to_f64_exact())
                    .sum();
                let bound: f64 = (0..k)
                    .map(|p| (a[[i, p]].to_f64_exact() * b[[p, j]].to_f64_exact()).abs())
                    .sum();
                let err = (got[[i, j]].to_f64_exact() - s).abs();
                assert!(
                    err <= bound * F::epsilon().to_f64_exact() * k as f64 + 1e-300,
                    "{err}"
                );
            }
        }
    }

    #[test]
    fn products_match_dot_bit_for_bit() {
        for &(m, k, n) in &[
            (1, 1, 1),
            (3, 5, 7),
            (128, 32, 32),
            (32, 128, 8),
            (16, 300, 70),
            (9, 64, 129),
            (2, 0, 3),
        ] {
            check::<f32>(m, k, n, 1);
            check::<f64>(m, k, n, 2);
        }
    }
}
