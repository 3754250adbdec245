//! Write jobhost job handlers in Rust.
//!
//! A plugin is a crate built as a `cdylib` for `wasm32-wasip2`. It names the
//! job types it handles and one function that runs a job:
//!
//! ```
//! use jobhost_sdk::{Error, Job};
//!
//! #[derive(serde::Deserialize)]
//! struct Greeting {
//!     name: String,
//! }
//!
//! fn handle(job: Job) -> Result<String, Error> {
//!     let greeting: Greeting = job.json()?; // invalid JSON: fatal, straight to the DLQ
//!     if greeting.name.is_empty() {
//!         return Err(Error::fatal("name is empty"));
//!     }
//!     jobhost_sdk::info!("greeting {}", greeting.name);
//!     jobhost_sdk::enqueue("greetings.sent", greeting.name.as_bytes())?;
//!     Ok(format!("Hello, {}!", greeting.name))
//! }
//!
//! jobhost_sdk::plugin! {
//!     name: "greeter",
//!     version: "1.0.0",
//!     handles: ["greetings.*"],
//!     handler: handle,
//! }
//!
//! // Handlers are plain functions: test them natively with `cargo test`.
//! let output = handle(Job::new("greetings.new", r#"{"name":"Ada"}"#)).unwrap();
//! assert_eq!(output, "Hello, Ada!");
//! assert_eq!(jobhost_sdk::testing::take_enqueued()[0].0, "greetings.sent");
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and drop the
//! `.wasm` into the folder `jobhost run --plugins` watches.
//!
//! The plugin is a component of the world `plugin` in `jobhost:plugin@0.2.0`,
//! whose WIT ships in this crate's `wit/`; `jobhost plugins check` prints the
//! version a plugin was built for.
//!
//! - Return output on success: anything that converts into [`Output`]
//!   (`()`, `String`, `&str`, `Vec<u8>`, or [`Output::json`]).
//! - [`Error::retry`] for failures worth another attempt (retried with
//!   exponential backoff), [`Error::retry_after`] for one not before a given
//!   delay, [`Error::fatal`] for ones that never succeed.
//!   A panic or a trap counts as retryable.
//! - [`trace!`], [`debug!`], [`info!`], [`warn!`], [`error!`] log through the
//!   host, tagged with plugin and job id; [`log`] adds key/value fields.
//! - [`enqueue`] emits follow-up jobs, written only if this job succeeds.
//! - [`http`] calls the origins the plugin's `NAME.toml` grants; [`config`]
//!   reads its `[config]` values.
//! - [`kv`] reads and writes the key-value buckets the manifest grants; a
//!   job's writes are committed with its acknowledgement, only if it succeeds.
//! - [`testing`] (native builds only) records what a handler asked of the
//!   host and stands in for config, HTTP servers and key-value buckets.
//!
//! # Calling an API
//!
//! A handler that ships an order through a shipping API, with the API's
//! address in the manifest:
//!
//! ```toml
//! # shipping.toml, beside shipping.wasm
//! [grants]
//! http = ["https://api.shipping.example"]
//!
//! [config]
//! api_base = "https://api.shipping.example/v2"
//! api_key = { env = "SHIPPING_KEY", secret = true }
//! ```
//!
//! ```
//! use jobhost_sdk::{Error, Job, config, http};
//!
//! #[derive(serde::Deserialize)]
//! struct Order {
//!     id: u64,
//! }
//!
//! #[derive(serde::Deserialize)]
//! struct Shipment {
//!     tracking: String,
//! }
//!
//! fn ship(job: Job) -> Result<String, Error> {
//!     let order: Order = job.json()?;
//!     let base = config::require("api_base")?; // not configured: fatal, says where to set it
//!     let key = config::require("api_key")?;
//!     let shipment: Shipment = http::post(format!("{base}/shipments"))
//!         .header("authorization", format!("Bearer {key}"))
//!         .header("idempotency-key", job.id()) // the same on every retry
//!         .json(&serde_json::json!({ "order": order.id }))
//!         .send()? // unreachable, timed out, origin not granted: retry
//!         .error_for_status()? // 4xx fatal, 5xx retry, 429 + Retry-After: retry then
//!         .json()?;
//!     jobhost_sdk::info!("order {} shipped as {}", order.id, shipment.tracking);
//!     Ok(shipment.tracking)
//! }
//!
//! jobhost_sdk::plugin! {
//!     name: "shipping",
//!     version: "1.0.0",
//!     handles: ["orders.paid"],
//!     handler: ship,
//! }
//!
//! // Natively, config and HTTP come from the test.
//! use jobhost_sdk::testing::{self, HttpReply};
//!
//! testing::set_config("api_base", "https://api.shipping.example/v2");
//! testing::set_config("api_key", "k-123");
//! testing::respond_http(|request| match request.header("authorization") {
//!     Some("Bearer k-123") => HttpReply::status(201).body(r#"{"tracking":"T-42"}"#),
//!     _ => HttpReply::status(401).body("bad key"),
//! });
//! let tracking = ship(Job::new("orders.paid", r#"{"id":7}"#)).unwrap();
//! assert_eq!(tracking, "T-42");
//! let sent = testing::take_http_requests();
//! assert_eq!(sent[0].url, "https://api.shipping.example/v2/shipments");
//! assert_eq!(sent[0].body, br#"{"order":7}"#);
//!
//! // The API is rate limiting: retried when it says.
//! testing::respond_http(|_| HttpReply::status(429).header("Retry-After", "20"));
//! let error = ship(Job::new("orders.paid", r#"{"id":7}"#)).unwrap_err();
//! assert_eq!(error.retry_delay(), Some(std::time::Duration::from_secs(20)));
//! ```

