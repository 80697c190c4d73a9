//! Bit pins: an FNV-1a hash of every output of the forward kernels for fixed inputs, per
//! kernel path (portable, AVX2+FMA, AVX-512F, forced with `ForcedPath`), element type
//! and norm kind, so a restructuring of the kernels can show that it changed no bit.
//!
//! Each pin covers rows of many lengths (vector tails, accumulator blocks and groups of
//! blocks), ordinary and offset rows, eps > 0 and eps = 0, plain and streaming stores at
//! two output alignments; `forward` hashes `y`, `stats` the per-row statistics, `fused`
//! `h` and `y` of the fused residual add + norm (separate `h` and in place), `rescue`
//! everything on rows that take the rescue path (squares that overflow or underflow,
//! constant rows, NaN, infinity). NaNs hash as one canonical pattern.
//!
//! Paths this CPU lacks are skipped, but their pins stay recorded. A change that is meant
//! to change bits (another summation order, a numerics fix) re-pins in its own commit:
//! on a mismatch the test prints the whole table as measured here, ready to paste.

use norm_core::dispatch::ForcedPath;
use norm_core::simd::Stores;
use norm_core::{Float, KernelPath, LayerNorm, RmsNorm};

/// splitmix64, mapped to roughly N(0, 1) (sum of four uniforms, rescaled).
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        ((self.uniform() + self.uniform() + self.uniform() + self.uniform()) - 2.0) * 3f64.sqrt()
    }
    fn vec<F: Float>(&mut self, n: usize, loc: f64, scale: f64) -> Vec<F> {
        (0..n)
            .map(|_| F::from_f64_round(loc + scale * self.normal()))
            .collect()
    }
}

/// FNV-1a over the bits of each value (as `f64`, which is exact for both types); every
/// NaN hashes as the same pattern.
#[derive(Clone, Copy)]
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Fnv(0xCBF2_9CE4_8422_2325)
    }
    fn add<F: Float>(&mut self, v: &[F]) {
        for x in v {
            let x = x.to_f64_exact();
            let b = if x.is_nan() {
                0x7FF8_0000_0000_0000
            } else {
                x.to_bits()
            };
            for byte in b.to_le_bytes() {
                self.0 ^= u64::from(byte);
                self.0 = self.0.wrapping_mul(0x0000_0100_0000_01B3);
            }
        }
    }
}

/// Row lengths: every vector tail, one block of accumulators (128-512 elements by path
/// and type) and past it, and past a group of blocks (2048-8192) with a partial block.
const DIMS: [usize; 16] = [1, 2, 3, 7, 8, 15, 17, 31, 64, 65, 100, 257, 768, 1000, 4099, 8257];

/// `(loc, scale)` of the ordinary rows, one row each: centered, offset, large offset
/// (f32 1e5 + N(0, 0.1) keeps many distinct values), wide.
const ROWS: [(f64, f64); 4] = [(0.0, 1.0), (1e4, 1.0), (1e5, 0.1), (-3.0, 1e3)];

/// Rows that take the rescue path, between two ordinary rows.
fn rescue_rows<F: Float>(rng: &mut Rng, d: usize) -> Vec<F> {
    let f32 = std::mem::size_of::<F>() == 4;
    let (huge, tiny) = if f32 { (1e30, 1e-30) } else { (1e200, 1e-160) };
    let mut x: Vec<F> = rng.vec(d, 0.5, 2.0);
    x.extend(rng.vec::<F>(d, 0.0, huge));
    x.extend(rng.vec::<F>(d, 0.0, tiny));
    x.extend(vec![F::from_f64_round(0.75); d]);
    for bad in [F::nan(), F::infinity()] {
        let mut r: Vec<F> = rng.vec(d, 0.5, 2.0);
        r[d / 2] = bad;
        x.extend(r);
    }
    x.extend(rng.vec::<F>(d, -1.0, 1.0));
    x
}

/// Which norm a pin covers.
#[derive(Clone, Copy)]
enum Kind {
    Ln,
    LnBias,
    Rms,
    RmsBias,
}

