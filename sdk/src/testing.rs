//! Reading what a handler asked of the host, in native unit tests, and
//! standing in for what the host provides: [`set_config`] for `[config]`
//! values, [`respond_http`] for the servers a plugin calls, an in-memory
//! store for [`kv`](crate::kv) buckets ([`kv_set`], [`kv_get`]).
//!
//! State is per thread, and `cargo test` runs each test on a thread of its
//! own, so tests do not see each other's logs, config, stubs or buckets.
//!
//! ```
//! use jobhost_sdk::{Job, testing};
//!
//! jobhost_sdk::info!("hello {}", 1);
//! jobhost_sdk::enqueue("next.step", "x").unwrap();
//! assert_eq!(testing::take_logs()[0].message, "hello 1");
//! assert_eq!(testing::take_enqueued(), vec![("next.step".to_string(), b"x".to_vec())]);
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

use crate::Level;
use crate::http::Method;

pub(crate) mod kv_store;
pub use kv_store::{clear_kv, deny_bucket, kv_get, kv_keys, kv_set};

/// One recorded log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its severity.
    pub level: Level,
    /// Its message.
    pub message: String,
    /// Its key/value fields.
    pub fields: Vec<(String, String)>,
}

#[derive(Default)]
pub(crate) struct Recorded {
    pub(crate) logs: Vec<LogLine>,
    pub(crate) enqueued: Vec<(String, Vec<u8>)>,
    pub(crate) config: BTreeMap<String, String>,
    http_requests: Vec<HttpRequest>,
}

type Responder = Box<dyn FnMut(&HttpRequest) -> HttpReply>;

thread_local! {
    pub(crate) static RECORDED: RefCell<Recorded> = RefCell::new(Recorded::default());
    /// Apart from `RECORDED` so that a responder may log or read config.
    static RESPONDER: RefCell<Option<Responder>> = const { RefCell::new(None) };
}

/// The log lines recorded on this thread since the last call.
///
/// ```
/// jobhost_sdk::warn!("careful");
/// assert_eq!(jobhost_sdk::testing::take_logs()[0].level, jobhost_sdk::Level::Warn);
/// ```
pub fn take_logs() -> Vec<LogLine> {
    RECORDED.with(|r| std::mem::take(&mut r.borrow_mut().logs))
}

/// The follow-up jobs (type, payload) enqueued on this thread since the last call.
///
/// ```
/// jobhost_sdk::enqueue("a.b", "p").unwrap();
/// assert_eq!(jobhost_sdk::testing::take_enqueued().len(), 1);
/// ```
pub fn take_enqueued() -> Vec<(String, Vec<u8>)> {
    RECORDED.with(|r| std::mem::take(&mut r.borrow_mut().enqueued))
}

/// Sets a `[config]` value for this thread's [`config`](crate::config) calls.
///
/// ```
/// jobhost_sdk::testing::set_config("url", "http://127.0.0.1:8080/hooks");
/// assert!(jobhost_sdk::config::get("url").unwrap().is_some());
/// ```
pub fn set_config(key: &str, value: &str) {
    RECORDED.with(|r| {
        r.borrow_mut()
            .config
            .insert(key.to_owned(), value.to_owned())
    });
}

/// Removes every `[config]` value set on this thread.
///
/// ```
/// jobhost_sdk::testing::set_config("url", "http://127.0.0.1:8080/hooks");
/// jobhost_sdk::testing::clear_config();
/// assert_eq!(jobhost_sdk::config::get("url").unwrap(), None);
/// ```
pub fn clear_config() {
    RECORDED.with(|r| r.borrow_mut().config.clear());
}

