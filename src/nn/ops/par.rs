//! When an op splits its work across the threads of the pool it runs on (a trial's pool of
//! `--threads-per-trial` threads, or the global one for the final model): only with more than
//! one thread, and only where each part keeps enough work to outweigh handing it over. Every
//! split op computes each value with the same sums in the same order as on one thread.

/// Multiply-adds (or comparable steps) below which an op stays on one thread: handing a part
/// to another thread costs a few microseconds.
const MIN_WORK_PER_PART: usize = 1 << 18;

/// Into how many parts to split `units` independent units (rows, samples) that cost `work` in
/// all: 1 on a one-thread pool or for small work, else up to the pool's threads.
pub(crate) fn parts(units: usize, work: usize) -> usize {
    let threads = rayon::current_num_threads();
    if threads <= 1 || units < 2 {
        return 1;
    }
    threads.min(units).min(work / MIN_WORK_PER_PART).max(1)
}