const KINDS: [Kind; 4] = [Kind::Ln, Kind::LnBias, Kind::Rms, Kind::RmsBias];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Ln => "ln",
            Kind::LnBias => "ln-bias",
            Kind::Rms => "rms",
            Kind::RmsBias => "rms-bias",
        }
    }
    fn is_ln(self) -> bool {
        matches!(self, Kind::Ln | Kind::LnBias)
    }
    fn bias(self) -> bool {
        matches!(self, Kind::LnBias | Kind::RmsBias)
    }
}

/// One norm of either kind, run through a forced path.
enum Norm<F: Float> {
    Ln(LayerNorm<F>),
    Rms(RmsNorm<F>),
}

impl<F: Float> Norm<F> {
    fn new(kind: Kind, rng: &mut Rng, d: usize, eps: f64) -> Self {
        let w: Vec<F> = rng.vec(d, 1.0, 0.5);
        let b = kind.bias().then(|| rng.vec(d, 0.0, 0.5));
        let eps = F::from_f64_round(eps);
        if kind.is_ln() {
            Norm::Ln(LayerNorm::from_weights(w, b, eps).expect("valid parameters"))
        } else {
            Norm::Rms(RmsNorm::from_weights(w, b, eps).expect("valid parameters"))
        }
    }

    /// `y` and the statistics (LayerNorm: means then rstds; RmsNorm: rrms).
    fn forward(&self, p: ForcedPath, x: &[F], y: &mut [F]) -> Vec<F> {
        let d = match self {
            Norm::Ln(n) => n.dim(),
            Norm::Rms(n) => n.dim(),
        };
        let rows = x.len() / d;
        let (mut a, mut b) = (vec![F::zero(); rows], vec![F::zero(); rows]);
        match self {
            Norm::Ln(n) => {
                p.layer_norm_slice(n, x, y, &mut a, &mut b)
                    .expect("valid lengths");
                a.extend(b);
                a
            }
            Norm::Rms(n) => {
                p.rms_norm_slice(n, x, y, &mut a).expect("valid lengths");
                a
            }
        }
    }

    fn add(&self, p: ForcedPath, x: &[F], r: &mut [F], h: Option<&mut [F]>, y: &mut [F]) {
        match self {
            Norm::Ln(n) => p.layer_norm_add_slice(n, x, r, h, y),
            Norm::Rms(n) => p.rms_norm_add_slice(n, x, r, h, y),
        }
        .expect("valid lengths");
    }
}

/// Runs the forward and both fused forms of `norm` on `x` (residual `r`) on `p`, outputs
/// starting `off` elements into their buffers. Returns `[y, statistics, h and y of the
/// fused forms]`.
fn case<F: Float>(p: ForcedPath, norm: &Norm<F>, x: &[F], r: &[F], off: usize) -> [Vec<F>; 3] {
    let n = x.len();
    let mut y = vec![F::zero(); n + off];
    let stats = norm.forward(p, x, &mut y[off..]);
    let plain = y[off..].to_vec();
    let mut fused = Vec::new();
    let mut h = vec![F::zero(); n + off];
    let mut rr = r.to_vec();
    norm.add(p, x, &mut rr, Some(&mut h[off..]), &mut y[off..]);
    fused.extend_from_slice(&h[off..]);
    fused.extend_from_slice(&y[off..]);
    let mut buf = vec![F::zero(); n + off];
    buf[off..].copy_from_slice(r);
    norm.add(p, x, &mut buf[off..], None, &mut y[off..]);
    fused.extend_from_slice(&buf[off..]);
    fused.extend_from_slice(&y[off..]);
    [plain, stats, fused]
}

/// Hashes `[forward, stats, fused, rescue]` of one kind and type on `p`, with its store
/// policy, outputs starting `off` elements into their buffers.
fn hashes<F: Float>(p: ForcedPath, kind: Kind, off: usize) -> [u64; 4] {
    let mut hs = [Fnv::new(); 4];
    let mut rng = Rng(0x5EED ^ kind as u64);
    for &d in &DIMS {
        for eps in [1e-5, 0.0] {
            let norm = Norm::<F>::new(kind, &mut rng, d, eps);
            let mut x: Vec<F> = Vec::new();
            for (loc, scale) in ROWS {
                x.extend(rng.vec::<F>(d, loc, scale));
            }
            let r: Vec<F> = rng.vec(x.len(), -1.0, 1.0);
            for (h, out) in hs.iter_mut().zip(case(p, &norm, &x, &r, off)) {
                h.add(&out);
            }
            let x = rescue_rows::<F>(&mut rng, d);
            let r = rescue_rows::<F>(&mut rng, d);
            for out in case(p, &norm, &x, &r, off) {
                hs[3].add(&out);
            }
        }
    }
    hs.map(|h| h.0)
}

