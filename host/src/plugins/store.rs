//! The store a job runs in: its state, its memory limiter and its time limit
//! (the epoch deadline for wasm code, the state's deadline for host calls)
//! and its checks for cancellation.

use std::time::Duration;

use wasmtime::{Engine, Store};

use super::engine::ticks_for;
use super::state::JobState;

/// Running wasm code checks this often (in epoch ticks) whether its job was
/// cancelled: 50 ms, so a cancelled job stops well within 100 ms.
const CANCEL_CHECK_TICKS: u64 = 5;

/// Ticks to the next epoch check when `left` remains before the deadline.
pub fn ticks_until_check(left: Duration) -> u64 {
    ticks_for(left).min(CANCEL_CHECK_TICKS)
}

/// A store for a fresh instance running on `state`, with `timeout` from now.
pub fn fresh_store(engine: &Engine, mut state: JobState, timeout: Duration) -> Store<JobState> {
    state.set_deadline(timeout);
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.memory);
    store.set_epoch_deadline(ticks_until_check(timeout));
    store.epoch_deadline_callback(|store| store.data().epoch_check());
    store
}

/// Readies a reused instance's store for job `job_id`: it keeps its memory
/// limit, and gets the job's own deadline.
pub fn restart_store(store: &mut Store<JobState>, job_id: &str, timeout: Duration) {
    store.data_mut().start_job(job_id);
    store.data_mut().set_deadline(timeout);
    store.set_epoch_deadline(ticks_until_check(timeout));
}
