//! A plugin's own concurrency limit (`concurrency` in its manifest): a
//! counting semaphore its job threads block on, so a limited plugin never
//! runs more than its share at once.

use std::sync::{Condvar, Mutex};

pub struct Slots {
    free: Mutex<u32>,
    freed: Condvar,
}

/// One job's slot, given back when dropped.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(count: u32) -> Self {
        Slots {
            free: Mutex::new(count),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot.
    pub fn acquire(&self) -> Slot<'_> {
        let mut free = self.free.lock().expect("slots lock");
        while *free == 0 {
            free = self.freed.wait(free).expect("slots lock");
        }
        *free -= 1;
        Slot(self)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().expect("slots lock") += 1;
        self.0.freed.notify_one();
    }
}