const OPS: [&str; 4] = ["forward", "stats", "fused", "rescue"];

/// The pinned hashes, measured on an Intel Xeon (model 207, AVX-512) before the kernels
/// were restructured: `(path/type/kind/op, hash)`.
const PINS: &[(&str, u64)] = &[
    ("portable/f32/ln/forward", 0x43048324dfaf264f),
    ("portable/f32/ln/stats", 0x9b931e91d8a17200),
    ("portable/f32/ln/fused", 0x997f9b0d914a5255),
    ("portable/f32/ln/rescue", 0xf5e532720d3efb9c),
    ("portable/f32/ln-bias/forward", 0x6d021ad60122b899),
    ("portable/f32/ln-bias/stats", 0xd9d2dfcb54288463),
    ("portable/f32/ln-bias/fused", 0x94385eeb8f0e7701),
    ("portable/f32/ln-bias/rescue", 0xee702adb55fbb6d3),
    ("portable/f32/rms/forward", 0x055a0cebdd17ddf4),
    ("portable/f32/rms/stats", 0x258e16c881c37085),
    ("portable/f32/rms/fused", 0x19e42e32ae549fbd),
    ("portable/f32/rms/rescue", 0x2d6bceaf2642ecf1),
    ("portable/f32/rms-bias/forward", 0x4bfa9729114b5efe),
    ("portable/f32/rms-bias/stats", 0x04f30fabf7a74410),
    ("portable/f32/rms-bias/fused", 0xf53fa7011c104991),
    ("portable/f32/rms-bias/rescue", 0x50665229bfd1f8f8),
    ("portable/f64/ln/forward", 0xe72fc7aa28cc0304),
    ("portable/f64/ln/stats", 0xc65d9d66ab3cd8ec),
    ("portable/f64/ln/fused", 0xed2a5635191c09a5),
    ("portable/f64/ln/rescue", 0xbfae6157ea62ca4d),
    ("portable/f64/ln-bias/forward", 0x24c585cc8151732c),
    ("portable/f64/ln-bias/stats", 0x7c24ca049d230ccf),
    ("portable/f64/ln-bias/fused", 0x44ff0ed36c22792d),
    ("portable/f64/ln-bias/rescue", 0xc334dbf62db01173),
    ("portable/f64/rms/forward", 0x85b679a77904d678),
    ("portable/f64/rms/stats", 0x310febcf6d448345),
    ("portable/f64/rms/fused", 0x9496f0821690cf81),
    ("portable/f64/rms/rescue", 0x617febffe361f223),
    ("portable/f64/rms-bias/forward", 0x86abdc5380d390f3),
    ("portable/f64/rms-bias/stats", 0xf2a3e512e35d485e),
    ("portable/f64/rms-bias/fused", 0x23f65aef1a164079),
    ("portable/f64/rms-bias/rescue", 0x16128bcc134efdb7),
    ("avx2-fma/f32/ln/forward", 0x43048324dfaf264f),
    ("avx2-fma/f32/ln/stats", 0x9b931e91d8a17200),
    ("avx2-fma/f32/ln/fused", 0xcc97207886c42eed),
    ("avx2-fma/f32/ln/rescue", 0x7d76efb18de7e256),
    ("avx2-fma/f32/ln-bias/forward", 0xd1ee201f313c0abb),
    ("avx2-fma/f32/ln-bias/stats", 0x978e5133e314b45a),
    ("avx2-fma/f32/ln-bias/fused", 0x2541bee88f3a5481),
    ("avx2-fma/f32/ln-bias/rescue", 0xeccb7fee09b56104),
    ("avx2-fma/f32/rms/forward", 0x36f924027d1fc1c6),
    ("avx2-fma/f32/rms/stats", 0x312f9c161bff2aae),
    ("avx2-fma/f32/rms/fused", 0x300c3f5f2d4cc879),
    ("avx2-fma/f32/rms/rescue", 0x56396cf5c099ade5),
    ("avx2-fma/f32/rms-bias/forward", 0x024f1a7c5d89b67a),
    ("avx2-fma/f32/rms-bias/stats", 0x0a2cfa358a36903e),
    ("avx2-fma/f32/rms-bias/fused", 0x3c7983fa3cf2246d),
    ("avx2-fma/f32/rms-bias/rescue", 0x16d3c27a7343fc74),
    ("avx2-fma/f64/ln/forward", 0x83828c3771666f66),
    ("avx2-fma/f64/ln/stats", 0x1aa47b5dcecb1ceb),
    ("avx2-fma/f64/ln/fused", 0x767c6fe2edc68a99),
    ("avx2-fma/f64/ln/rescue", 0x10636cf44ee20f5d),
    ("avx2-fma/f64/ln-bias/forward", 0xc7542f2633b99a22),
    ("avx2-fma/f64/ln-bias/stats", 0x97aab78a60d49912),
    ("avx2-fma/f64/ln-bias/fused", 0x7a334336112ca039),
    ("avx2-fma/f64/ln-bias/rescue", 0xb4fb6b3a829c42e8),
    ("avx2-fma/f64/rms/forward", 0x120249d568c2dd1d),
    ("avx2-fma/f64/rms/stats", 0x55ea8b5788367b9e),
    ("avx2-fma/f64/rms/fused", 0x3970ed5b41f9cce5),
    ("avx2-fma/f64/rms/rescue", 0xb0e81b6f45423452),
    ("avx2-fma/f64/rms-bias/forward", 0x4f173b4393fdeaac),
    ("avx2-fma/f64/rms-bias/stats", 0xa56f1a2e737b37ef),
    ("avx2-fma/f64/rms-bias/fused", 0x85e86eae09c0386d),
    ("avx2-fma/f64/rms-bias/rescue", 0xc66c88940e6e8201),
    ("avx512/f32/ln/forward", 0xcb066bd0d833fc8a),
    ("avx512/f32/ln/stats", 0x85c59cfc907b2adf),
    ("avx512/f32/ln/fused", 0x216d86953f66d9e1),
    ("avx512/f32/ln/rescue", 0x8459e4ec9c095972),
    ("avx512/f32/ln-bias/forward", 0xbe6fd1604257b206),
    ("avx512/f32/ln-bias/stats", 0x55ebaaf49b2fef28),
    ("avx512/f32/ln-bias/fused", 0x702dacf0ce3eb4b9),
    ("avx512/f32/ln-bias/rescue", 0x24c95beac09e24a6),
    ("avx512/f32/rms/forward", 0xeb1c3a6f1d17825f),
    ("avx512/f32/rms/stats", 0x73ef13917aa4d205),
    ("avx512/f32/rms/fused", 0x1e5febf863cf28f9),
    ("avx512/f32/rms/rescue", 0x43f787f0e05cd7df),
    ("avx512/f32/rms-bias/forward", 0x76e3d62c7bbb1f5f),
    ("avx512/f32/rms-bias/stats", 0xab07783e6a0a5db0),
    ("avx512/f32/rms-bias/fused", 0x418f6d3bb7b8327d),
    ("avx512/f32/rms-bias/rescue", 0x2c046b81ff2ab0d4),
    ("avx512/f64/ln/forward", 0x4934875f3895868a),
    ("avx512/f64/ln/stats", 0x3f348ea696c20f84),
    ("avx512/f64/ln/fused", 0x7b36e6ae0ffdc1dd),
    ("avx512/f64/ln/rescue", 0x1a4344e6883294c1),
    ("avx512/f64/ln-bias/forward", 0x5da15653d1ebe1d9),
    ("avx512/f64/ln-bias/stats", 0x24de617718b36ab0),
    ("avx512/f64/ln-bias/fused", 0x19a92581aa92d8c9),
    ("avx512/f64/ln-bias/rescue", 0x44411fbde18496ab),
    ("avx512/f64/rms/forward", 0x8285e34dd18e0929),
    ("avx512/f64/rms/stats", 0x1738116ec00d6fc0),
    ("avx512/f64/rms/fused", 0xe294f43c890b2aad),
    ("avx512/f64/rms/rescue", 0x88bd94845819d993),
    ("avx512/f64/rms-bias/forward", 0xef5b062436f353c6),
    ("avx512/f64/rms-bias/stats", 0x37e674af483f2845),
    ("avx512/f64/rms-bias/fused", 0x05350d9311bc5bfd),
    ("avx512/f64/rms-bias/rescue", 0xaca49ff51a548660),
];

