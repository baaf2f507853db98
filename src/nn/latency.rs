//! Inference latency of a candidate network on this CPU, measured so that the search's own
//! training does not distort it.
//!
//! How a candidate is timed ([`measure`]):
//! - the network is built as training would build it (weights do not change the work) and fed
//!   standard-normal inputs; `forward` runs without a tape, in inference mode;
//! - on one thread: inside a dedicated one-thread rayon pool, so no operation splits its work;
//! - clock: the thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which does not count the time
//!   the thread waits while other threads or processes have the core; wall-clock time is
//!   recorded beside it;
//! - after warm-up (at least [`WARMUP_CALLS`] calls and [`WARMUP`] of CPU time), in repetitions
//!   of enough forward passes to last about [`REPETITION`] each: [`REPEATS_ONE`] repetitions at
//!   batch 1 (the `latency` objective: their median, per sample) and [`REPEATS_BATCH`] at
//!   [`LATENCY_BATCH`] samples (median per sample); the spread is the batch-1 repetitions'
//!   interquartile range over their median;
//! - once per architecture in a process ([`measure_cached`], what a search uses): inference time
//!   does not depend on the weights nor on the training settings, so a later candidate of the same
//!   network (another learning rate, say) reuses the measurement; the objective is then one value
//!   per network, not one draw of the measurement noise per trial;
//! - with training paused: a measurement waits until every fold that trains in this process
//!   (other workers' trials, other runs of `nas compare`) reaches its next pause point (every
//!   16 steps, see [`pause_point`]), runs while they wait, and lets them go on; two
//!   measurements never run at once. Other processes on the machine are not paused: their
//!   load shows in the spread (and in wall-clock time much more than in CPU time).

use super::build_network;
use super::ops::device_tensor;
use crate::data::InputShape;
use crate::space::Architecture;
use crate::study::Latency;
use dfdx::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// The batch size of the second measurement (per-sample time of a batched forward pass).
pub const LATENCY_BATCH: usize = 32;
/// Warm-up: at least this many calls...
pub const WARMUP_CALLS: usize = 3;
/// ...and at least this much CPU time.
pub const WARMUP: Duration = Duration::from_millis(20);
/// CPU time one timed repetition aims at (a repetition is one call when a call takes longer).
pub const REPETITION: Duration = Duration::from_millis(1);
/// Timed repetitions at batch 1.
pub const REPEATS_ONE: usize = 41;
/// Timed repetitions at [`LATENCY_BATCH`].
pub const REPEATS_BATCH: usize = 11;

/// How long a measurement takes: warm-up, repetitions and their length.
#[derive(Clone, Copy, Debug)]
struct Plan {
    warmup: Duration,
    repetition: Duration,
    repeats_one: usize,
    repeats_batch: usize,
}

/// What a trial records (see the module's notes).
const FULL: Plan = Plan {
    warmup: WARMUP,
    repetition: REPETITION,
    repeats_one: REPEATS_ONE,
    repeats_batch: REPEATS_BATCH,
};

/// A sampler's look at a candidate it may not train ([`estimate_ms`]): about 4 ms instead of
/// about 75, at batch 1 only.
const QUICK: Plan = Plan {
    warmup: Duration::from_millis(2),
    repetition: Duration::from_micros(200),
    repeats_one: 9,
    repeats_batch: 0,
};

/// Times the network of `arch` on inputs of `shape` (see the module's notes for how).
pub fn measure(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    seed: u64,
) -> Result<Latency, super::NnError> {
    measure_with(arch, shape, n_outputs, seed, FULL)
}

fn measure_with(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    seed: u64,
    plan: Plan,
) -> Result<Latency, super::NnError> {
    let run = || measure_here(arch, shape, n_outputs, seed, plan);
    exclusive(|| match one_thread() {
        Some(pool) => pool.install(run),
        // Without a thread of its own, the measurement runs on the caller's.
        None => run(),
    })
}

/// Measurements kept per process, by network (architecture, input shape and outputs).
type Measured = Mutex<BTreeMap<String, Latency>>;
static MEASURED: Measured = Mutex::new(BTreeMap::new());
static ESTIMATED: Measured = Mutex::new(BTreeMap::new());

fn key_of(arch: &Architecture, shape: InputShape, n_outputs: usize) -> String {
    format!(
        "{}|{shape}|{n_outputs}",
        serde_json::to_string(arch).unwrap_or_else(|_| format!("{arch:?}"))
    )
}

