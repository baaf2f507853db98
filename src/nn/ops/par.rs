//! When an op splits its work across the threads of the pool it runs on (a trial's pool of
//! `--threads-per-trial` threads, or the global one for the final model): only with more than
//! one thread, and only where each part keeps enough work to outweigh handing it over. Every
//! split op computes each value with the same sums in the same order as on one thread.

/// Multiply-adds (or comparable steps) below which an op stays on one thread: handing a part
/// to another thread costs a few microseconds.
const MIN_WORK_PER_PART: usize = 1 << 18;

/// Into how many parts to split `units` independent units (rows, samples) that cost `work` in
/// all: 1 outside a rayon pool, on a one-thread pool or for small work, else up to the pool's
/// threads. Outside a pool (`nas predict` on the main thread, a library user's own thread) every
/// part would be sent into the global pool and waited for: 54,000 digits through a 64-channel
/// network took 9.2-9.7 s that way against 6.5-6.8 s unsplit, so there the op runs as it is.
pub(crate) fn parts(units: usize, work: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || units < 2 || rayon::current_thread_index().is_none() {
        return 1;
    }
    threads.min(units).min(work / MIN_WORK_PER_PART).max(1)
}

/// `f` made to run in the float modes of the thread that calls this (see
/// [`crate::nn::denormals::FloatModes`]): every closure an op hands to the pool's threads goes
/// through here, so that its parts flush subnormals exactly when the op's caller does.
pub(crate) fn in_caller_modes<T, R>(
    f: impl Fn(T) -> R + Sync + Send,
) -> impl Fn(T) -> R + Sync + Send {
    let modes = crate::nn::denormals::FloatModes::current();
    move |t| {
        let _modes = modes.enter();
        f(t)
    }
}

/// `f(i, item)` for every item: on the pool's threads (in the caller's float modes) when
/// `split`, else in order on this thread.
pub(crate) fn for_each_item<T: Send>(
    items: Vec<T>,
    split: bool,
    f: impl Fn(usize, T) + Sync + Send,
) {
    if split {
        use rayon::prelude::*;
        items
            .into_par_iter()
            .enumerate()
            .for_each(in_caller_modes(|(i, t)| f(i, t)));
    } else {
        for (i, t) in items.into_iter().enumerate() {
            f(i, t);
        }
    }
}

/// For tests: the bits of every float `f` returns, computed on a one-thread pool and on a
/// three-thread pool; panics naming the first list that differs.
#[cfg(test)]
pub(crate) fn assert_same_bits_on_1_and_3_threads(
    what: &str,
    f: impl Fn() -> Vec<Vec<f32>> + Sync,
) {
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a test pool");
        let lists = pool.install(&f);
        lists
            .iter()
            .map(|v| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>())
            .collect::<Vec<_>>()
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(one.len(), three.len(), "{what}");
    for (i, (a, b)) in one.iter().zip(&three).enumerate() {
        assert!(a == b, "{what}: list {i} differs between 1 and 3 threads");
    }
}