/// The hashes of every pin on `path`, computed with plain and with streaming stores at
/// two output alignments; all four must agree (the stores never change a value).
fn measure(path: KernelPath) -> Option<Vec<(String, u64)>> {
    let p = ForcedPath::new(path)?;
    let mut out = Vec::new();
    for ty in ["f32", "f64"] {
        for kind in KINDS {
            let run = |q: ForcedPath, off: usize| match ty {
                "f32" => hashes::<f32>(q, kind, off),
                _ => hashes::<f64>(q, kind, off),
            };
            let plain = run(p.with_stores(Stores::Cached), 0);
            for (stores, off) in [
                (Stores::Cached, 3),
                (Stores::Streaming, 0),
                (Stores::Streaming, 5),
            ] {
                assert_eq!(
                    run(p.with_stores(stores), off),
                    plain,
                    "{} {ty} {}: {stores:?} stores at offset {off} changed a bit",
                    path.name(),
                    kind.name()
                );
            }
            for (op, h) in OPS.iter().zip(plain) {
                out.push((format!("{}/{ty}/{}/{op}", path.name(), kind.name()), h));
            }
        }
    }
    Some(out)
}

#[test]
fn outputs_match_their_pins_bit_for_bit() {
    let all = [KernelPath::Portable, KernelPath::Avx2Fma, KernelPath::Avx512];
    let measured: Vec<(String, u64)> = all.into_iter().filter_map(measure).flatten().collect();
    assert!(!measured.is_empty());
    let mut bad = Vec::new();
    for (key, h) in &measured {
        match PINS.iter().find(|(k, _)| k == key) {
            Some((_, pin)) if pin == h => {}
            Some((_, pin)) => bad.push(format!("{key}: pinned {pin:#018x}, got {h:#018x}")),
            None => bad.push(format!("{key}: no pin")),
        }
    }
    if !bad.is_empty() {
        let table: String = measured
            .iter()
            .map(|(k, h)| format!("    (\"{k}\", {h:#018x}),\n"))
            .collect();
        panic!(
            "{} of {} pins differ:\n{}\nmeasured here:\n{table}",
            bad.len(),
            measured.len(),
            bad.join("\n")
        );
    }
}