fn known(map: &Measured, key: &str) -> Option<Latency> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(key)
        .cloned()
}

/// [`measure`], once per network in this process: a network already measured (the same
/// architecture, input shape and outputs) gets its first measurement back.
pub fn measure_cached(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    seed: u64,
) -> Result<Latency, super::NnError> {
    let key = key_of(arch, shape, n_outputs);
    if let Some(l) = known(&MEASURED, &key) {
        return Ok(l);
    }
    let l = measure(arch, shape, n_outputs, seed)?;
    // Two workers may have measured the same network at once: the first one kept wins.
    let mut m = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    Ok(m.entry(key).or_insert(l).clone())
}

/// Milliseconds per sample at batch 1 of a candidate a sampler weighs but may not train: the
/// [`measure_cached`] value when the network was measured, else a quick measurement (the same
/// method, 9 repetitions of about 0.2 ms after 2 ms of warm-up), also kept per network.
pub fn estimate_ms(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    seed: u64,
) -> Result<f64, super::NnError> {
    let key = key_of(arch, shape, n_outputs);
    if let Some(l) = known(&MEASURED, &key).or_else(|| known(&ESTIMATED, &key)) {
        return Ok(l.ms);
    }
    let l = measure_with(arch, shape, n_outputs, seed, QUICK)?;
    let mut m = ESTIMATED.lock().unwrap_or_else(|p| p.into_inner());
    Ok(m.entry(key).or_insert(l).ms)
}

fn one_thread() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .thread_name(|_| "nas-latency".into())
            .build()
            .ok()
    })
    .as_ref()
}

/// A built network and its inputs, ready to be timed.
struct Bench {
    net: super::Network,
    inputs: [Tensor<(usize, usize), f32, Cpu>; 2],
}

impl Bench {
    /// Runs input `i` (0: one sample, 1: [`LATENCY_BATCH`]) through the network `k` times;
    /// returns the thread CPU time and the wall time it took.
    fn run(&mut self, i: usize, k: usize) -> (Duration, Duration) {
        // Timed as trials train and predict (see nn::denormals).
        let _flush = super::denormals::FlushDenormals::new();
        let (c0, w0) = (thread_cpu(), Instant::now());
        for _ in 0..k {
            let out = self.net.forward(self.inputs[i].clone(), false);
            std::hint::black_box(out);
        }
        (thread_cpu().saturating_sub(c0), w0.elapsed())
    }
}

