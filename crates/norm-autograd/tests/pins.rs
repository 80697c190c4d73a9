//! Bit pins of the backward kernels: an FNV-1a hash of the bits of dx, dgamma and dbeta
//! for fixed deterministic inputs, per kernel path, norm kind and element type, over row
//! lengths with vector tails and batches with several reduction blocks, with plain and
//! non-temporal dx stores, with and without software prefetches of the rows ahead
//! (`norm_core::simd::Prefetching`) and with streamed rows pipelined or one by one
//! (`norm_core::simd::Pipelining`; both process-wide, set only here). A refactor of the kernels must leave every hash as it is; a
//! change of summation order re-pins here in its own commit (its error bounds are
//! checked by the other tests).
//!
//! The saved statistics are computed here in f64 (not by the forward kernels), so a
//! change in the forward never moves these pins.

use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Stores, Sweep, backward_slice_on};
use norm_autograd::GradSlices;
use norm_core::Float;
use norm_core::simd::{Pipelining, Prefetching, set_pipelining, set_prefetching};

/// Deterministic values in `[lo, hi)` from a seed (splitmix64).
fn values(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut z = seed;
    (0..n)
        .map(|_| {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut v = z;
            v = (v ^ (v >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            v = (v ^ (v >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            v ^= v >> 31;
            lo + (hi - lo) * ((v >> 11) as f64 / (1u64 << 53) as f64)
        })
        .collect()
}

/// FNV-1a (64-bit) over the bytes of the values' bits.
fn fnv1a(h: &mut u64, v: &[impl Float]) {
    for a in v {
        for b in a.to_f64_exact().to_bits().to_le_bytes() {
            *h ^= u64::from(b);
            *h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
    }
}

/// The norm kinds pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// LayerNorm with a bias (dbeta computed).
    LayerNormBias,
    /// LayerNorm without a bias.
    LayerNorm,
    /// RmsNorm without a bias.
    RmsNorm,
    /// RmsNorm with a bias (dbeta computed).
    RmsNormBias,
}

const KINDS: [Kind; 4] = [
    Kind::LayerNormBias,
    Kind::LayerNorm,
    Kind::RmsNorm,
    Kind::RmsNormBias,
];

/// Row lengths: below, at and past vector widths (8, 16 lanes), odd tails, long rows.
const DIMS: [usize; 8] = [1, 5, 16, 33, 100, 259, 1024, 4099];
/// Batches: one row, a partial group, one block and a bit, several blocks.
const ROWS: [usize; 4] = [1, 3, 33, 70];

/// dx, dgamma, dbeta of one backward call.
type Out<F> = (Vec<F>, Vec<F>, Vec<F>);

/// The backward of `kind` on `rows × d` deterministic inputs (row offsets 0, 3, −1e3 and
/// 1e4 in turn, so LayerNorm's mean residual matters), statistics from f64.
fn backward<F: Float>(path: ForcedPath, kind: Kind, rows: usize, d: usize) -> Out<F> {
    let seed = (rows * 10_007 + d) as u64;
    let n = rows * d;
    let r = |v: f64| F::from_f64_round(v);
    let u = values(n, seed, -1.0, 1.0);
    let x: Vec<F> = (0..n)
        .map(|i| r([0.0, 3.0, -1e3, 1e4][(i / d) % 4] + [1.0, 0.5, 2.0, 7.0][(i / d) % 4] * u[i]))
        .collect();
    let dy: Vec<F> = values(n, seed ^ 1, -1.0, 1.0).into_iter().map(r).collect();
    let w: Vec<F> = values(d, seed ^ 2, 0.5, 1.5).into_iter().map(r).collect();
    let xf: Vec<f64> = x.iter().map(|v| v.to_f64_exact()).collect();
    let eps = 1e-5;
    let (mut mean, mut rstd, mut rrms) = (Vec::new(), Vec::new(), Vec::new());
    for row in xf.chunks(d) {
        let m = row.iter().sum::<f64>() / d as f64;
        let var = row.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / d as f64;
        let ms = row.iter().map(|v| v * v).sum::<f64>() / d as f64;
        mean.push(r(m));
        rstd.push(r(1.0 / (var + eps).sqrt()));
        rrms.push(r(1.0 / (ms + eps).sqrt()));
    }
    let (mut dx, mut dg, mut db) = (vec![F::zero(); n], vec![F::zero(); d], vec![F::zero(); d]);
    let bias = matches!(kind, Kind::LayerNormBias | Kind::RmsNormBias);
    let saved = match kind {
        Kind::LayerNormBias | Kind::LayerNorm => Saved::LayerNorm {
            mean: &mean,
            rstd: &rstd,
        },
        Kind::RmsNorm | Kind::RmsNormBias => Saved::RmsNorm { rrms: &rrms },
    };
    let input = BackwardInput {
        weight: &w,
        eps: r(eps),
        x: &x,
        dy: &dy,
        saved,
    };
    let grads = GradSlices {
        dx: &mut dx,
        dgamma: &mut dg,
        dbeta: bias.then_some(&mut db[..]),
    };
    backward_slice_on(path, Sweep::Serial, input, grads).expect("shapes match");
    (dx, dg, db)
}

/// The hash of every shape of `kind` on `path`; checks on the way that streaming dx
/// stores give the same bits as plain ones.
fn pin<F: Float>(path: ForcedPath, kind: Kind) -> u64 {
    let mut h = 0xCBF2_9CE4_8422_2325u64;
    for d in DIMS {
        for rows in ROWS {
            let plain = backward::<F>(path.with_stores(Stores::Cached), kind, rows, d);
            let streamed = backward::<F>(path.with_stores(Stores::Streaming), kind, rows, d);
            let bits = |o: &Out<F>| -> Vec<u64> {
                o.0.iter()
                    .chain(&o.1)
                    .chain(&o.2)
                    .map(|v| v.to_f64_exact().to_bits())
                    .collect()
            };
            assert_eq!(
                bits(&plain),
                bits(&streamed),
                "{} {kind:?} {rows}x{d}: streamed dx differs",
                path.path().name()
            );
            fnv1a(&mut h, &plain.0);
            fnv1a(&mut h, &plain.1);
            fnv1a(&mut h, &plain.2);
        }
    }
    h
}

/// The pinned hashes: (path name, element type, kind, hash), recorded on an Intel Xeon
/// (model 207) with all three paths.
const PINS: &[(&str, &str, Kind, u64)] = &[
    ("portable", "f32", Kind::LayerNormBias, 0x837ADFBB8A6C33FD),
    ("portable", "f64", Kind::LayerNormBias, 0x2C8CDDA465A99C02),
    ("portable", "f32", Kind::LayerNorm, 0x3054181C1B36B729),
    ("portable", "f64", Kind::LayerNorm, 0x74C5DBEEA858EA2E),
    ("portable", "f32", Kind::RmsNorm, 0xCF2FCC55A64CB2A1),
    ("portable", "f64", Kind::RmsNorm, 0x6E1E28EBF8E2EBF6),
    ("portable", "f32", Kind::RmsNormBias, 0x10D9375F53B59701),
    ("portable", "f64", Kind::RmsNormBias, 0x9532AECF6AEAF372),
    ("avx2-fma", "f32", Kind::LayerNormBias, 0x6535909801B0EB79),
    ("avx2-fma", "f64", Kind::LayerNormBias, 0xC2573692F514FFB7),
    ("avx2-fma", "f32", Kind::LayerNorm, 0xC505675F8F546739),
    ("avx2-fma", "f64", Kind::LayerNorm, 0xD19BE22441938E47),
    ("avx2-fma", "f32", Kind::RmsNorm, 0xB14EE73961ADF2BE),
    ("avx2-fma", "f64", Kind::RmsNorm, 0xAA41CFABB5B26977),
    ("avx2-fma", "f32", Kind::RmsNormBias, 0xA5181F882B5FC31E),
    ("avx2-fma", "f64", Kind::RmsNormBias, 0xE1153E8FDA99C853),
    ("avx512", "f32", Kind::LayerNormBias, 0xC72D1507F95592E5),
    ("avx512", "f64", Kind::LayerNormBias, 0x9FE1959F2830CA7B),
    ("avx512", "f32", Kind::LayerNorm, 0x3112DBCC3C57A83D),
    ("avx512", "f64", Kind::LayerNorm, 0xF62B5602C21E65F3),
    ("avx512", "f32", Kind::RmsNorm, 0xB839B89E9A334AE2),
    ("avx512", "f64", Kind::RmsNorm, 0x7D4B8939AD570B87),
    ("avx512", "f32", Kind::RmsNormBias, 0xACE22D97EA407D3E),
    ("avx512", "f64", Kind::RmsNormBias, 0x039188A70235A583),
];

#[test]
fn backward_bits_match_the_pins() {
    let mut got = Vec::new();
    let modes = [Prefetching::Never, Prefetching::Always]
        .into_iter()
        .flat_map(|f| [Pipelining::Always, Pipelining::Never].map(|p| (f, p)));
    for mode in modes {
        set_prefetching(mode.0);
        set_pipelining(mode.1);
        for path in ForcedPath::all() {
            for kind in KINDS {
                got.push((mode, path.path().name(), "f32", kind, pin::<f32>(path, kind)));
                got.push((mode, path.path().name(), "f64", kind, pin::<f64>(path, kind)));
            }
        }
    }
    set_prefetching(Prefetching::Auto);
    set_pipelining(Pipelining::Auto);
    let table: String = got
        .iter()
        .filter(|e| e.0 == (Prefetching::Never, Pipelining::Always))
        .map(|(_, p, t, k, h)| format!("    ({p:?}, {t:?}, Kind::{k:?}, 0x{h:016X}),\n"))
        .collect();
    let mut checked = 0;
    for &(mode, p, t, k, h) in &got {
        let pinned = PINS.iter().find(|e| e.0 == p && e.1 == t && e.2 == k);
        let Some(&(_, _, _, want)) = pinned else {
            panic!("no pin for {p} {t} {k:?}; the current table:\n{table}");
        };
        assert_eq!(
            h, want,
            "{p} {t} {k:?} ({mode:?}) changed; the current table:\n{table}"
        );
        checked += 1;
    }
    assert!(checked >= 8, "at least the portable path is pinned");
}
