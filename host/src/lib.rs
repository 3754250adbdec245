//! jobhost: runs background jobs from Redis Streams through sandboxed
//! WebAssembly plugins.
//!
//! The binary is a thin shell over this library: [`cli`] parses and runs
//! commands, [`host::run`] is the consumer, [`client::Client`] (or [`broker::Redis`]) enqueues jobs.

pub mod backoff;
pub mod broker;
pub mod cli;
pub mod client;
pub mod dashboard;
pub mod dispatch;
pub mod envelope;
pub mod generator;
pub mod host;
pub mod http;
pub mod keys;
pub mod logging;
pub mod metrics;
pub mod outcome;
pub mod plugins;
pub mod schedule;
pub mod shutdown;