/// One request a handler sent through [`http`](crate::http), as the stub
/// responder saw it.
///
/// ```
/// use jobhost_sdk::{http, testing};
///
/// testing::respond_http(|_| testing::HttpReply::status(200));
/// http::post("http://127.0.0.1:8080/x").header("X-Id", "7").body("hi").send().unwrap();
/// let sent = testing::take_http_requests().remove(0);
/// assert_eq!(sent.method, http::Method::Post);
/// assert_eq!(sent.header("x-id"), Some("7"));
/// assert_eq!(sent.header("content-length"), Some("2"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// Its method.
    pub method: Method,
    /// Its URL, as the handler wrote it.
    pub url: String,
    /// Its headers in order, including the `content-length` the SDK adds to a body.
    pub headers: Vec<(String, String)>,
    /// Its body (empty when it has none).
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The first value of header `name`, compared ignoring case.
    ///
    /// ```
    /// let request = jobhost_sdk::testing::HttpRequest {
    ///     method: jobhost_sdk::http::Method::Get,
    ///     url: "http://h/".to_owned(),
    ///     headers: vec![("Accept".to_owned(), "text/plain".to_owned())],
    ///     body: Vec::new(),
    /// };
    /// assert_eq!(request.header("accept"), Some("text/plain"));
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the stub responder answers: a response, or a failure to get one.
///
/// ```
/// use jobhost_sdk::testing::HttpReply;
///
/// let ok = HttpReply::status(200).header("content-type", "application/json").body("{}");
/// let down = HttpReply::network_error("connection refused");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpReply(Result<StubResponse, String>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct StubResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    /// A response with this status, no headers and an empty body.
    ///
    /// ```
    /// let reply = jobhost_sdk::testing::HttpReply::status(404);
    /// ```
    pub fn status(status: u16) -> Self {
        HttpReply(Ok(StubResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }))
    }

    /// The request fails before any response, as when the server cannot be
    /// reached: `send` returns a retry whose message ends with `why`, which
    /// stands for what the guest would see in wasm (`connection refused`,
    /// `timeout waiting for the response`, or the host's own refusal text).
    ///
    /// ```
    /// let reply = jobhost_sdk::testing::HttpReply::network_error("connection refused");
    /// ```
    pub fn network_error(why: impl Into<String>) -> Self {
        HttpReply(Err(why.into()))
    }

    /// Adds a response header (no effect on a network error).
    ///
    /// ```
    /// let reply = jobhost_sdk::testing::HttpReply::status(429).header("Retry-After", "5");
    /// ```
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let Ok(response) = &mut self.0 {
            response.headers.push((name.to_owned(), value.to_owned()));
        }
        self
    }

    /// Sets the response body (no effect on a network error).
    ///
    /// ```
    /// let reply = jobhost_sdk::testing::HttpReply::status(200).body("pong");
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        if let Ok(response) = &mut self.0 {
            response.body = body.into();
        }
        self
    }
}

/// Answers this thread's HTTP requests with `responder` from now on
/// (replacing any set before). Without one, every request fails with an
/// error saying to call this.
///
/// ```
/// use jobhost_sdk::{http, testing};
///
/// testing::respond_http(|request| match request.url.ends_with("/ok") {
///     true => testing::HttpReply::status(200).body("fine"),
///     false => testing::HttpReply::status(404),
/// });
/// assert_eq!(http::get("http://h/ok").send().unwrap().body, b"fine");
/// assert_eq!(http::get("http://h/other").send().unwrap().status, 404);
/// ```
pub fn respond_http(responder: impl FnMut(&HttpRequest) -> HttpReply + 'static) {
    RESPONDER.with(|r| *r.borrow_mut() = Some(Box::new(responder)));
}

/// The HTTP requests sent on this thread since the last call, in order.
///
/// ```
/// use jobhost_sdk::{http, testing};
///
/// testing::respond_http(|_| testing::HttpReply::status(200));
/// http::delete("http://h/items/1").send().unwrap();
/// assert_eq!(testing::take_http_requests()[0].url, "http://h/items/1");
/// assert!(testing::take_http_requests().is_empty());
/// ```
pub fn take_http_requests() -> Vec<HttpRequest> {
    RECORDED.with(|r| std::mem::take(&mut r.borrow_mut().http_requests))
}

/// Records `request` and asks the responder; `Err` is a network failure.
pub(crate) fn answer_http(request: HttpRequest) -> Result<crate::http::Incoming, String> {
    // Taken out while it runs, so that it may itself log or read config
    // (and a responder sending a request gets the "no responder" error
    // instead of a double borrow).
    let responder = RESPONDER.with(|r| r.borrow_mut().take());
    let reply = match responder {
        Some(mut responder) => {
            let reply = responder(&request);
            RESPONDER.with(|r| {
                // Unless it replaced itself while running.
                r.borrow_mut().get_or_insert(responder);
            });
            reply
        }
        None => HttpReply::network_error(
            "no HTTP stub: call jobhost_sdk::testing::respond_http in this test \
             (natively, requests go to the stub, not the network)",
        ),
    };
    RECORDED.with(|r| r.borrow_mut().http_requests.push(request));
    reply.0.map(|response| crate::http::Incoming {
        status: response.status,
        headers: response.headers,
        body: response.body,
    })
}
