//! The threads that run guest code.
//!
//! Guests run synchronously on dedicated OS threads rather than as async
//! tasks: a synchronous call avoids wasmtime's fiber stacks (several µs a job)
//! and a busy guest can never stall the async tasks that talk to Redis.

use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::mpsc::UnboundedSender;

use crate::broker::Delivery;
use crate::dispatch::{Dispatcher, Finished};

/// A delivery on its way through the pool, holding its slot of the in-flight limit.
pub struct Task {
    pub delivery: Delivery,
    pub permit: OwnedSemaphorePermit,
}

/// A finished task, still holding its slot until its outcome is recorded.
pub struct Done {
    pub finished: Finished,
    pub permit: OwnedSemaphorePermit,
}

/// `size` threads taking tasks from a shared queue.
pub struct Pool {
    sender: Option<crossbeam_channel::Sender<Task>>,
    threads: Vec<JoinHandle<()>>,
}

impl Pool {
    pub fn start(size: usize, dispatcher: Arc<Dispatcher>, done: UnboundedSender<Done>) -> Self {
        let (sender, receiver) = crossbeam_channel::unbounded::<Task>();
        let threads = (0..size)
            .map(|n| {
                let receiver = receiver.clone();
                let dispatcher = dispatcher.clone();
                let done = done.clone();
                std::thread::Builder::new()
                    .name(format!("job-{n}"))
                    .spawn(move || {
                        for task in receiver {
                            let finished = dispatcher.dispatch(task.delivery);
                            let permit = task.permit;
                            if done.send(Done { finished, permit }).is_err() {
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
    pub fn submit(&self, task: Task) -> bool {
        self.sender
            .as_ref()
            .is_some_and(|sender| sender.send(task).is_ok())
    }

    /// Stops taking tasks; queued tasks still run. Returns the threads to join.
    pub fn close(mut self) -> Vec<JoinHandle<()>> {
        self.sender.take();
        std::mem::take(&mut self.threads)
    }
}