fn measure_here(
    arch: &Architecture,
    shape: InputShape,
    n_outputs: usize,
    seed: u64,
    plan: Plan,
) -> Result<Latency, super::NnError> {
    let dev = Cpu::seed_from_u64(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let net = build_network(arch, shape, n_outputs, &mut rng, &dev)?;
    let n = shape.len();
    let mut input = |b: usize| {
        let data: Vec<f32> = (0..b * n)
            .map(|_| StandardNormal.sample(&mut rng))
            .collect();
        device_tensor(&dev, &data, b, n)
    };
    let inputs = [input(1), input(LATENCY_BATCH)];
    let mut bench = Bench { net, inputs };
    // Warm-up (caches, the allocator's free lists), then how many calls make a repetition.
    let start = thread_cpu();
    let mut calls = 0;
    while calls < WARMUP_CALLS || thread_cpu().saturating_sub(start) < plan.warmup {
        bench.run(0, 1);
        bench.run(1, 1);
        calls += 1;
    }
    let k = [0, 1].map(|i| calls_for(bench.run(i, 1).0, plan.repetition));
    let per_sample = |d: Duration, i: usize| {
        let samples = if i == 0 { 1 } else { LATENCY_BATCH };
        d.as_secs_f64() * 1e3 / (k[i] * samples) as f64
    };
    let (cpu_one, wall_one): (Vec<f64>, Vec<f64>) = (0..plan.repeats_one)
        .map(|_| {
            let (cpu, wall) = bench.run(0, k[0]);
            (per_sample(cpu, 0), per_sample(wall, 0))
        })
        .unzip();
    let cpu_batch: Vec<f64> = (0..plan.repeats_batch)
        .map(|_| per_sample(bench.run(1, k[1]).0, 1))
        .collect();
    let ms = quantile(&cpu_one, 0.5);
    Ok(Latency {
        ms,
        batch_ms: quantile(&cpu_batch, 0.5),
        batch: LATENCY_BATCH,
        spread: (quantile(&cpu_one, 0.75) - quantile(&cpu_one, 0.25)) / ms.max(f64::MIN_POSITIVE),
        repeats: plan.repeats_one,
        wall_ms: quantile(&wall_one, 0.5),
    })
}

/// Calls of `per_call` each that make one repetition of about `repetition` (at least one).
fn calls_for(per_call: Duration, repetition: Duration) -> usize {
    let per_call = per_call.max(Duration::from_nanos(100));
    ((repetition.as_secs_f64() / per_call.as_secs_f64()).ceil() as usize).max(1)
}

/// The `q` quantile of `xs`, linearly interpolated (NaN when empty).
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    let mut v: Vec<f64> = xs.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    let at = q.clamp(0.0, 1.0) * (v.len() - 1) as f64;
    let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (at - lo as f64)
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill; the clock id is a constant.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if !ok {
        return Duration::ZERO;
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

// ---------------------------------------------------------------- pausing training

/// Who trains and who measures, in this process.
struct GateState {
    /// Threads inside [`training`] that are not paused.
    training: usize,
    measuring: bool,
    /// Measurements waiting for training to pause.
    waiting: usize,
}

static GATE: Mutex<GateState> = Mutex::new(GateState {
    training: 0,
    measuring: false,
    waiting: 0,
});
static CHANGED: Condvar = Condvar::new();
/// Set while a measurement waits or runs: pause points look at it without locking.
static WANTED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// How deep this thread is inside [`training`] (a rayon thread waiting in a fold's step may
    /// run another fold's task on top of it).
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

fn gate() -> MutexGuard<'static, GateState> {
    GATE.lock().unwrap_or_else(|p| p.into_inner())
}

fn wait(g: MutexGuard<'static, GateState>) -> MutexGuard<'static, GateState> {
    CHANGED.wait(g).unwrap_or_else(|p| p.into_inner())
}

/// Marks the calling thread as training until the guard is dropped; waits first while a
/// measurement waits or runs. Nested calls on one thread count once.
pub fn training() -> Training {
    let depth = DEPTH.with(|d| {
        let depth = d.get();
        d.set(depth + 1);
        depth
    });
    if depth > 0 {
        return Training { counted: false };
    }
    let mut g = gate();
    while g.measuring || g.waiting > 0 {
        g = wait(g);
    }
    g.training += 1;
    Training { counted: true }
}

/// See [`training`].
pub struct Training {
    counted: bool,
}

impl Drop for Training {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
        if self.counted {
            let mut g = gate();
            g.training -= 1;
            CHANGED.notify_all();
        }
    }
}

/// Where training may pause for a measurement: between steps of a fold. Does nothing on a
/// thread that is not (or is more than once) inside [`training`], or when no measurement waits.
pub fn pause_point() {
    if !WANTED.load(Ordering::Acquire) || DEPTH.with(Cell::get) != 1 {
        return;
    }
    let mut g = gate();
    if !(g.measuring || g.waiting > 0) {
        return;
    }
    g.training -= 1;
    CHANGED.notify_all();
    while g.measuring || g.waiting > 0 {
        g = wait(g);
    }
    g.training += 1;
}

/// Runs `f` once no thread of this process trains (they wait at their next pause point) and no
/// other measurement runs. On a thread that is itself inside [`training`], `f` runs at once:
/// waiting for itself would never end.
pub fn exclusive<R>(f: impl FnOnce() -> R) -> R {
    if DEPTH.with(Cell::get) > 0 {
        return f();
    }
    let mut g = gate();
    g.waiting += 1;
    WANTED.store(true, Ordering::Release);
    while g.measuring || g.training > 0 {
        g = wait(g);
    }
    g.waiting -= 1;
    g.measuring = true;
    drop(g);
    struct Done;
    impl Drop for Done {
        fn drop(&mut self) {
            let mut g = gate();
            g.measuring = false;
            WANTED.store(g.waiting > 0, Ordering::Release);
            CHANGED.notify_all();
        }
    }
    let _done = Done;
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0], 0.5), 2.0);
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn thread_cpu_time_advances_with_work() {
        let t = thread_cpu();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(thread_cpu() > t);
    }
}
