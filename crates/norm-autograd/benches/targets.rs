//! `cargo bench -p norm-autograd --bench targets`: the speed targets of issues 13 and 14
//! (forward in and out of cache, backward out of cache, bf16 forward out of cache), each
//! kernel timed back to back with its own ceilings in every round, and each target's
//! ratio taken per round before the median over rounds, so a ceiling that drifts during
//! the run (a shared host's memory bandwidth moves by tens of percent within minutes)
//! moves kernel and yardstick together. One thread, every vector path this CPU has,
//! forced (`ForcedPath`); prints the CPU and one Markdown table.
//!
//! `TARGETS_PORTABLE` (any value) also measures the portable path, for comparison: its
//! rows carry no goal (the targets are the vector paths').
//!
//! Rounds: `TARGETS_ROUNDS` (default 7). The last column is the kernel's own GB/s
//! (bytes read and written over time, median over the rounds). A target's ratio per round is the faster
//! ceiling's time over the kernel's time (same bytes), or for the two relative targets
//! the other kernel's time over this one's: LayerNorm over RmsNorm GB/s (the same bytes)
//! and bf16 over f32 rows per second.
//!
//! Yardsticks, all from `norm_core::ceiling`: `y = c·x` with plain and with non-temporal
//! stores (forward), `z = a + c·b` likewise (backward: reads x and dy, writes dx), and
//! the copy of the same 16-bit bytes (bf16). In cache the target is against the plain
//! copy (as the issue asks); out of cache against the faster of the two.
//!
//! Rows without a goal ("—") explain the others: the bare LayerNorm
//! (`ceiling::layer_norm_bare`, f32 in cache and bf16 out of cache) does the kernels'
//! arithmetic per element in the simplest pipelined loop, prefetching 4 KiB ahead into
//! L1, and nothing else (no blocked totals, no refusal of a one-pass variance, no
//! rescue, no statistics out, plain stores). Its ratio to the copy is what that
//! arithmetic reaches in a plain loop on this CPU; the kernel's ratio to it is what the
//! kernel spends beyond the arithmetic (above 1 where the kernel's own prefetch and
//! stores do better than the simple loop, as for rows of 8 KiB out of cache). In cache,
//! the bare bf16 LayerNorm's GB/s is the bf16 arithmetic's own speed with no memory
//! traffic to wait for: where it is below 0.85 of the bf16 copy out of cache, the
//! bf16 target there is beyond this arithmetic on this CPU.

use std::hint::black_box;
use std::time::Instant;

use norm_autograd::__private::{BackwardInput, ForcedPath, Saved, Sweep, backward_slice_on};
use norm_autograd::GradSlices;
use norm_core::simd::Path;
use norm_core::{KernelPath, LayerNorm, RmsNorm, bf16, ceiling};

/// In cache (64×768 fits L2, 512×768 L2/L3) and out of cache (128 MiB per f32 array).
const IN_CACHE: [(usize, usize); 2] = [(64, 768), (512, 768)];
const OUT_OF_CACHE: [(usize, usize); 2] = [(65536, 512), (8192, 4096)];
/// Elements of the largest shape: every buffer is this long and each job uses a prefix.
const MAX_N: usize = 65536 * 512;
/// The shortest timed batch, in seconds: calls are repeated until a batch takes this.
const BATCH_SECONDS: f64 = 0.02;

