//! Pipelined write transactions: each one is built while the one before it commits.
//!
//! A long run of transactions (an import job's chunks) spends about half of each in
//! building its writes (decoding rows, checking values, setting bitmap bits) and half in
//! redb (applying the held writes to the B-tree, writing and syncing the pages). Building
//! transaction *k + 1* needs only the state after *k*, which is the snapshot after *k − 1*
//! with *k*'s held writes laid over it; so *k* commits on a second, scoped thread while *k +
//! 1* is built on the caller's. Each transaction still commits on its own, in order, with
//! the same durability and atomicity as [`Store::write`]; the pipeline holds the writers'
//! turn throughout, and hands it over between two transactions when another writer waits.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::{Scope, ScopedJoinHandle};

use redb::ReadableDatabase;

use super::{guarded, internal, Base, Durability, HeldWrites, Store, Writer, TABLE};
use crate::error::Result;

/// How long a pipeline waits, at most, for a waiting writer to take the turn it hands over.
const HAND_OVER_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

/// A transaction of the pipeline committing on the second thread.
type Committing<'scope> = ScopedJoinHandle<'scope, Result<()>>;

impl Store {
    /// Runs `step` for one write transaction after another until it returns `Ok(false)`
    /// (after which that transaction still commits) or fails. Each transaction commits on
    /// its own, with `durability`, while the next one is built; `committed` is called on
    /// this thread after each commit, in order (the next transaction may be built by then).
    ///
    /// Returns the first failure: a failing step's own writes are dropped, and every
    /// transaction before it is committed. A failing commit marks the store failed (as in
    /// [`Store::write`]) and drops the transaction built on it; a failing `committed` drops
    /// the transaction built after that commit. A panic in a step is an `internal` error
    /// and marks the store failed; a panic in `committed` unwinds out of this call after
    /// the commit in flight (if any) ends.
    pub fn write_pipelined(
        &self,
        durability: Durability,
        mut step: impl FnMut(&mut Writer<'_>) -> Result<bool>,
        mut committed: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        let mut turn = self.writers_turn()?;
        self.refuse_if_failed()?;
        *self.pipeline_thread.lock() = Some(std::thread::current().id());
        let _ends = PipelineEnds(self);
        std::thread::scope(|scope| {
            let mut committing: Option<Committing<'_>> = None;
            let mut below: Arc<HeldWrites> = Arc::default();
            let outcome = loop {
                let built = self.build(&below, &mut step);
                if let Some(earlier) = committing.take() {
                    if let Err(e) = settle(earlier).and_then(|()| committed()) {
                        break Err(e);
                    }
                }
                let (go_on, writes) = match built {
                    Ok(built) => built,
                    Err(e) => break Err(e),
                };
                below = Arc::new(writes);
                committing = Some(self.commit_beside(scope, durability, Arc::clone(&below)));
                if !go_on {
                    break Ok(());
                }
                if self.waiting.load(Ordering::SeqCst) > 0 {
                    // Let the waiting writer in: the next transaction then starts from
                    // the state after theirs.
                    if let Some(Err(e)) = committing
                        .take()
                        .map(|c| settle(c).and_then(|()| committed()))
                    {
                        break Err(e);
                    }
                    below = Arc::default();
                    parking_lot::MutexGuard::unlocked_fair(&mut turn, || self.let_one_in());
                    if let Err(e) = self.refuse_if_failed() {
                        break Err(e);
                    }
                }
            };
            let last = committing.map_or(Ok(()), |c| settle(c).and_then(|()| committed()));
            outcome.and(last)
        })
    }

    /// Waits (a little) until a writer waiting for the turn has taken it: one that is
    /// about to wait, but not parked yet, would miss the fair hand-over.
    fn let_one_in(&self) {
        let waiting = self.waiting.load(Ordering::SeqCst);
        let deadline = std::time::Instant::now() + HAND_OVER_WAIT;
        while self.waiting.load(Ordering::SeqCst) >= waiting && std::time::Instant::now() < deadline
        {
            std::thread::yield_now();
        }
    }

    /// Builds one transaction of the pipeline over the committed state and `below` (the
    /// writes of the one still committing): returns whether to go on, and its writes.
    fn build(
        &self,
        below: &Arc<HeldWrites>,
        step: &mut impl FnMut(&mut Writer<'_>) -> Result<bool>,
    ) -> Result<(bool, HeldWrites)> {
        let mut panicked = true;
        let built = guarded("pipelined write", || {
            let snapshot = self
                .db
                .begin_read()
                .map_err(|e| internal("begin read", e))?
                .open_table(TABLE)
                .map_err(|e| internal("open table", e))?;
            let mut writer = Writer::over(Base::Snapshot(snapshot), Arc::clone(below));
            let go_on = step(&mut writer);
            panicked = false;
            let go_on = go_on?;
            let (writes, announced) = writer.into_held();
            if announced {
                // Its commit runs beside the next build, and the turn may be handed over
                // between them: the count is left odd (readers get no stamp) until an
                // announced commit of `Store::write` ends.
                self.announce_begin();
            }
            Ok((go_on, writes))
        });
        if panicked {
            self.failed.store(true, Ordering::SeqCst);
        }
        built
    }

    /// Starts committing `writes` in one write transaction on a thread of `scope`.
    fn commit_beside<'scope>(
        &'scope self,
        scope: &'scope Scope<'scope, '_>,
        durability: Durability,
        writes: Arc<HeldWrites>,
    ) -> Committing<'scope> {
        scope.spawn(move || {
            let mut panicked = true;
            let committed = guarded("pipelined commit", || {
                let outcome = self.commit_writes(durability, &writes);
                panicked = false;
                outcome
            });
            if panicked || committed.is_err() {
                self.failed.store(true, Ordering::SeqCst);
            }
            committed
        })
    }

