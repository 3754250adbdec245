//! A job's memory limit, enforced by a limiter that remembers when it
//! refused to grow memory, so the job's failure is named by that record
//! rather than by the wording of the trap that follows.

use thiserror::Error;
use wasmtime::ResourceLimiter;

/// A refused memory grow; it traps the guest.
#[derive(Debug, Error)]
#[error("memory limit of {} MiB reached", .limit_bytes >> 20)]
pub struct MemoryLimitReached {
    pub limit_bytes: usize,
}

/// Caps linear memory at `limit_bytes` and records a refused grow.
pub struct MemoryLimiter {
    limit_bytes: usize,
    reached: bool,
}

impl MemoryLimiter {
    pub fn new(limit_bytes: usize) -> Self {
        MemoryLimiter {
            limit_bytes,
            reached: false,
        }
    }

    /// The limit, if a grow was refused since the last [`reset`](Self::reset).
    pub fn reached(&self) -> Option<usize> {
        self.reached.then_some(self.limit_bytes)
    }

    /// A new job starts: a hit of the job before is not its own.
    pub fn reset(&mut self) {
        self.reached = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit_bytes || maximum.is_some_and(|max| desired > max) {
            // A trap rather than a failed grow: a guest allocator that sees the
            // failure would abort with a less telling message anyway.
            self.reached = true;
            return Err(wasmtime::Error::new(MemoryLimitReached {
                limit_bytes: self.limit_bytes,
            }));
        }
        Ok(true)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match maximum {
            Some(max) if desired > max => Err(wasmtime::Error::msg(format!(
                "table limit of {max} elements reached"
            ))),
            _ => Ok(true),
        }
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_grow_is_recorded_until_reset() {
        let mut limiter = MemoryLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.reached(), None);
        let error = limiter.memory_growing(1 << 20, 2 << 20, None).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitReached>().is_some());
        assert_eq!(limiter.reached(), Some(1 << 20));
        limiter.reset();
        assert_eq!(limiter.reached(), None);
    }
}
