//! `bench-peers`: times LayerNorm and RmsNorm forward (f32) side by side on the same
//! inputs — norm-core, candle-nn's CPU `ops::layer_norm`/`ops::rms_norm`, a naive ndarray
//! composition (`mean_axis` + broadcasting), and a copy kernel (`y = x · c`, the memory
//! bandwidth ceiling, with plain and with non-temporal stores) — on 1 and 2 rayon threads. Before timing, it checks that all of them
//! agree on the input (max abs difference) and measures each one's error against the f64
//! reference on rows with a large offset. Then the same for the half-precision storage
//! types (bf16, f16): norm-core's `LayerNorm<bf16>`/`RmsNorm<bf16>` (and f16) against
//! candle-nn's ops on BF16/F16 tensors and the copies of the same 16-bit bytes, after
//! checking that the two agree (in units in the last place of the storage type).
//! Prints Markdown tables and writes JSON.
//!
//! ```text
//! cargo run --release --manifest-path bench-peers/Cargo.toml -- [--out DIR] [--budget-ms N] [--quick]
//! ```
//!
//! Timing: the six entries of one (kind, shape, threads) are warmed up, then run
//! interleaved, one sample each per round (a sample lasts about 20 ms), for at least 7
//! rounds and until the budget per entry is spent; the median time per call is reported.
//! Interleaving makes the ratios robust to a machine whose load changes while it runs.
//! Every entry reads x and writes y, so GB/s = 2 · rows · d · 4 bytes / time.

use std::error::Error;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use ndarray::{Array1, Array2, Axis};
use norm_core::reference::{layer_norm_reference, rms_norm_reference};
use norm_core::{Half, KernelPath, LayerNorm, RmsNorm, bf16, f16};
use rayon::prelude::*;
use serde_json::json;

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// (rows, d): in cache, and far beyond it (the shapes of the norm-core criterion groups).
const SHAPES: [(usize, usize); 3] = [(512, 768), (65536, 512), (8192, 4096)];
const QUICK_SHAPES: [(usize, usize); 1] = [(512, 768)];
const THREADS: [usize; 2] = [1, 2];
const LN_EPS: f32 = 1e-5;
const RMS_EPS: f32 = 1e-6;

struct Args {
    out: PathBuf,
    budget: Duration,
    quick: bool,
}