#![deny(missing_docs)]

extern crate self as jobhost_sdk;

#[doc(hidden)]
pub mod __bindings {
    include!("bindings.rs");
}
pub mod config;
mod error;
mod host;
pub mod http;
mod job;
pub mod kv;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use error::{Error, Output};
pub use host::{Level, enqueue, enqueue_json, log};
pub use job::Job;

/// Logs at info level, `format!`-style.
///
/// ```
/// jobhost_sdk::info!("order {} accepted", 7);
/// ```
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log($crate::Level::Info, &::std::format!($($arg)*), &[]) };
}

/// Logs at trace level, `format!`-style.
///
/// ```
/// jobhost_sdk::trace!("step {}", 1);
/// ```
#[macro_export]
macro_rules! trace {
    ($($arg:tt)*) => { $crate::log($crate::Level::Trace, &::std::format!($($arg)*), &[]) };
}

/// Logs at debug level, `format!`-style.
///
/// ```
/// jobhost_sdk::debug!("payload is {} bytes", 12);
/// ```
#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => { $crate::log($crate::Level::Debug, &::std::format!($($arg)*), &[]) };
}

/// Logs at warn level, `format!`-style.
///
/// ```
/// jobhost_sdk::warn!("slow upstream: {} ms", 900);
/// ```
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log($crate::Level::Warn, &::std::format!($($arg)*), &[]) };
}

/// Logs at error level, `format!`-style.
///
/// ```
/// jobhost_sdk::error!("upstream said {}", 500);
/// ```
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log($crate::Level::Error, &::std::format!($($arg)*), &[]) };
}

/// Exports a plugin: its name, version, the job types it handles (exact
/// names or patterns with `*`) and its handler, a function
/// `fn(Job) -> Result<impl Into<Output>, Error>`. Use it once per crate.
///
/// ```
/// fn handle(job: jobhost_sdk::Job) -> Result<(), jobhost_sdk::Error> {
///     jobhost_sdk::info!("got {}", job.id());
///     Ok(())
/// }
///
/// jobhost_sdk::plugin! {
///     name: "audit",
///     version: env!("CARGO_PKG_VERSION"),
///     handles: ["audit.*", "users.deleted"],
///     handler: handle,
/// }
/// ```
#[macro_export]
macro_rules! plugin {
    (
        name: $name:expr,
        version: $version:expr,
        handles: [$($handles:expr),+ $(,)?],
        handler: $handler:path $(,)?
    ) => {
        #[doc(hidden)]
        pub struct __JobhostPlugin;

        impl $crate::__private::Guest for __JobhostPlugin {
            fn describe() -> $crate::__private::PluginInfo {
                $crate::__private::describe($name, $version, &[$($handles),+])
            }

            fn handle(
                job: $crate::__private::WitJob,
            ) -> ::std::result::Result<::std::vec::Vec<u8>, $crate::__private::Failure> {
                $crate::__private::run(job, $handler)
            }
        }

        #[cfg(target_arch = "wasm32")]
        $crate::__bindings::__export_plugin!(__JobhostPlugin with_types_in $crate::__bindings);
    };
}

#[doc(hidden)]
pub mod __private {
    pub use crate::__bindings::exports::jobhost::plugin::handler::{
        Failure, Guest, Job as WitJob, PluginInfo,
    };
    pub use crate::__bindings::jobhost::plugin::types::DelayedRetry;
    pub use wit_bindgen;

    use crate::{Error, Job, Output};

    pub fn describe(name: &str, version: &str, handles: &[&str]) -> PluginInfo {
        PluginInfo {
            name: name.to_owned(),
            version: version.to_owned(),
            handles: handles.iter().map(|h| (*h).to_owned()).collect(),
        }
    }

    pub fn run<O: Into<Output>>(
        job: WitJob,
        handler: fn(Job) -> Result<O, Error>,
    ) -> Result<Vec<u8>, Failure> {
        let job = Job {
            id: job.id,
            job_type: job.job_type,
            payload: job.payload,
            attempt: job.attempt,
            max_attempts: job.max_attempts,
            trace_id: job.trace_id,
            enqueued_at_ms: job.enqueued_at_ms,
        };
        match handler(job) {
            Ok(output) => Ok(output.into().into_bytes()),
            Err(error) if error.is_fatal() => Err(Failure::Fatal(error.message().to_owned())),
            Err(error) => match error.retry_delay() {
                Some(delay) => Err(Failure::RetryAfter(DelayedRetry {
                    reason: error.message().to_owned(),
                    delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                })),
                None => Err(Failure::Retry(error.message().to_owned())),
            },
        }
    }
}