    /// Applies `writes` to the table in one write transaction and commits it.
    fn commit_writes(&self, durability: Durability, writes: &HeldWrites) -> Result<()> {
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| internal("begin write", e))?;
        txn.set_durability(durability.redb())
            .map_err(|e| internal("set durability", e))?;
        {
            let mut table = txn
                .open_table(TABLE)
                .map_err(|e| internal("open table", e))?;
            super::apply_writes(&mut table, writes)?;
        }
        txn.commit().map_err(|e| internal("commit", e))
    }
}

/// Clears the store's pipeline thread when the pipeline ends (or unwinds).
struct PipelineEnds<'a>(&'a Store);

impl Drop for PipelineEnds<'_> {
    fn drop(&mut self) {
        *self.0.pipeline_thread.lock() = None;
    }
}

/// Waits for a commit of the pipeline and returns its outcome.
fn settle(committing: Committing<'_>) -> Result<()> {
    committing.join().unwrap_or_else(|_| {
        Err(crate::error::Error::Internal(
            "storage: a pipelined commit panicked".into(),
        ))
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::{Kv, Store};
    use super::*;
    use crate::error::Error;

    /// One write of a pipelined transaction, on one-byte keys.
    #[derive(Clone, Debug)]
    enum Op {
        Put(u8, u8),
        PutNew(u8, u8),
        Delete(u8),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::Put(k % 48, v)),
            (any::<u8>(), any::<u8>()).prop_map(|(k, v)| Op::PutNew(k % 48, v)),
            any::<u8>().prop_map(|k| Op::Delete(k % 48)),
        ]
    }

    fn key(k: u8) -> Vec<u8> {
        vec![k / 8, k % 8]
    }

    fn all(kv: &impl Kv, reverse: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        kv.scan(
            std::ops::Bound::Unbounded,
            std::ops::Bound::Unbounded,
            reverse,
            |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            },
        )
        .unwrap();
        out
    }

    /// Applies `ops` to the writer and the model, checking every read against the model.
    fn apply(writer: &mut Writer<'_>, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, ops: &[Op]) {
        for op in ops {
            let probe = match *op {
                Op::Put(k, v) => {
                    writer.put(&key(k), &[v]).unwrap();
                    model.insert(key(k), vec![v]);
                    k
                }
                Op::PutNew(k, v) if !model.contains_key(&key(k)) => {
                    writer.put_new(key(k), vec![v]).unwrap();
                    model.insert(key(k), vec![v]);
                    k
                }
                Op::PutNew(k, _) => k,
                Op::Delete(k) => {
                    writer.delete(&key(k)).unwrap();
                    model.remove(&key(k));
                    k
                }
            };
            let expected: Vec<_> = model.clone().into_iter().collect();
            assert_eq!(all(&*writer, false), expected);
            let mut backwards = expected;
            backwards.reverse();
            assert_eq!(all(&*writer, true), backwards);
            assert_eq!(
                writer.get(&key(probe)).unwrap(),
                model.get(&key(probe)).cloned()
            );
        }
    }

    proptest::proptest! {
        /// Each transaction of a pipeline reads the state its predecessors leave (their
        /// held writes laid over the snapshot while they commit), a failing step keeps
        /// every transaction before it and none of its own, and `committed` is told of
        /// each commit once.
        #[test]
        fn pipelined_transactions_read_and_commit_like_a_map(
            steps in proptest::collection::vec(proptest::collection::vec(op(), 0..24), 1..8),
            fail_at in proptest::option::of(0usize..8),
        ) {
            let store = Store::in_memory().unwrap();
            store.write(Durability::Eventual, |w| w.put(&key(1), b"s")).unwrap();
            let mut model = BTreeMap::from([(key(1), b"s".to_vec())]);
            let mut kept = model.clone();
            let mut done = 0;
            let mut commits = 0;
            let outcome = store.write_pipelined(
                Durability::Eventual,
                |writer| {
                    let step = done;
                    done += 1;
                    apply(writer, &mut model, &steps[step]);
                    if fail_at == Some(step) {
                        model = kept.clone();
                        return Err(Error::Conflict("this step fails".into()));
                    }
                    kept = model.clone();
                    Ok(done < steps.len())
                },
                || {
                    commits += 1;
                    Ok(())
                },
            );
            let failed = fail_at.filter(|at| *at < steps.len());
            proptest::prop_assert_eq!(outcome.is_err(), failed.is_some());
            proptest::prop_assert_eq!(commits, failed.unwrap_or(steps.len()));
            let expected: Vec<_> = kept.into_iter().collect();
            proptest::prop_assert_eq!(all(&store.read().unwrap(), false), expected);
        }
    }

    fn counter(kv: &impl Kv) -> u32 {
        kv.get_with(b"n", |v| u32::from_be_bytes(v.try_into().unwrap()))
            .unwrap()
            .unwrap_or(0)
    }

    fn bump(writer: &mut Writer<'_>) -> u32 {
        let next = counter(&*writer) + 1;
        writer.put(b"n", &next.to_be_bytes()).unwrap();
        next
    }

    /// A writer that waits while a pipeline runs gets its turn between two of the
    /// pipeline's transactions, and neither loses the other's writes.
    #[test]
    fn a_waiting_writer_goes_between_pipelined_transactions() {
        let store = Store::in_memory().unwrap();
        std::thread::scope(|scope| {
            let mut seen = Vec::new();
            let mut other = None;
            store
                .write_pipelined(
                    Durability::Eventual,
                    |writer| {
                        seen.push(bump(writer));
                        if seen.len() == 3 {
                            let store = &store;
                            other =
                                Some(scope.spawn(move || {
                                    store.write(Durability::Eventual, |w| Ok(bump(w)))
                                }));
                            while store.waiting.load(Ordering::SeqCst) == 0 {
                                std::thread::yield_now();
                            }
                        }
                        Ok(seen.len() < 6)
                    },
                    || Ok(()),
                )
                .unwrap();
            // The fourth transaction saw the other writer's bump (it had the turn first).
            assert_eq!(seen, [1, 2, 3, 5, 6, 7]);
            assert_eq!(other.unwrap().join().unwrap().unwrap(), 4);
        });
        assert_eq!(counter(&store.read().unwrap()), 7);
    }

    /// After a commit fails in storage, the transaction built on it is dropped and the
    /// store refuses writes.
    #[test]
    fn a_failed_commit_stops_the_pipeline_and_the_store() {
        let store = Store::in_memory().unwrap();
        store
            .write(Durability::Eventual, |w| w.put(b"m", b""))
            .unwrap();
        let mut steps = 0;
        let outcome = store.write_pipelined(
            Durability::Eventual,
            |writer| {
                steps += 1;
                bump(writer);
                if steps == 2 {
                    // A put_new of a stored key fails only when applied to redb.
                    writer.put_new(b"m".to_vec(), Vec::new())?;
                }
                Ok(steps < 4)
            },
            || Ok(()),
        );
        assert!(outcome.is_err());
        assert_eq!(steps, 3, "the third transaction was built, then dropped");
        assert_eq!(counter(&store.read().unwrap()), 1);
        assert!(store.write(Durability::Eventual, |_| Ok(())).is_err());
    }
}