fn parse_args() -> Res<Args> {
    let mut a = Args {
        out: PathBuf::from("target/bench-peers"),
        budget: Duration::from_millis(1200),
        quick: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => a.out = PathBuf::from(it.next().ok_or("--out needs a directory")?),
            "--budget-ms" => {
                a.budget = Duration::from_millis(it.next().ok_or("--budget-ms needs a number")?.parse()?)
            }
            "--quick" => a.quick = true,
            "-h" | "--help" => {
                println!(
                    "usage: bench-peers [--out DIR (default target/bench-peers)] [--budget-ms N (per entry, default 1200)] [--quick (512x768 only)]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    Ok(a)
}

/// splitmix64 → approximately normal values; deterministic.
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
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// Rows like transformer activations: each row its own mean and spread.
fn activations(rows: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed);
    let mut x = Vec::with_capacity(rows * d);
    for _ in 0..rows {
        let (m, s) = (0.5 * rng.normal(), 0.5 + 1.5 * rng.uniform());
        x.extend((0..d).map(|_| (m + s * rng.normal()) as f32));
    }
    x
}

/// The layer parameters shared by every implementation.
struct Params {
    d: usize,
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Params {
    fn new(d: usize) -> Self {
        let mut rng = Rng(d as u64);
        Params {
            d,
            w: (0..d).map(|_| (1.0 + 0.1 * rng.normal()) as f32).collect(),
            b: (0..d).map(|_| (0.1 * rng.normal()) as f32).collect(),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Layer,
    Rms,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Layer => "LayerNorm",
            Kind::Rms => "RmsNorm",
        }
    }
}

/// The implementations compared, built once per shape and kind.
struct Impls {
    kind: Kind,
    ln: LayerNorm<f32>,
    rms: RmsNorm<f32>,
    w_t: Tensor,
    b_t: Tensor,
    w_a: Array1<f32>,
    b_a: Array1<f32>,
}

impl Impls {
    fn new(kind: Kind, p: &Params) -> Res<Self> {
        let dev = Device::Cpu;
        Ok(Impls {
            kind,
            ln: LayerNorm::from_weights(p.w.clone(), Some(p.b.clone()), LN_EPS)?,
            rms: RmsNorm::from_weights(p.w.clone(), None, RMS_EPS)?,
            w_t: Tensor::from_slice(&p.w, p.d, &dev)?,
            b_t: Tensor::from_slice(&p.b, p.d, &dev)?,
            w_a: Array1::from(p.w.clone()),
            b_a: Array1::from(p.b.clone()),
        })
    }

    /// norm-core into a caller's buffer (its fastest form).
    fn norm_core_into(&self, x: &Array2<f32>, y: &mut Array2<f32>) -> Res<()> {
        match self.kind {
            Kind::Layer => self.ln.forward_into(x, y)?,
            Kind::Rms => self.rms.forward_into(x, y)?,
        }
        Ok(())
    }

    /// norm-core allocating its output, like the peers do.
    fn norm_core_alloc(&self, x: &Array2<f32>) -> Res<Array2<f32>> {
        Ok(match self.kind {
            Kind::Layer => self.ln.forward(x)?,
            Kind::Rms => self.rms.forward(x)?,
        })
    }

    fn candle(&self, x: &Tensor) -> Res<Tensor> {
        Ok(match self.kind {
            Kind::Layer => candle_nn::ops::layer_norm(x, &self.w_t, &self.b_t, LN_EPS)?,
            Kind::Rms => candle_nn::ops::rms_norm(x, &self.w_t, RMS_EPS)?,
        })
    }

    /// The textbook ndarray composition (two-pass variance, broadcasting).
    fn naive(&self, x: &Array2<f32>) -> Res<Array2<f32>> {
        let ax = Axis(1);
        Ok(match self.kind {
            Kind::Layer => {
                let mean = x.mean_axis(ax).ok_or("empty row")?.insert_axis(ax);
                let xc = x - &mean;
                let var = (&xc * &xc).mean_axis(ax).ok_or("empty row")?.insert_axis(ax);
                let std = var.mapv(|v| (v + LN_EPS).sqrt());
                &xc / &std * &self.w_a + &self.b_a
            }
            Kind::Rms => {
                let ms = (x * x).mean_axis(ax).ok_or("empty row")?.insert_axis(ax);
                let rms = ms.mapv(|v| (v + RMS_EPS).sqrt());
                x / &rms * &self.w_a
            }
        })
    }

    fn reference(&self, x: &[f32]) -> Res<Vec<f64>> {
        Ok(match self.kind {
            Kind::Layer => layer_norm_reference(x, self.ln.weight(), self.ln.bias(), self.ln.eps())?.0,
            Kind::Rms => rms_norm_reference(x, self.rms.weight(), None, self.rms.eps())?.0,
        })
    }
}

fn to_vec(t: &Tensor) -> Res<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| (f64::from(*p) - f64::from(*q)).abs())
        .fold(0.0, f64::max)
}

fn max_abs_err(a: &[f32], r: &[f64]) -> f64 {
    a.iter()
        .zip(r)
        .map(|(p, q)| (f64::from(*p) - q).abs())
        .fold(0.0, f64::max)
}

/// A timed entry: a name and the call it times.
type Entry<'a> = (&'static str, Box<dyn FnMut() -> Res<()> + 'a>);

/// Median seconds per call, by entry name.
type Times = Vec<(&'static str, f64)>;

/// Median seconds per call of each entry. Entries are interleaved: every round runs one
/// sample of each (a sample is enough calls to last about 20 ms), so a change in the
/// machine's load hits all of them alike; rounds repeat until `budget` per entry is spent
/// (at least 7 rounds).
fn time_interleaved(budget: Duration, entries: &mut [Entry<'_>]) -> Res<Times> {
    let mut per_sample = Vec::new();
    for (_, f) in entries.iter_mut() {
        let start = Instant::now();
        f()?; // warm-up, and the size of a sample
        let once = start.elapsed().max(Duration::from_nanos(100));
        per_sample.push((0.02 / once.as_secs_f64()).ceil().max(1.0) as usize);
    }
    let mut samples = vec![Vec::new(); entries.len()];
    let total = budget.mul_f64(entries.len() as f64);
    let begin = Instant::now();
    while samples[0].len() < 7 || (begin.elapsed() < total && samples[0].len() < 200) {
        for (k, (_, f)) in entries.iter_mut().enumerate() {
            let t = Instant::now();
            for _ in 0..per_sample[k] {
                f()?;
            }
            samples[k].push(t.elapsed().as_secs_f64() / per_sample[k] as f64);
        }
    }
    Ok(entries
        .iter()
        .zip(&mut samples)
        .map(|((name, _), s)| {
            s.sort_by(f64::total_cmp);
            (*name, s[s.len() / 2])
        })
        .collect())
}

/// What one (kind, shape) compares, in both tables: norm-core into a caller's buffer and
/// allocating, candle-nn, the naive ndarray composition where there is one (f32 only),
/// and the copy of the same bytes (`src`, rows of `d`) with plain and with streaming
/// stores as the ceiling. `E` is the element type of the norms, `C` that of the copies.
struct Contenders<'a, E, C> {
    src: &'a [C],
    d: usize,
    /// The copy kernel (`streaming`: non-temporal stores).
    copy: fn(&[C], &mut [C], usize, bool),
    ours: &'a (dyn Fn(&mut Array2<E>) -> Res<()> + Sync),
    ours_alloc: &'a (dyn Fn() -> Res<Array2<E>> + Sync),
    candle: &'a (dyn Fn() -> Res<Tensor> + Sync),
    naive: Option<&'a (dyn Fn() -> Res<Array2<E>> + Sync)>,
}

/// How far each peer's output is from norm-core's (the metric the table gives).
struct Agreement<E> {
    /// norm-core's output, from the call into the caller's buffer.
    ours: Vec<E>,
    alloc: f64,
    candle: f64,
    naive: Option<f64>,
}

impl<E, C> Contenders<'_, E, C>
where
    E: Clone + Send + candle_core::WithDType,
    C: Copy + Default + Send + Sync,
{
    /// Runs each contender once on the input and measures every output against
    /// norm-core's with `metric`.
    fn agreement(&self, y: &mut Array2<E>, metric: fn(&[E], &[E]) -> f64) -> Res<Agreement<E>> {
        (self.ours)(y)?;
        let ours = y.as_slice().ok_or("layout")?.to_vec();
        let vs = |out: Array2<E>| -> Res<f64> { Ok(metric(out.as_slice().ok_or("layout")?, &ours)) };
        let alloc = vs((self.ours_alloc)()?)?;
        let candle = metric(&(self.candle)()?.flatten_all()?.to_vec1::<E>()?, &ours);
        let naive = match self.naive {
            Some(f) => Some(vs(f()?)?),
            None => None,
        };
        Ok(Agreement {
            ours,
            alloc,
            candle,
            naive,
        })
    }

    /// Median seconds per call of every contender (see [`time_interleaved`]) on each
    /// pool, in [`NAMES`] order (without the naive composition where there is none); `y`
    /// is norm-core's output buffer.
    fn time(
        &self,
        budget: Duration,
        pools: &[(usize, rayon::ThreadPool)],
        y: &mut Array2<E>,
    ) -> Res<Vec<(usize, Times)>> {
        let n = self.src.len();
        let (mut yc, mut ys) = (vec![C::default(); n], vec![C::default(); n]);
        let mut out = Vec::new();
        for (threads, pool) in pools {
            let times = pool.install(|| -> Res<Times> {
                let (y, yc, ys) = (&mut *y, &mut yc, &mut ys);
                let (src, d, copy) = (self.src, self.d, self.copy);
                let mut entries: Vec<Entry<'_>> = vec![
                    (
                        "copy",
                        Box::new(move || {
                            copy(src, yc, d, false);
                            std::hint::black_box(&yc);
                            Ok(())
                        }),
                    ),
                    (
                        "copy (streaming)",
                        Box::new(move || {
                            copy(src, ys, d, true);
                            std::hint::black_box(&ys);
                            Ok(())
                        }),
                    ),
                    ("norm-core", Box::new(|| (self.ours)(y))),
                    (
                        "norm-core (alloc)",
                        Box::new(|| {
                            std::hint::black_box((self.ours_alloc)()?);
                            Ok(())
                        }),
                    ),
                    (
                        "candle-nn",
                        Box::new(|| {
                            std::hint::black_box((self.candle)()?);
                            Ok(())
                        }),
                    ),
                ];
                if let Some(naive) = self.naive {
                    entries.push((
                        "naive ndarray",
                        Box::new(move || {
                            std::hint::black_box(naive()?);
                            Ok(())
                        }),
                    ));
                }
                time_interleaved(budget, &mut entries)
            })?;
            out.push((*threads, times));
        }
        Ok(out)
    }
}

/// `y = x · c` over the same bytes, split like the norms on more than one thread, with
/// plain stores or (`streaming`) non-temporal ones (`norm_core::ceiling`; norm-core
/// streams outputs of at least a quarter of the last-level cache, at most 64 MiB, so
/// that is the fair ceiling for them).
fn copy(x: &[f32], y: &mut [f32], d: usize, streaming: bool) {
    split_rows(x, y, d, |x, y| {
        if streaming {
            norm_core::ceiling::scale_streaming(x, y, 1.5)
        } else {
            norm_core::ceiling::scale(x, y, 1.5)
        }
    });
}

/// Runs `kernel` from `x` into `y` (rows of `d`) on the current pool: whole, on one
/// thread; in blocks of whole rows of about 64 KiB, on more.
fn split_rows<C: Send + Sync>(x: &[C], y: &mut [C], d: usize, kernel: impl Fn(&[C], &mut [C]) + Sync) {
    if rayon::current_num_threads() > 1 {
        let n = (64 * 1024 / std::mem::size_of::<C>() / d).max(1) * d;
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .for_each(|(y, x)| kernel(x, y));
    } else {
        kernel(x, y);
    }
}

struct Row {
    kind: Kind,
    shape: (usize, usize),
    threads: usize,
    /// (implementation, seconds per call)
    times: Times,
}

impl Row {
    fn secs(&self, name: &str) -> f64 {
        self.times.iter().find(|t| t.0 == name).map_or(f64::NAN, |t| t.1)
    }
    fn gbps(&self, name: &str) -> f64 {
        let bytes = 2.0 * (self.shape.0 * self.shape.1 * 4) as f64;
        bytes / self.secs(name) / 1e9
    }
}

const NAMES: [&str; 6] = [
    "copy",
    "copy (streaming)",
    "norm-core",
    "norm-core (alloc)",
    "candle-nn",
    "naive ndarray",
];

/// The table cells both tables share, from GB/s by entry name: the copies, norm-core and
/// its ratios to them, norm-core (alloc) and candle-nn.
fn shared_cells(g: impl Fn(&str) -> f64) -> String {
    [
        g("copy"),
        g("copy (streaming)"),
        g("norm-core"),
        g("norm-core") / g("copy"),
        g("norm-core") / g("copy (streaming)"),
        g("norm-core (alloc)"),
        g("candle-nn"),
    ]
    .map(|v| format!("{v:.2}"))
    .join(" | ")
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> Res<()> {
    let args = parse_args()?;
    let shapes: &[(usize, usize)] = if args.quick { &QUICK_SHAPES } else { &SHAPES };
    let pools = THREADS
        .iter()
        .map(|&n| Ok((n, rayon::ThreadPoolBuilder::new().num_threads(n).build()?)))
        .collect::<Res<Vec<_>>>()?;
    let machine = json!({
        "cpu": cpu_model(),
        "logical_cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "norm_core_kernel_path": KernelPath::detected().name(),
    });
    println!("# bench-peers: LayerNorm / RmsNorm forward, f32\n");
    println!(
        "Machine: {} ({} logical CPUs), norm-core kernel path: {}\n",
        machine["cpu"].as_str().unwrap_or("?"),
        machine["logical_cpus"],
        KernelPath::detected().name()
    );

    // Accuracy on rows with a large offset (1e4 + N(0, 1)), against the f64 reference.
    let mut accuracy = Vec::new();
    {
        let (rows, d) = (64, 768);
        let p = Params::new(d);
        let x: Vec<f32> = activations(rows, d, 3).iter().map(|v| 1e4 + v).collect();
        let xa = Array2::from_shape_vec((rows, d), x.clone())?;
        let xt = Tensor::from_slice(&x, (rows, d), &Device::Cpu)?;
        println!("## Accuracy: rows 1e4 + N(0, 1), {rows}x{d}, max |y - f64 reference|\n");
        println!("| kind | norm-core | candle-nn | naive ndarray |\n|---|---|---|---|");
        for kind in [Kind::Layer, Kind::Rms] {
            let im = Impls::new(kind, &p)?;
            let r = im.reference(&x)?;
            let e = [
                max_abs_err(im.norm_core_alloc(&xa)?.as_slice().ok_or("layout")?, &r),
                max_abs_err(&to_vec(&im.candle(&xt)?)?, &r),
                max_abs_err(im.naive(&xa)?.as_slice().ok_or("layout")?, &r),
            ];
            println!("| {} | {:.2e} | {:.2e} | {:.2e} |", kind.name(), e[0], e[1], e[2]);
            accuracy.push(json!({"kind": kind.name(), "shape": [rows, d], "norm_core": e[0], "candle_nn": e[1], "naive_ndarray": e[2]}));
        }
        println!();
    }

    let mut results: Vec<Row> = Vec::new();
    let mut agreement = Vec::new();
    for &(rows, d) in shapes {
        let p = Params::new(d);
        let x = activations(rows, d, 1);
        let xa = Array2::from_shape_vec((rows, d), x.clone())?;
        let xt = Tensor::from_slice(&x, (rows, d), &Device::Cpu)?;
        let mut y = Array2::<f32>::zeros((rows, d));
        for kind in [Kind::Layer, Kind::Rms] {
            let im = Impls::new(kind, &p)?;
            let c = Contenders {
                src: &x,
                d,
                copy,
                ours: &|y| im.norm_core_into(&xa, y),
                ours_alloc: &|| im.norm_core_alloc(&xa),
                candle: &|| im.candle(&xt),
                naive: Some(&|| im.naive(&xa)),
            };
            // Agreement first: every implementation on the same input.
            let a = c.agreement(&mut y, max_abs_diff)?;
            let (d_alloc, d_candle, d_naive) = (a.alloc, a.candle, a.naive.unwrap_or(f64::NAN));
            // The f64 reference on the first rows (at most 2^20 values, to bound its cost).
            let k = rows.min((1 << 20) / d).max(1) * d;
            let d_ref = max_abs_err(&a.ours[..k], &im.reference(&x[..k])?);
            eprintln!(
                "{} {rows}x{d}: max |diff| vs norm-core: alloc {d_alloc:.1e}, candle-nn {d_candle:.1e}, naive {d_naive:.1e}; norm-core vs f64 reference (first {} rows) {d_ref:.1e}",
                kind.name(),
                k / d
            );
            agreement.push(json!({"kind": kind.name(), "shape": [rows, d], "norm_core_alloc": d_alloc, "candle_nn": d_candle, "naive_ndarray": d_naive, "norm_core_vs_f64_reference": d_ref, "reference_rows": k / d}));
            if d_alloc != 0.0 || d_candle > 1e-4 || d_naive > 1e-4 {
                return Err(format!("{} {rows}x{d}: implementations disagree (alloc {d_alloc:e}, candle {d_candle:e}, naive {d_naive:e})", kind.name()).into());
            }
            for (threads, times) in c.time(args.budget, &pools, &mut y)? {
                let row = Row {
                    kind,
                    shape: (rows, d),
                    threads,
                    times,
                };
                eprintln!(
                    "  {} threads: {}",
                    threads,
                    NAMES
                        .iter()
                        .map(|n| format!("{n} {:.2} GB/s", row.gbps(n)))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                results.push(row);
            }
        }
    }

    println!("## Forward throughput (GB/s = bytes read + written / time; higher is better)\n");
    println!(
        "norm-core writes into a caller's array; \"alloc\" allocates its output, as candle-nn and the ndarray composition must. Ratios \"vs\" a peer: norm-core / peer, then norm-core (alloc) / peer. The naive composition is single-threaded whatever the pool.\n"
    );
    println!(
        "| kind | rows×d | threads | copy | copy (streaming) | norm-core | ×copy | ×copy (streaming) | norm-core (alloc) | candle-nn | naive ndarray | vs candle-nn | vs naive |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut json_rows = Vec::new();
    for r in &results {
        let g = |n: &str| r.gbps(n);
        println!(
            "| {} | {}×{} | {} | {} | {:.2} | {:.1}× / {:.1}× | {:.1}× / {:.1}× |",
            r.kind.name(),
            r.shape.0,
            r.shape.1,
            r.threads,
            shared_cells(g),
            g("naive ndarray"),
            g("norm-core") / g("candle-nn"),
            g("norm-core (alloc)") / g("candle-nn"),
            g("norm-core") / g("naive ndarray"),
            g("norm-core (alloc)") / g("naive ndarray"),
        );
        json_rows.push(json!({
            "kind": r.kind.name(), "rows": r.shape.0, "d": r.shape.1, "threads": r.threads,
            "seconds_per_call": r.times.iter().map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
            "gbps": NAMES.iter().map(|n| (n.to_string(), json!(g(n)))).collect::<serde_json::Map<_, _>>(),
            "ratio_to_copy": NAMES.iter().map(|n| (n.to_string(), json!(g(n) / g("copy")))).collect::<serde_json::Map<_, _>>(),
            "norm_core_alloc_vs_candle_nn": g("norm-core (alloc)") / g("candle-nn"),
            "norm_core_alloc_vs_naive_ndarray": g("norm-core (alloc)") / g("naive ndarray"),
            "norm_core_vs_candle_nn": g("norm-core") / g("candle-nn"),
            "norm_core_vs_naive_ndarray": g("norm-core") / g("naive ndarray"),
        }));
    }
    println!(
        "\n## Half precision: bf16 and f16 storage (GB/s = 2 bytes read + 2 written per element / time)\n"
    );
    println!(
        "norm-core computes in f32 and rounds each output once; candle-nn's LayerNorm computes in f32 too (its variance is E[x²] − E[x]²) and rounds once, its RmsNorm rounds the rms to the storage type and divides and multiplies in it. \"max ulps\": the largest difference between the two outputs in units in the last place of the storage type at the larger output's magnitude (at least 1; same input, weights and bias rounded to it). Ratios: norm-core / peer.\n"
    );
    println!(
        "| type | kind | rows×d | threads | copy | copy (streaming) | norm-core | ×copy | ×copy (streaming) | norm-core (alloc) | candle-nn | vs candle-nn | max ulps |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    let mut half_rows = Vec::new();
    for &(rows, d) in shapes {
        let p = Params::new(d);
        let x = activations(rows, d, 1);
        half_rows.extend(half_section::<bf16>("bf16", &args, &pools, &p, &x, rows)?);
        half_rows.extend(half_section::<f16>("f16", &args, &pools, &p, &x, rows)?);
    }
    let doc = json!({
        "machine": machine,
        "budget_ms_per_entry": args.budget.as_millis() as u64,
        "accuracy_offset_rows": accuracy,
        "agreement": agreement,
        "results": json_rows,
        "half_results": half_rows,
    });
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("bench-peers.json");
    let tmp = args.out.join("bench-peers.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&doc)?)?;
    std::fs::rename(&tmp, &path)?;
    println!("\nJSON: {}", path.display());
    Ok(())
}

/// The bits of a 16-bit float.
trait Bits16: Copy {
    /// Explicit mantissa bits (7 for bf16, 10 for f16).
    const MANT: i32;
    fn bits(self) -> u16;
}

impl Bits16 for bf16 {
    const MANT: i32 = 7;
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

impl Bits16 for f16 {
    const MANT: i32 = 10;
    fn bits(self) -> u16 {
        self.to_bits()
    }
}

/// `y = x` over 16-bit values, split like the norms on more than one thread, with plain
/// stores (memcpy) or non-temporal ones (`norm_core::ceiling`).
fn copy16(x: &[u16], y: &mut [u16], d: usize, streaming: bool) {
    split_rows(x, y, d, |x, y| {
        if streaming {
            norm_core::ceiling::copy_u16_streaming(x, y)
        } else {
            norm_core::ceiling::copy_u16(x, y)
        }
    });
}

/// The largest difference between two outputs of storage type `H` (widened), in units
/// of the storage type's ulp at the larger magnitude, at least 1: candle-nn's f32 error
/// is relative to the row's spread, so near-zero outputs (whose own ulp is tiny) are
/// measured against the ulp at 1. NaN against NaN is no difference.
fn diff_ulps<H: Half + Bits16>(a: &[H], b: &[H]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(p, q)| {
            let (p, q) = (f64::from(p.to_acc()), f64::from(q.to_acc()));
            if p.is_nan() && q.is_nan() {
                return 0.0;
            }
            let scale = p.abs().max(q.abs()).max(1.0);
            let ulp = 2f64.powi(scale.log2().floor() as i32 - H::MANT);
            (p - q).abs() / ulp
        })
        .fold(0.0, f64::max)
}

/// The half-precision rows of one shape for storage type `H` (`name`): both kinds, on
/// every pool, after checking that norm-core's two forms give the same bits and that
/// norm-core and candle-nn agree within 4 ulps (of the
/// storage type, at magnitudes of at least 1; see [`diff_ulps`]): norm-core rounds each
/// output once, candle-nn's RmsNorm rounds the rms to the storage type and divides and
/// multiplies in it (three roundings), its LayerNorm rounds once. Prints
/// the table rows and returns their JSON.
fn half_section<H>(
    name: &str,
    args: &Args,
    pools: &[(usize, rayon::ThreadPool)],
    p: &Params,
    x: &[f32],
    rows: usize,
) -> Res<Vec<serde_json::Value>>
where
    H: Half + Bits16 + candle_core::WithDType,
{
    let d = p.d;
    let dev = Device::Cpu;
    let to_h = |v: &[f32]| v.iter().map(|&f| H::from_acc(f)).collect::<Vec<H>>();
    let bits = |v: &[H]| v.iter().map(|h| h.bits()).collect::<Vec<u16>>();
    let (xh, wh, bh) = (to_h(x), to_h(&p.w), to_h(&p.b));
    let xa = Array2::from_shape_vec((rows, d), xh.clone())?;
    let xt = Tensor::from_slice(&xh, (rows, d), &dev)?;
    let (wt, bt) = (
        Tensor::from_slice(&wh, d, &dev)?,
        Tensor::from_slice(&bh, d, &dev)?,
    );
    let xu = bits(&xh);
    let mut y = Array2::from_elem((rows, d), H::default());
    let mut out = Vec::new();
    for kind in [Kind::Layer, Kind::Rms] {
        let ln = LayerNorm::<H>::from_weights(wh.clone(), Some(bh.clone()), LN_EPS)?;
        let rms = RmsNorm::<H>::from_weights(wh.clone(), None, RMS_EPS)?;
        let c = Contenders {
            src: &xu,
            d,
            copy: copy16,
            ours: &|y| {
                match kind {
                    Kind::Layer => ln.forward_into(&xa, y)?,
                    Kind::Rms => rms.forward_into(&xa, y)?,
                }
                Ok(())
            },
            ours_alloc: &|| {
                Ok(match kind {
                    Kind::Layer => ln.forward(&xa)?,
                    Kind::Rms => rms.forward(&xa)?,
                })
            },
            candle: &|| {
                Ok(match kind {
                    Kind::Layer => candle_nn::ops::layer_norm(&xt, &wt, &bt, LN_EPS)?,
                    Kind::Rms => candle_nn::ops::rms_norm(&xt, &wt, RMS_EPS)?,
                })
            },
            naive: None,
        };
        let a = c.agreement(&mut y, diff_ulps::<H>)?;
        let worst = a.candle;
        eprintln!(
            "{name} {} {rows}x{d}: norm-core vs candle-nn, max {worst:.2} ulps (allocating form: {:.2})",
            kind.name(),
            a.alloc
        );
        if a.alloc != 0.0 || worst > 4.0 {
            return Err(format!(
                "{name} {} {rows}x{d}: norm-core and candle-nn differ by {worst} ulps, norm-core's two forms by {}",
                kind.name(),
                a.alloc
            )
            .into());
        }
        for (threads, times) in c.time(args.budget, pools, &mut y)? {
            let secs = |n: &str| times.iter().find(|t| t.0 == n).map_or(f64::NAN, |t| t.1);
            let g = |n: &str| 2.0 * (rows * d * 2) as f64 / secs(n) / 1e9;
            println!(
                "| {name} | {} | {rows}×{d} | {threads} | {} | {:.1}× / {:.1}× | {worst:.2} |",
                kind.name(),
                shared_cells(g),
                g("norm-core") / g("candle-nn"),
                g("norm-core (alloc)") / g("candle-nn"),
            );
            out.push(json!({
                "type": name, "kind": kind.name(), "rows": rows, "d": d, "threads": threads,
                "seconds_per_call": times.iter().map(|(n, s)| (n.to_string(), json!(s))).collect::<serde_json::Map<_, _>>(),
                "gbps": times.iter().map(|(n, _)| (n.to_string(), json!(g(n)))).collect::<serde_json::Map<_, _>>(),
                "norm_core_vs_candle_nn": g("norm-core") / g("candle-nn"),
                "norm_core_alloc_vs_candle_nn": g("norm-core (alloc)") / g("candle-nn"),
                "max_ulps_vs_candle_nn": worst,
            }));
        }
    }
    Ok(out)
}
