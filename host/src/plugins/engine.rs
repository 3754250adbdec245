//! The wasmtime engine every plugin is compiled for, and the clock that
//! interrupts guests running past their deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// Core module instances one job's component instance may hold. A Rust
/// plugin holds 3, a JavaScript one (componentize-js) 4, a Python one
/// (componentize-py: libc, libpython, its runtime, WASI shims, ...) 14: with
/// fewer per job, jobs of a Python plugin on more than a few threads failed
/// with "maximum concurrent limit of N for core instances reached". A slot is
/// a count, not memory: the pool reserves nothing per core instance.
const CORE_INSTANCES_PER_JOB: u32 = 32;

/// How often the epoch advances: the granularity of per-job time limits.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Ticks needed to cover `limit` (at least one).
pub fn ticks_for(limit: Duration) -> u64 {
    (limit.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Builds the engine: component model, epoch interruption and a pooling
/// allocator sized for `instances` jobs at once.
///
/// Fresh instances from a tuned pool cost microseconds because their memory
/// pages stay resident between jobs instead of being faulted in again.
pub fn new_engine(instances: u32) -> wasmtime::Result<Engine> {
    let mut pool = PoolingAllocationConfig::new();
    // A component holds a few memories and tables and up to
    // CORE_INSTANCES_PER_JOB core instances; leave headroom for plugin load
    // checks running beside jobs.
    let slots = instances.saturating_add(8);
    pool.total_component_instances(slots)
        .total_core_instances(slots.saturating_mul(CORE_INSTANCES_PER_JOB))
        .total_memories(slots.saturating_mul(2))
        .total_tables(slots.saturating_mul(4))
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(1 << 16)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .expect("spawning the epoch thread")
        };
        EpochTicker {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
