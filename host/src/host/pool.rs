//! The threads that run guest code.
//!
//! Guests run synchronously on dedicated OS threads rather than as async
//! tasks: a synchronous call avoids wasmtime's fiber stacks (several µs a job)
//! and a busy guest can never stall the async tasks that talk to Redis.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError};

use tokio::sync::mpsc::UnboundedSender;

use crate::broker::Delivery;
use crate::dispatch::{Dispatcher, Finished};
use crate::keys::QueueKeys;
use crate::plugins::InstanceCache;

use super::cancels::Cancels;
use super::in_flight::Held;

/// A job thread idle this long drops the instance it keeps for reuse, so an
/// idle host holds no instance (nor the plugin version it came from).
const KEEP_WARM: Duration = Duration::from_secs(1);

/// A delivery on its way through the pool, held by this host.
pub(super) struct Task {
    /// Index of its queue in the host's.
    pub(super) queue: usize,
    pub(super) delivery: Delivery,
    pub(super) held: Held,
}

/// A finished task, still held until its outcome is recorded: dropping it
/// releases the job.
pub(super) struct Done {
    pub(super) queue: usize,
    pub(super) finished: Finished,
    _held: Held,
}

/// `size` threads taking tasks from a shared queue.
pub(super) struct Pool {
    sender: Option<crossbeam_channel::Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub(super) fn start(
        size: usize,
        dispatcher: Arc<Dispatcher>,
        queues: Arc<[QueueKeys]>,
        cancels: Arc<Cancels>,
        done: UnboundedSender<Done>,
    ) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Task>();
        let threads = (0..size)
            .map(|n| {
                let receiver = receiver.clone();
                let dispatcher = dispatcher.clone();
                let queues = queues.clone();
                let done = done.clone();
                let cancels = cancels.clone();
                std::thread::Builder::new()
                    .name(format!("job-{n}"))
                    .spawn(move || {
                        // This thread's own: reused instances never cross threads.
                        let mut cache = InstanceCache::default();
                        while let Some(task) = next_task(&receiver, &mut cache) {
                            let queue = &queues[task.queue];
                            let job_id = task.delivery.job.as_ref().ok().map(|j| j.job_id.as_str());
                            let tracked = cancels.track(task.queue, job_id);
                            let finished = dispatcher.dispatch(
                                task.delivery,
                                queue,
                                &tracked.cancel,
                                &mut cache,
                            );
                            drop(tracked);
                            let held = task.held;
                            if done
                                .send(Done {
                                    queue: task.queue,
                                    finished,
                                    _held: held,
                                })
                                .is_err()
                            {
                                break;
                            }
                        }
                    })
                    .expect("spawning a job thread")
            })
            .collect();
        Pool {
            sender: Some(sender),
            threads,
        }
    }

    /// Queues a task; false once the pool is closed.
    pub(super) fn submit(&self, task: Task) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|sender| sender.send(task).is_ok())
    }

    /// Stops taking tasks; queued tasks still run. Returns the threads to join.
    pub(super) fn close(mut self) -> Vec<JoinHandle<()>> {
        self.sender.take();
        std::mem::take(&mut self.threads)
    }
}

/// The next task; None once the pool is closed and drained. Drops the kept
/// instance when no task comes within [`KEEP_WARM`].
fn next_task(receiver: &Receiver<Task>, cache: &mut InstanceCache) -> Option<Task> {
    // Under load a task is waiting: take it without setting up a timed wait.
    if let Ok(task) = receiver.try_recv() {
        return Some(task);
    }
    if cache.is_warm() {
        match receiver.recv_timeout(KEEP_WARM) {
            Ok(task) => return Some(task),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => cache.clear(),
        }
    }
    receiver.recv().ok()
}
