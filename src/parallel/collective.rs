//! The collective under data-parallel training: replicas, one thread each, exchange values
//! (all-gather) at the points where QAT needs one answer for all of them: every observer's
//! batch min/max, and the batch-norm statistics (SyncBN).
//!
//! In-process, over host memory and burn's device-to-device copies, rather than burn's
//! `all_reduce`: burn 0.22 has none on Flex, and on Cube backends only CUDA implements it (a
//! collective on a wgpu device panics inside cubecl). Gradients are summed by the trainer
//! (`parallel/trainer.rs`), not here.
//!
//! A replica that fails (an error or a panic) aborts the group, so that the others return an
//! error from their next exchange instead of waiting for it forever.

use std::any::Any;
use std::cell::RefCell;
use std::sync::{Arc, Condvar, Mutex};

use crate::error::{QatError, Result};

type Shared = Arc<dyn Any + Send + Sync>;

#[derive(Default)]
struct Round {
    /// What each rank put in this round.
    slots: Vec<Option<Shared>>,
    arrived: usize,
    /// The values of the last completed round, in rank order.
    published: Vec<Shared>,
    generation: u64,
    aborted: Option<String>,
}

/// The replicas of one data-parallel run.
pub struct Group {
    size: usize,
    round: Mutex<Round>,
    done: Condvar,
}

impl Group {
    pub fn new(size: usize) -> Arc<Self> {
        Arc::new(Self { size, round: Mutex::new(Round { slots: vec![None; size], ..Round::default() }), done: Condvar::new() })
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Every rank's `value`, in rank order, once all ranks have given theirs.
    fn all_gather<T: Clone + Send + Sync + 'static>(&self, rank: usize, value: T) -> Result<Vec<T>> {
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(why) = &round.aborted {
            return Err(aborted(why));
        }
        round.slots[rank] = Some(Arc::new(value));
        round.arrived += 1;
        if round.arrived == self.size {
            round.published = round.slots.iter_mut().map(|s| s.take().expect("every rank arrived")).collect();
            round.arrived = 0;
            round.generation += 1;
            self.done.notify_all();
        } else {
            let generation = round.generation;
            round = self.done.wait_while(round, |r| r.generation == generation && r.aborted.is_none()).unwrap_or_else(|p| p.into_inner());
            if round.generation == generation {
                return Err(aborted(round.aborted.as_deref().unwrap_or("")));
            }
        }
        // The next round cannot complete before this rank joins it, so `published` is still ours.
        Ok(round.published.iter().map(|v| v.downcast_ref::<T>().expect("every rank gathers the same type").clone()).collect())
    }

    /// Stops the group: every rank waiting, and every later exchange, returns an error.
    pub fn abort(&self, why: &str) {
        let mut round = self.round.lock().unwrap_or_else(|p| p.into_inner());
        round.aborted.get_or_insert_with(|| why.to_string());
        self.done.notify_all();
    }
}

fn aborted(why: &str) -> QatError {
    QatError::lifecycle("data-parallel training stopped", format!("another replica failed ({why})"))
}

/// This thread's place in a group.
#[derive(Clone)]
pub struct Replica {
    pub group: Arc<Group>,
    pub rank: usize,
}

thread_local! {
    static CURRENT: RefCell<Option<Replica>> = const { RefCell::new(None) };
}

impl Replica {
    /// Runs `f` as this replica: the observers and batch norms it runs exchange with the
    /// group's other replicas. A failure aborts the group.
    pub fn run<R>(self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        struct Leave(Arc<Group>, bool);
        impl Drop for Leave {
            fn drop(&mut self) {
                CURRENT.with(|c| *c.borrow_mut() = None);
                if !self.1 {
                    self.0.abort("a replica panicked");
                }
            }
        }
        let group = self.group.clone();
        CURRENT.with(|c| *c.borrow_mut() = Some(self));
        let mut leave = Leave(group.clone(), false);
        let out = f();
        leave.1 = true;
        if let Err(e) = &out {
            group.abort(&e.to_string());
        }
        out
    }
}

/// The replica this thread runs as, if any.
pub fn current() -> Option<Replica> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Every replica's `value` (just `[value]` outside data-parallel training).
pub fn all_gather<T: Clone + Send + Sync + 'static>(value: T) -> Result<Vec<T>> {
    match current() {
        Some(r) => r.group.all_gather(r.rank, value),
        None => Ok(vec![value]),
    }
}

/// A batch's per-channel `(min, max)` over every replica's share of it: min of the minimums,
/// max of the maximums (exact: the same values one device would see), or the first error any
/// replica met (a non-finite value anywhere stops every replica's observer alike).
pub fn all_reduce_min_max(local: Result<(Vec<f32>, Vec<f32>)>) -> Result<(Vec<f32>, Vec<f32>)> {
    if current().is_none() {
        return local;
    }
    let gathered = all_gather(local.clone())?;
    // A replica's own error first, else the first other's, of the same type.
    local?;
    let mut parts = gathered.into_iter();
    let first = parts.next().expect("one replica at least")?;
    parts.try_fold(first, |(lo, hi), part| {
        let (l, h) = part?;
        if l.len() != lo.len() {
            return Err(QatError::shape(
                "data-parallel observer",
                format!("{} channels on every replica", lo.len()),
                format!("{}", l.len()),
            ));
        }
        Ok((lo.iter().zip(&l).map(|(a, b)| a.min(*b)).collect(), hi.iter().zip(&h).map(|(a, b)| a.max(*b)).collect()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_ranks<R: Send>(n: usize, f: impl Fn(usize) -> Result<R> + Sync) -> Vec<Result<R>> {
        let group = Group::new(n);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|rank| {
                    s.spawn({
                        let group = group.clone();
                        let f = &f;
                        move || Replica { group, rank }.run(|| f(rank))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn every_rank_gets_every_value_in_rank_order_round_after_round() {
        let out = run_ranks(3, |rank| (0..50).map(|round| all_gather(rank * 100 + round)).collect::<Result<Vec<_>>>());
        for result in out {
            let rounds = result.unwrap();
            for (round, values) in rounds.iter().enumerate() {
                assert_eq!(values, &vec![round, 100 + round, 200 + round]);
            }
        }
    }

    #[test]
    fn min_max_reduce_to_the_whole_batch_and_errors_reach_every_rank() {
        let out = run_ranks(2, |rank| all_reduce_min_max(Ok((vec![rank as f32, -1.0], vec![5.0 + rank as f32, 0.0]))));
        for r in out {
            assert_eq!(r.unwrap(), (vec![0.0, -1.0], vec![6.0, 0.0]));
        }
        let out = run_ranks(2, |rank| {
            let nan = QatError::NonFinite { context: "rank 1 observer".into(), what: "a batch minimum (NaN)".into() };
            let local = if rank == 1 { Err(nan) } else { Ok((vec![0.0], vec![1.0])) };
            all_reduce_min_max(local)
        });
        assert!(
            out.iter().all(|r| matches!(r, Err(QatError::NonFinite { context, what })
                if context == "rank 1 observer" && what == "a batch minimum (NaN)")),
            "{out:?}"
        );
    }

    #[test]
    fn a_failed_replica_releases_the_others() {
        let out = run_ranks(3, |rank| {
            if rank == 2 {
                return Err::<Vec<usize>, _>(QatError::lifecycle("rank 2", "broke"));
            }
            all_gather(rank)
        });
        assert!(out.iter().all(|r| r.is_err()), "no rank waits forever, every rank reports");
    }
}