/// Deterministic values of order 1 (as the other benches).
fn data(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
            (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

/// One timed thing: a kernel on a path, or a ceiling, over `rows × d`.
#[derive(Clone, Copy, PartialEq)]
enum Job {
    /// `y = c·x`, plain or streaming.
    Copy { n: usize, streaming: bool },
    /// `z = a + c·b`, plain or streaming.
    Axpy { n: usize, streaming: bool },
    /// The copy of `n` 16-bit values, plain (memcpy) or streaming.
    Copy16 { n: usize, streaming: bool },
    /// The forward of LayerNorm (`ln`) or RmsNorm over f32 or bf16 rows.
    Forward {
        shape: (usize, usize),
        path: KernelPath,
        ln: bool,
        bf16: bool,
    },
    /// The bare LayerNorm forward (`ceiling::layer_norm_bare`) over f32 or bf16 rows:
    /// the kernels' arithmetic and nothing else, the algorithm's own yardstick.
    Bare {
        shape: (usize, usize),
        path: KernelPath,
        bf16: bool,
    },
    /// The backward of LayerNorm (with dbeta) or RmsNorm, f32.
    Backward {
        shape: (usize, usize),
        path: KernelPath,
        ln: bool,
    },
}

/// The statistics the forward saves for a shape's rows: mean, rstd (LayerNorm) and rrms.
type SavedStats = ((usize, usize), [Vec<f32>; 3]);

impl Job {
    /// Bytes the job reads and writes (the per-row statistics and the d-long
    /// parameters aside).
    fn bytes(self) -> f64 {
        let (n, per) = match self {
            Job::Copy { n, .. } => (n, 8),
            Job::Axpy { n, .. } => (n, 12),
            Job::Copy16 { n, .. } => (n, 4),
            Job::Forward {
                shape: (r, d), bf16, ..
            }
            | Job::Bare {
                shape: (r, d), bf16, ..
            } => (r * d, if bf16 { 4 } else { 8 }),
            Job::Backward { shape: (r, d), .. } => (r * d, 12),
        };
        (n * per) as f64
    }
}

/// Every buffer the jobs use, `MAX_N` long, and each shape's saved statistics.
struct Bufs {
    x: Vec<f32>,
    dy: Vec<f32>,
    y: Vec<f32>,
    xb: Vec<bf16>,
    yb: Vec<bf16>,
    xu: Vec<u16>,
    yu: Vec<u16>,
    s0: Vec<f32>,
    s1: Vec<f32>,
    dgamma: Vec<f32>,
    dbeta: Vec<f32>,
    /// The bare LayerNorm's weight and bias (f32 and bf16).
    ones: Vec<f32>,
    ones_b: Vec<bf16>,
    /// Per out-of-cache shape: (mean, rstd, rrms) of `x` as the forward saves them.
    saved: Vec<SavedStats>,
    /// The norms of every feature width the jobs use, built once (as a user's model
    /// holds them): a job times the forward, not the building of its weight and bias.
    norms: Vec<Norms>,
}

/// The four forward norms of one feature width `d`.
struct Norms {
    d: usize,
    ln: LayerNorm<f32>,
    rms: RmsNorm<f32>,
    ln_b: LayerNorm<bf16>,
    rms_b: RmsNorm<bf16>,
}

impl Norms {
    fn new(d: usize) -> Self {
        Norms {
            d,
            ln: LayerNorm::new(d).expect("d > 0"),
            rms: RmsNorm::new(d).expect("d > 0"),
            ln_b: LayerNorm::new(d).expect("d > 0"),
            rms_b: RmsNorm::new(d).expect("d > 0"),
        }
    }
}

impl Bufs {
    fn new() -> Self {
        let x = data(MAX_N, 1);
        let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        let xu = xb.iter().map(|v| v.to_bits()).collect();
        let mut y = vec![0.0f32; MAX_N];
        let saved = OUT_OF_CACHE
            .iter()
            .map(|&(rows, d)| {
                let n = rows * d;
                let (mut mean, mut rstd, mut rrms) = (vec![0.0; rows], vec![0.0; rows], vec![0.0; rows]);
                LayerNorm::<f32>::new(d)
                    .expect("d > 0")
                    .forward_slice_with_stats(&x[..n], &mut y[..n], &mut mean, &mut rstd)
                    .expect("shapes match");
                RmsNorm::<f32>::new(d)
                    .expect("d > 0")
                    .forward_slice_with_stats(&x[..n], &mut y[..n], &mut rrms)
                    .expect("shapes match");
                ((rows, d), [mean, rstd, rrms])
            })
            .collect();
        let rows_max = 65536;
        Bufs {
            dy: data(MAX_N, 2),
            x,
            y,
            yb: vec![bf16::ZERO; MAX_N],
            xb,
            xu,
            yu: vec![0; MAX_N],
            s0: vec![0.0; rows_max],
            s1: vec![0.0; rows_max],
            dgamma: vec![0.0; 4096],
            dbeta: vec![0.0; 4096],
            ones: vec![1.0; 4096],
            ones_b: vec![bf16::ONE; 4096],
            saved,
            norms: IN_CACHE
                .iter()
                .chain(&OUT_OF_CACHE)
                .map(|&(_, d)| Norms::new(d))
                .collect(),
        }
    }

    /// Runs `job` once.
    fn run(&mut self, job: Job) {
        match job {
            Job::Copy { n, streaming } => {
                let (x, y) = (&self.x[..n], &mut self.y[..n]);
                if streaming {
                    ceiling::scale_streaming(x, y, 1.5)
                } else {
                    ceiling::scale(x, y, 1.5)
                }
            }
            Job::Axpy { n, streaming } => {
                let (a, b, z) = (&self.x[..n], &self.dy[..n], &mut self.y[..n]);
                if streaming {
                    ceiling::axpy_streaming(a, b, z, 1.5)
                } else {
                    ceiling::axpy(a, b, z, 1.5)
                }
            }
            Job::Copy16 { n, streaming } => {
                let (x, y) = (&self.xu[..n], &mut self.yu[..n]);
                if streaming {
                    ceiling::copy_u16_streaming(x, y)
                } else {
                    ceiling::copy_u16(x, y)
                }
            }
            Job::Forward {
                shape: (rows, d),
                path,
                ln,
                bf16: half,
            } => {
                let p = ForcedPath::new(path).expect("a path this CPU has");
                let (n, s0, s1) = (rows * d, &mut self.s0[..rows], &mut self.s1[..rows]);
                let norms = self
                    .norms
                    .iter()
                    .find(|m| m.d == d)
                    .expect("built for every width");
                let r = match (ln, half) {
                    (true, false) => p.layer_norm_slice(&norms.ln, &self.x[..n], &mut self.y[..n], s0, s1),
                    (false, false) => p.rms_norm_slice(&norms.rms, &self.x[..n], &mut self.y[..n], s0),
                    (true, true) => p.layer_norm_slice(&norms.ln_b, &self.xb[..n], &mut self.yb[..n], s0, s1),
                    (false, true) => p.rms_norm_slice(&norms.rms_b, &self.xb[..n], &mut self.yb[..n], s0),
                };
                r.expect("shapes match");
            }
            Job::Bare {
                shape: (rows, d),
                path,
                bf16: half,
            } => {
                let p = Path::new(path).expect("a path this CPU has");
                let n = rows * d;
                if half {
                    let ones = &self.ones_b[..d];
                    ceiling::layer_norm_bare_bf16(p, &self.xb[..n], &mut self.yb[..n], ones, ones, 1e-5)
                } else {
                    let ones = &self.ones[..d];
                    ceiling::layer_norm_bare(p, &self.x[..n], &mut self.y[..n], ones, ones, 1e-5)
                }
            }
            Job::Backward {
                shape: (rows, d),
                path,
                ln,
            } => {
                let p = ForcedPath::new(path).expect("a path this CPU has");
                let n = rows * d;
                let [mean, rstd, rrms] = &self
                    .saved
                    .iter()
                    .find(|(s, _)| *s == (rows, d))
                    .expect("saved for every out-of-cache shape")
                    .1;
                let ones = &self.ones[..d];
                let saved = if ln {
                    Saved::LayerNorm { mean, rstd }
                } else {
                    Saved::RmsNorm { rrms }
                };
                let input = BackwardInput {
                    weight: ones,
                    eps: 1e-5,
                    x: &self.x[..n],
                    dy: &self.dy[..n],
                    saved,
                };
                let grads = GradSlices {
                    dx: &mut self.y[..n],
                    dgamma: &mut self.dgamma[..d],
                    dbeta: ln.then_some(&mut self.dbeta[..d]),
                };
                backward_slice_on(p, Sweep::Serial, input, grads).expect("shapes match");
            }
        }
        black_box((&self.y, &self.yb, &self.yu));
    }

    /// Seconds per call of `job`: one untimed call (warms the caches for the in-cache
    /// shapes), then a batch of `reps` calls.
    fn time(&mut self, job: Job, reps: usize) -> f64 {
        self.run(job);
        let t = Instant::now();
        for _ in 0..reps {
            self.run(job);
        }
        t.elapsed().as_secs_f64() / reps as f64
    }
}

/// One target: a ratio per round, its goal, and what it compares.
struct Target {
    what: String,
    shape: (usize, usize),
    path: KernelPath,
    /// `None`: a row that explains the others (the bare LayerNorm's), with no goal.
    goal: Option<f64>,
    /// The yardsticks (the fastest of them counts) and the kernel.
    over: Vec<Job>,
    kernel: Job,
}

fn targets(paths: &[KernelPath]) -> Vec<Target> {
    let mut t = Vec::new();
    let both = |n| {
        vec![
            Job::Copy { n, streaming: false },
            Job::Copy { n, streaming: true },
        ]
    };
    for &path in paths {
        // The portable path is measured for comparison only: the goals are the vector
        // paths'.
        let targeted = path != KernelPath::Portable;
        let fwd = |shape, ln, bf16| Job::Forward {
            shape,
            path,
            ln,
            bf16,
        };
        for shape @ (rows, d) in IN_CACHE {
            let plain = vec![Job::Copy {
                n: rows * d,
                streaming: false,
            }];
            for (name, ln, goal) in [("LayerNorm", true, 0.6), ("RmsNorm", false, 0.7)] {
                let goal = targeted.then_some(goal);
                t.push(Target {
                    what: format!("{name} forward / plain copy"),
                    shape,
                    path,
                    goal,
                    over: plain.clone(),
                    kernel: fwd(shape, ln, false),
                });
            }
            t.push(Target {
                what: "LayerNorm / RmsNorm forward (GB/s)".into(),
                shape,
                path,
                goal: targeted.then_some(0.9),
                over: vec![fwd(shape, false, false)],
                kernel: fwd(shape, true, false),
            });
            let bare = Job::Bare {
                shape,
                path,
                bf16: false,
            };
            t.push(Target {
                what: "bare LayerNorm / plain copy".into(),
                shape,
                path,
                goal: None,
                over: plain.clone(),
                kernel: bare,
            });
            t.push(Target {
                what: "LayerNorm forward / bare LayerNorm".into(),
                shape,
                path,
                goal: None,
                over: vec![bare],
                kernel: fwd(shape, true, false),
            });
            // The bf16 arithmetic with no memory traffic to wait for: its GB/s against
            // the bf16 copy out of cache below bounds the bf16 targets there.
            t.push(Target {
                what: "bare LayerNorm bf16 / plain bf16 copy".into(),
                shape,
                path,
                goal: None,
                over: vec![Job::Copy16 {
                    n: rows * d,
                    streaming: false,
                }],
                kernel: Job::Bare {
                    shape,
                    path,
                    bf16: true,
                },
            });
        }
        for shape @ (rows, d) in OUT_OF_CACHE {
            let n = rows * d;
            for (name, ln) in [("LayerNorm", true), ("RmsNorm", false)] {
                t.push(Target {
                    what: format!("{name} forward / faster copy"),
                    shape,
                    path,
                    goal: targeted.then_some(0.85),
                    over: both(n),
                    kernel: fwd(shape, ln, false),
                });
            }
            for (name, ln) in [("LayerNorm", true), ("RmsNorm", false)] {
                t.push(Target {
                    what: format!("{name} backward / faster z = a + c·b"),
                    shape,
                    path,
                    goal: targeted.then_some(0.75),
                    over: vec![
                        Job::Axpy { n, streaming: false },
                        Job::Axpy { n, streaming: true },
                    ],
                    kernel: Job::Backward { shape, path, ln },
                });
            }
            for (name, ln) in [("LayerNorm", true), ("RmsNorm", false)] {
                t.push(Target {
                    what: format!("{name} bf16 forward / f32 forward (rows/s)"),
                    shape,
                    path,
                    goal: targeted.then_some(1.7),
                    over: vec![fwd(shape, ln, false)],
                    kernel: fwd(shape, ln, true),
                });
                t.push(Target {
                    what: format!("{name} bf16 forward / faster bf16 copy"),
                    shape,
                    path,
                    goal: targeted.then_some(0.85),
                    over: vec![
                        Job::Copy16 { n, streaming: false },
                        Job::Copy16 { n, streaming: true },
                    ],
                    kernel: fwd(shape, ln, true),
                });
            }
            let bare = Job::Bare {
                shape,
                path,
                bf16: true,
            };
            t.push(Target {
                what: "bare LayerNorm bf16 / faster bf16 copy".into(),
                shape,
                path,
                goal: None,
                over: vec![
                    Job::Copy16 { n, streaming: false },
                    Job::Copy16 { n, streaming: true },
                ],
                kernel: bare,
            });
            t.push(Target {
                what: "LayerNorm bf16 forward / bare LayerNorm bf16".into(),
                shape,
                path,
                goal: None,
                over: vec![bare],
                kernel: fwd(shape, true, true),
            });
        }
    }
    t
}

fn cpu() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |k: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|f| f.trim() == k))
            .and_then(|l| l.split(':').nth(1))
            .map_or("?".to_string(), |v| v.trim().to_string())
    };
    format!(
        "{} (family {}, model {})",
        field("model name"),
        field("cpu family"),
        field("model")
    )
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn main() {
    // `cargo bench` passes `--bench` (and any filter); this harness takes none.
    let rounds: usize = std::env::var("TARGETS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(7);
    let mut paths: Vec<KernelPath> = [KernelPath::Avx512, KernelPath::Avx2Fma]
        .into_iter()
        .filter(|&p| ForcedPath::new(p).is_some())
        .collect();
    if paths.is_empty() {
        println!("no AVX2 or AVX-512 path on this CPU: the targets concern those paths only");
    }
    if std::env::var_os("TARGETS_PORTABLE").is_some() {
        paths.push(KernelPath::Portable);
    }
    if paths.is_empty() {
        return;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("1-thread pool");
    let targets = targets(&paths);
    let mut jobs: Vec<Job> = Vec::new();
    for t in &targets {
        for &j in t.over.iter().chain([&t.kernel]) {
            if !jobs.contains(&j) {
                jobs.push(j);
            }
        }
    }
    let started = Instant::now();
    let per_round: Vec<Vec<f64>> = pool.install(|| {
        let mut b = Bufs::new();
        // Calls per batch, from one call each after a warm-up call.
        let reps: Vec<usize> = jobs
            .iter()
            .map(|&j| {
                let once = b.time(j, 1);
                ((BATCH_SECONDS / once).ceil() as usize).clamp(1, 100_000)
            })
            .collect();
        (0..rounds)
            .map(|r| {
                // Every other round in reverse, so no job always follows the same one.
                let mut secs = vec![0.0; jobs.len()];
                let order: Vec<usize> = if r % 2 == 0 {
                    (0..jobs.len()).collect()
                } else {
                    (0..jobs.len()).rev().collect()
                };
                for k in order {
                    secs[k] = b.time(jobs[k], reps[k]);
                }
                secs
            })
            .collect()
    });
    let at = |j: &Job| jobs.iter().position(|k| k == j).expect("every job is timed");
    println!("CPU: {}", cpu());
    println!(
        "Detected kernel path: {}; measured on: {}; one thread; {rounds} rounds in {:.0} s.\n",
        KernelPath::detected().name(),
        paths.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "),
        started.elapsed().as_secs_f64()
    );
    println!("| target | shape | path | median | min–max | goal | met | kernel GB/s |");
    println!("|---|---|---|---|---|---|---|---|");
    for t in &targets {
        let mut ratios: Vec<f64> = per_round
            .iter()
            .map(|secs| {
                let best = t.over.iter().map(|j| secs[at(j)]).fold(f64::INFINITY, f64::min);
                best / secs[at(&t.kernel)]
            })
            .collect();
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let m = median(&mut ratios);
        let k = at(&t.kernel);
        let mut gbs: Vec<f64> = per_round
            .iter()
            .map(|secs| t.kernel.bytes() / secs[k] / 1e9)
            .collect();
        println!(
            "| {} | {}×{} | {} | {m:.2} | {lo:.2}–{hi:.2} | {} | {} | {:.1} |",
            t.what,
            t.shape.0,
            t.shape.1,
            t.path.name(),
            t.goal.map_or("—".into(), |g| format!("≥ {g}")),
            match t.goal {
                Some(g) if m >= g => "yes",
                Some(_) => "no",
                None => "—",
            },
            median(&mut gbs)
        );
    }
}
