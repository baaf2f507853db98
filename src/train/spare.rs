//! Thread pools of search workers that have no trial left, lent epoch by epoch to the trials
//! still running, whose folds then train on both pools at once.
//!
//! At the end of a search the last trials run while the other workers wait: on the peer's CNN
//! space over digits with 2 workers, 1-5% of the cores' time. A worker that stops for good
//! gives its pool here; a trial that starts an epoch with more than one fold to train borrows
//! one and hands it back at the epoch's end. Each fold trains on one thread as it would
//! anywhere else: the numbers are the same, only sooner.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rayon::ThreadPool;

/// The pools that workers without a trial have given, for trials to borrow.
#[derive(Default)]
pub struct SparePools {
    pools: Mutex<Vec<Arc<ThreadPool>>>,
}

impl SparePools {
    pub fn new() -> SparePools {
        SparePools::default()
    }

    /// Gives `pool` for running trials to borrow.
    pub fn give(&self, pool: Arc<ThreadPool>) {
        self.lock().push(pool);
    }

    /// A pool to borrow, if any is free; it comes back when the loan is dropped.
    pub(crate) fn lend(&self) -> Option<Loan<'_>> {
        let pool = self.lock().pop()?;
        Some(Loan { spare: self, pool })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<ThreadPool>>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A borrowed pool.
pub(crate) struct Loan<'a> {
    spare: &'a SparePools,
    pool: Arc<ThreadPool>,
}

impl Loan<'_> {
    /// `f(i, item)` for every item, on the calling thread and on the borrowed pool at once, each
    /// taking the next item not yet taken; the results in the items' order.
    pub(crate) fn share<T: Send, R: Send>(
        &self,
        items: &mut [T],
        f: impl Fn(usize, &mut T) -> R + Sync,
    ) -> Vec<R> {
        let cells: Vec<Mutex<&mut T>> = items.iter_mut().map(Mutex::new).collect();
        let results: Vec<Mutex<Option<R>>> = cells.iter().map(|_| Mutex::new(None)).collect();
        let next = AtomicUsize::new(0);
        let take = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            let Some(cell) = cells.get(i) else { break };
            let mut item = cell.lock().unwrap_or_else(PoisonError::into_inner);
            let r = f(i, &mut item);
            *results[i].lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        };
        // The scope returns once the pool's part is done too (a panic there comes back here).
        self.pool.in_place_scope(|s| {
            s.spawn(|_| take());
            take();
        });
        results
            .into_iter()
            .map(|r| {
                r.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .expect("every item is taken before the scope ends")
            })
            .collect()
    }
}

impl Drop for Loan<'_> {
    fn drop(&mut self) {
        self.spare.give(self.pool.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Arc<ThreadPool> {
        Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .expect("a test pool"),
        )
    }

    /// Every item is done once, its result in its place, and the pool comes back after use.
    #[test]
    fn a_loan_does_every_item_once_and_comes_back() {
        let spare = SparePools::new();
        assert!(spare.lend().is_none());
        spare.give(pool());
        let mut items: Vec<usize> = (0..7).collect();
        {
            let loan = spare.lend().expect("one pool given");
            assert!(spare.lend().is_none(), "the only pool is lent");
            let out = loan.share(&mut items, |i, v| {
                *v += 100;
                i * 2
            });
            assert_eq!(out, (0..7).map(|i| i * 2).collect::<Vec<_>>());
        }
        assert_eq!(items, (100..107).collect::<Vec<_>>());
        assert!(spare.lend().is_some(), "the pool is back");
    }

    /// The borrowed pool's thread takes part: two items that each wait for the other to start
    /// finish only when both run at once.
    #[test]
    fn the_borrowed_pool_works_alongside_the_caller() {
        let spare = SparePools::new();
        spare.give(pool());
        let started = AtomicUsize::new(0);
        let mut items = [0u8; 2];
        let loan = spare.lend().expect("one pool given");
        let t0 = std::time::Instant::now();
        let met = loan.share(&mut items, |_, _| {
            started.fetch_add(1, Ordering::SeqCst);
            while started.load(Ordering::SeqCst) < 2 {
                if t0.elapsed() > std::time::Duration::from_secs(10) {
                    return false;
                }
                std::thread::yield_now();
            }
            true
        });
        assert_eq!(met, vec![true, true]);
    }
}