/// The public (detected-path) entry points give the forced detected path's bits.
#[test]
fn public_entry_points_run_the_pinned_kernels() {
    let p = ForcedPath::new(KernelPath::detected()).expect("the detected path runs");
    let mut rng = Rng(3);
    for &d in &DIMS {
        let x: Vec<f32> = rng.vec(3 * d, 1e4, 1.0);
        let r: Vec<f32> = rng.vec(3 * d, 0.0, 1.0);
        let ln = LayerNorm::<f32>::new(d).expect("d > 0").with_zero_bias();
        let rms = RmsNorm::<f32>::new(d).expect("d > 0");
        let (mut a, mut b) = (vec![0.0f32; 3 * d], vec![0.0f32; 3 * d]);
        let (mut m, mut s) = (vec![0.0f32; 3], vec![0.0f32; 3]);
        ln.forward_slice(&x, &mut a).expect("valid lengths");
        p.layer_norm_slice(&ln, &x, &mut b, &mut m, &mut s)
            .expect("valid lengths");
        assert_eq!(a, b, "LayerNorm d={d}");
        rms.forward_slice(&x, &mut a).expect("valid lengths");
        p.rms_norm_slice(&rms, &x, &mut b, &mut s).expect("valid lengths");
        assert_eq!(a, b, "RmsNorm d={d}");
        let (mut h1, mut h2, mut rr) = (vec![0.0f32; 3 * d], vec![0.0f32; 3 * d], r.clone());
        ln.add_forward_slice(&x, &r, &mut h1, &mut a)
            .expect("valid lengths");
        p.layer_norm_add_slice(&ln, &x, &mut rr, Some(&mut h2), &mut b)
            .expect("valid lengths");
        assert!(a == b && h1 == h2, "fused LayerNorm d={d}");
    }
}
