//! Outbound HTTP: a small blocking client over `wasi:http/outgoing-handler`.
//!
//! The host lets a plugin reach only the origins its manifest grants
//! (`[grants] http = ["https://api.example.com"]` in `NAME.toml`); a request
//! elsewhere fails at [`RequestBuilder::send`] with the host's message saying
//! which line would grant it. Time spent waiting counts against the job's time
//! limit, so the client sets no timeouts of its own.
//!
//! Errors are already sorted for a handler: trouble reaching the server (and
//! reading its answer) is [`Error::retry`]; a URL that cannot be parsed or a
//! header the host forbids is [`Error::fatal`]; [`Response::error_for_status`]
//! turns HTTP statuses into the right kind (`5xx` retry, `4xx` fatal, `429`/`503`
//! with `Retry-After` a retry at that time).
//!
//! ```
//! use jobhost_sdk::{Error, http, testing};
//!
//! fn fetch_price(sku: &str) -> Result<f64, Error> {
//!     #[derive(serde::Deserialize)]
//!     struct Price { amount: f64 }
//!     let price: Price = http::get(format!("https://prices.example.com/sku/{sku}"))
//!         .header("accept", "application/json")
//!         .send()?
//!         .error_for_status()?
//!         .json()?;
//!     Ok(price.amount)
//! }
//!
//! // Natively (in `cargo test`) requests go to a stub responder.
//! testing::respond_http(|_| testing::HttpReply::status(200).body(r#"{"amount":9.5}"#));
//! assert_eq!(fetch_price("A-1").unwrap(), 9.5);
//! assert_eq!(testing::take_http_requests()[0].url, "https://prices.example.com/sku/A-1");
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

/// How many characters of a response body an error message quotes.
const EXCERPT_CHARS: usize = 200;

/// An HTTP request method.
///
/// ```
/// use jobhost_sdk::http::Method;
///
/// assert_eq!("patch".parse::<Method>().unwrap(), Method::Patch);
/// assert_eq!(Method::Post.to_string(), "POST");
/// assert!("BREW".parse::<Method>().unwrap_err().is_fatal());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
}

impl Method {
    /// The method's name as sent on the wire.
    ///
    /// ```
    /// assert_eq!(jobhost_sdk::http::Method::Delete.as_str(), "DELETE");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses a method name, ignoring case; an unknown one is a fatal error.
impl FromStr for Method {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        const ALL: [Method; 7] = [
            Method::Get,
            Method::Head,
            Method::Post,
            Method::Put,
            Method::Delete,
            Method::Patch,
            Method::Options,
        ];
        ALL.into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::fatal(format!("unknown HTTP method {name:?}")))
    }
}

/// Starts a `GET` request.
///
/// ```
/// let request = jobhost_sdk::http::get("https://api.example.com/status");
/// ```
pub fn get(url: impl Into<String>) -> RequestBuilder {
    request(Method::Get, url)
}

/// Starts a `POST` request.
///
/// ```
/// let request = jobhost_sdk::http::post("https://api.example.com/orders").body("{}");
/// ```
pub fn post(url: impl Into<String>) -> RequestBuilder {
    request(Method::Post, url)
}

/// Starts a `PUT` request.
///
/// ```
/// let request = jobhost_sdk::http::put("https://api.example.com/orders/7").body("{}");
/// ```
pub fn put(url: impl Into<String>) -> RequestBuilder {
    request(Method::Put, url)
}

/// Starts a `DELETE` request.
///
/// ```
/// let request = jobhost_sdk::http::delete("https://api.example.com/orders/7");
/// ```
pub fn delete(url: impl Into<String>) -> RequestBuilder {
    request(Method::Delete, url)
}

/// Starts a request with any method.
///
/// ```
/// use jobhost_sdk::http::{self, Method};
/// let request = http::request(Method::Patch, "https://api.example.com/orders/7");
/// ```
pub fn request(method: Method, url: impl Into<String>) -> RequestBuilder {
    RequestBuilder {
        method,
        url: url.into(),
        headers: Vec::new(),
        body: None,
        error: None,
    }
}

/// A request being put together; [`send`](Self::send) sends it and waits
/// for the whole response.
///
/// ```
/// use jobhost_sdk::{http, testing};
///
/// testing::respond_http(|_| testing::HttpReply::status(204));
/// let response = http::put("https://api.example.com/items/1")
///     .header("authorization", "Bearer t0ken")
///     .json(&serde_json::json!({"name": "lamp"}))
///     .send()
///     .unwrap();
/// assert_eq!(response.status, 204);
///
/// let sent = &testing::take_http_requests()[0];
/// assert_eq!(sent.header("content-type"), Some("application/json"));
/// assert_eq!(sent.body, br#"{"name":"lamp"}"#);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a request does nothing until it is sent"]
pub struct RequestBuilder {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    /// A problem found while building (e.g. JSON that cannot be serialized),
    /// reported by `send` so the builder chains without `?` at every step.
    error: Option<Error>,
}

impl RequestBuilder {
    /// Adds a header; repeated names are sent as repeated headers.
    ///
    /// ```
    /// let request = jobhost_sdk::http::get("https://api.example.com/")
    ///     .header("accept", "text/plain");
    /// ```
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sets the request body, sent as-is (with a `content-length`).
    ///
    /// ```
    /// let request = jobhost_sdk::http::post("https://api.example.com/raw").body(vec![1u8, 2, 3]);
    /// ```
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sets the body to `value` as JSON and `content-type: application/json`
    /// (replacing any content type set before).
    ///
    /// ```
    /// let request = jobhost_sdk::http::post("https://api.example.com/orders")
    ///     .json(&serde_json::json!({"id": 7}));
    /// ```
    pub fn json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => {
                self.headers
                    .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
                self.headers
                    .push(("content-type".to_owned(), "application/json".to_owned()));
                self.body = Some(body);
            }
            Err(e) => {
                self.error = Some(Error::fatal(format!(
                    "cannot serialize the request body: {e}"
                )))
            }
        }
        self
    }

    /// Sends the request and reads the whole response.
    ///
    /// Any response, whatever its status, is `Ok` (see
    /// [`Response::error_for_status`]). A URL that does not parse, or a
    /// header the host refuses, is a fatal error; failing to reach the server
    /// or to read its answer (refused, timed out, an origin the manifest does
    /// not grant, ...) is a retry whose message says why.
    ///
    /// ```
    /// use jobhost_sdk::{http, testing};
    ///
    /// testing::respond_http(|_| testing::HttpReply::network_error("connection refused"));
    /// let error = http::get("http://127.0.0.1:9/").send().unwrap_err();
    /// assert!(!error.is_fatal());
    /// assert_eq!(error.message(), "GET http://127.0.0.1:9/: connection refused");
    ///
    /// assert!(http::get("ftp://example.com/").send().unwrap_err().is_fatal());
    /// ```
    pub fn send(self) -> Result<Response, Error> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let url = Url::parse(&self.url).map_err(|why| {
            Error::fatal(format!(
                "{} {:?}: invalid URL: {why}",
                self.method, self.url
            ))
        })?;
        let label = format!("{} {}", self.method, url.without_query());
        let mut headers = self.headers;
        if let Some(body) = &self.body
            && !headers
                .iter()
                .any(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        {
            headers.push(("content-length".to_owned(), body.len().to_string()));
        }
        let outgoing = Outgoing {
            method: self.method,
            url: &url,
            full_url: &self.url,
            headers: &headers,
            body: self.body.as_deref(),
        };
        match imp::send(&outgoing) {
            Ok(incoming) => Ok(Response {
                status: incoming.status,
                headers: incoming.headers,
                body: incoming.body,
                label,
            }),
            Err(Failed::Refused(why)) => Err(Error::fatal(format!("{label}: {why}"))),
            Err(Failed::Network(why)) => Err(Error::retry(format!("{label}: {why}"))),
        }
    }
}

/// A whole HTTP response: status, headers (in order, names as the server
/// sent them, values as lossy UTF-8) and body.
///
/// ```
/// use jobhost_sdk::{http, testing};
///
/// testing::respond_http(|_| {
///     testing::HttpReply::status(200).header("Content-Type", "text/plain").body("pong")
/// });
/// let response = http::get("https://api.example.com/ping").send().unwrap();
/// assert_eq!(response.status, 200);
/// assert_eq!(response.header("content-type"), Some("text/plain"));
/// assert_eq!(response.text().unwrap(), "pong");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The headers in the order received; a repeated header appears once per value.
    pub headers: Vec<(String, String)>,
    /// The body, read to its end.
    pub body: Vec<u8>,
    /// `METHOD url-without-query`, to say in errors which request this answers.
    label: String,
}

impl Response {
    /// The first value of header `name`, compared ignoring case.
    ///
    /// ```
    /// use jobhost_sdk::{http, testing};
    ///
    /// testing::respond_http(|_| testing::HttpReply::status(200).header("ETag", "\"v1\""));
    /// let response = http::get("https://api.example.com/doc").send().unwrap();
    /// assert_eq!(response.header("etag"), Some("\"v1\""));
    /// assert_eq!(response.header("x-missing"), None);
    /// ```
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON into `T`; a body that does not parse is a
    /// fatal error quoting the start of the body.
    ///
    /// ```
    /// use jobhost_sdk::{http, testing};
    ///
    /// testing::respond_http(|_| testing::HttpReply::status(200).body(r#"{"id":7}"#));
    /// let value: serde_json::Value = http::get("https://api.example.com/o/7").send().unwrap().json().unwrap();
    /// assert_eq!(value["id"], 7);
    /// ```
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::fatal(format!(
                "{}: HTTP {}: invalid JSON body ({e}): {}",
                self.label,
                self.status,
                excerpt(&self.body)
            ))
        })
    }

    /// The body as text; a body that is not UTF-8 is a fatal error.
    ///
    /// ```
    /// use jobhost_sdk::{http, testing};
    ///
    /// testing::respond_http(|_| testing::HttpReply::status(200).body("ok"));
    /// assert_eq!(http::get("https://api.example.com/").send().unwrap().text().unwrap(), "ok");
    /// ```
    pub fn text(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.body).map_err(|_| {
            Error::fatal(format!(
                "{}: HTTP {}: body is not UTF-8",
                self.label, self.status
            ))
        })
    }

    /// The response itself if its status is a success (below 400), else the
    /// error a handler should fail with:
    ///
    /// - `429` or `503` with a `Retry-After` header (seconds, or an HTTP
    ///   date): [`Error::retry_after`] that long;
    /// - other `5xx`, and `429`/`503` without `Retry-After`: [`Error::retry`];
    /// - other `4xx`: [`Error::fatal`].
    ///
    /// The message names the request and the status and quotes the body's
    /// first 200 characters.
    ///
    /// ```
    /// use std::time::Duration;
    /// use jobhost_sdk::{http, testing};
    ///
    /// testing::respond_http(|request| match request.url.as_str() {
    ///     "https://api.example.com/busy" => {
    ///         testing::HttpReply::status(429).header("Retry-After", "30").body("slow down")
    ///     }
    ///     "https://api.example.com/down" => testing::HttpReply::status(502),
    ///     _ => testing::HttpReply::status(404).body("no such order"),
    /// });
    /// let status = |url: &str| http::get(url).send().unwrap().error_for_status().unwrap_err();
    ///
    /// let busy = status("https://api.example.com/busy");
    /// assert_eq!(busy.retry_delay(), Some(Duration::from_secs(30)));
    /// assert_eq!(busy.message(), "GET https://api.example.com/busy: HTTP 429, retry after 30s: slow down");
    /// assert!(!status("https://api.example.com/down").is_fatal());
    /// assert_eq!(
    ///     status("https://api.example.com/orders/7").to_string(),
    ///     "fatal: GET https://api.example.com/orders/7: HTTP 404: no such order",
    /// );
    /// ```
    pub fn error_for_status(self) -> Result<Response, Error> {
        let status = self.status;
        if status < 400 {
            return Ok(self);
        }
        let body = excerpt(&self.body);
        let with_body = |head: String| match body.is_empty() {
            true => head,
            false => format!("{head}: {body}"),
        };
        let delay = match status {
            429 | 503 => self
                .header("retry-after")
                .and_then(|value| retry_after(value, SystemTime::now())),
            _ => None,
        };
        Err(match delay {
            Some(delay) => Error::retry_after(
                with_body(format!(
                    "{}: HTTP {status}, retry after {}s",
                    self.label,
                    delay.as_secs()
                )),
                delay,
            ),
            None if status >= 500 || status == 429 => {
                Error::retry(with_body(format!("{}: HTTP {status}", self.label)))
            }
            None => Error::fatal(with_body(format!("{}: HTTP {status}", self.label))),
        })
    }
}

/// The first [`EXCERPT_CHARS`] characters of a body, lossy UTF-8, on one line.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(EXCERPT_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// How long a `Retry-After` value asks to wait: delay-seconds or an
/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`); a date in the past is no
/// wait. The obsolete date forms are not understood (`None`: plain retry).
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = UNIX_EPOCH + Duration::from_secs(parse_http_date(value)?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Seconds since the Unix epoch of an IMF-fixdate (RFC 9110 §5.6.7).
fn parse_http_date(value: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let (_weekday, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || parts.next().is_some() || clock.next().is_some() {
        return None;
    }
    if !(1..=31).contains(&day) || year < 1970 || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar
/// (year >= 1970): whole years, then whole months, then days.
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let years: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    const BEFORE_MONTH: [u64; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let leap_day = u64::from(month > 2 && leap(year));
    years + BEFORE_MONTH[(month - 1) as usize] + leap_day + day - 1
}

/// The parts of a URL wasi:http takes apart: `scheme://authority/path?query`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) https: bool,
    /// `host[:port]`, IPv6 hosts in brackets.
    pub(crate) authority: String,
    /// Starts with `/`; the fragment is dropped (it is never sent).
    pub(crate) path_and_query: String,
}

impl Url {
    fn parse(url: &str) -> Result<Url, &'static str> {
        let (scheme, rest) = url.split_once("://").ok_or("expected scheme://host/...")?;
        let https = match scheme.to_ascii_lowercase().as_str() {
            "http" => false,
            "https" => true,
            _ => return Err("only http:// and https:// are supported"),
        };
        let rest = rest.split('#').next().unwrap_or_default();
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path_and_query) = rest.split_at(end);
        if authority.contains('@') {
            return Err("credentials in the URL are not supported; send an authorization header");
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("spaces or control characters (percent-encode them)");
        }
        check_authority(authority)?;
        let path_and_query = match path_and_query.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if path_and_query.is_empty() => "/".to_owned(),
            None => path_and_query.to_owned(),
        };
        Ok(Url {
            https,
            authority: authority.to_owned(),
            path_and_query,
        })
    }

    /// For messages: the query may carry tokens, so it is left out.
    fn without_query(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let path = self.path_and_query.split('?').next().unwrap_or("/");
        format!("{scheme}://{}{path}", self.authority)
    }
}

/// `host[:port]` with a host, and a port that is a number; an IPv6 host in brackets.
fn check_authority(authority: &str) -> Result<(), &'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, after) = bracketed.split_once(']').ok_or("unclosed [ in the host")?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(after.strip_prefix(':').ok_or("expected :port after ]")?),
                ),
            }
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("no host");
    }
    match port.map(str::parse::<u16>) {
        Some(Err(_)) => Err("the port is not a number from 0 to 65535"),
        _ => Ok(()),
    }
}

/// A request as the transport sends it, headers final.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) url: &'a Url,
    /// As the handler wrote it, for the native stub.
    #[cfg_attr(target_arch = "wasm32", allow(dead_code))]
    pub(crate) full_url: &'a str,
    pub(crate) headers: &'a [(String, String)],
    pub(crate) body: Option<&'a [u8]>,
}

/// A response as the transport read it.
pub(crate) struct Incoming {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// Why the transport has no response.
pub(crate) enum Failed {
    /// The request itself is unacceptable (a forbidden header, ...): fatal.
    Refused(String),
    /// The server could not be reached or its answer not read: retry.
    Network(String),
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::{Failed, Incoming, Method, Outgoing};
    use crate::__bindings::wasi::http::outgoing_handler;
    use crate::__bindings::wasi::http::types::{
        self, ErrorCode, Fields, HeaderError, IncomingBody, Method as WasiMethod, OutgoingBody,
        OutgoingRequest, Scheme,
    };
    use crate::__bindings::wasi::io::streams::StreamError;

    /// `blocking-write-and-flush` takes at most this many bytes per call.
    const WRITE_CHUNK: usize = 4096;
    /// Bytes asked of each `blocking-read`.
    const READ_CHUNK: u64 = 64 * 1024;

    pub fn send(request: &Outgoing) -> Result<Incoming, Failed> {
        let headers = Fields::new();
        for (name, value) in request.headers {
            headers
                .append(name, value.as_bytes())
                .map_err(|e| Failed::Refused(header_error(name, e)))?;
        }
        let outgoing = OutgoingRequest::new(headers);
        let method = match request.method {
            Method::Get => WasiMethod::Get,
            Method::Head => WasiMethod::Head,
            Method::Post => WasiMethod::Post,
            Method::Put => WasiMethod::Put,
            Method::Delete => WasiMethod::Delete,
            Method::Patch => WasiMethod::Patch,
            Method::Options => WasiMethod::Options,
        };
        let scheme = if request.url.https {
            Scheme::Https
        } else {
            Scheme::Http
        };
        let refused = |what: &str| Failed::Refused(format!("the host refused the {what}"));
        outgoing
            .set_method(&method)
            .map_err(|()| refused("method"))?;
        outgoing
            .set_scheme(Some(&scheme))
            .map_err(|()| refused("scheme"))?;
        outgoing
            .set_authority(Some(&request.url.authority))
            .map_err(|()| refused("host"))?;
        outgoing
            .set_path_with_query(Some(&request.url.path_and_query))
            .map_err(|()| refused("path"))?;
        let body = outgoing.body().map_err(|()| refused("body"))?;

        // Handed over before the body is written: the host streams the body
        // to the server through a bounded buffer, so writing a large body
        // first could wait forever for a request not yet sent.
        let future = outgoing_handler::handle(outgoing, None).map_err(network)?;
        if let Some(bytes) = request.body {
            let stream = body.write().map_err(|()| refused("body"))?;
            for chunk in bytes.chunks(WRITE_CHUNK) {
                stream
                    .blocking_write_and_flush(chunk)
                    .map_err(|e| stream_error("writing the request body", e))?;
            }
            // The stream is a child of the body: it must go before `finish`.
            drop(stream);
        }
        OutgoingBody::finish(body, None).map_err(network)?;

        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(network(code)),
            Some(Err(())) | None => {
                return Err(Failed::Network("the host lost the response".to_owned()));
            }
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| Failed::Network("the response body was taken".to_owned()))?;
        let body = read_body(&incoming)?;
        // Trailers are not offered; finishing only releases the body.
        drop(IncomingBody::finish(incoming));
        Ok(Incoming {
            status,
            headers,
            body,
        })
    }

    fn read_body(incoming: &IncomingBody) -> Result<Vec<u8>, Failed> {
        let stream = incoming
            .stream()
            .map_err(|()| Failed::Network("the response body was taken".to_owned()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(READ_CHUNK) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => return Ok(body),
                Err(e) => return Err(stream_error("reading the response body", e)),
            }
        }
    }

    fn stream_error(doing: &str, error: StreamError) -> Failed {
        let why = match error {
            StreamError::Closed => "the stream closed early".to_owned(),
            StreamError::LastOperationFailed(e) => match types::http_error_code(&e) {
                Some(code) => super::describe(&code),
                None => e.to_debug_string(),
            },
        };
        Failed::Network(format!("{doing}: {why}"))
    }

    fn network(code: ErrorCode) -> Failed {
        Failed::Network(super::describe(&code))
    }

    fn header_error(name: &str, error: HeaderError) -> String {
        match error {
            HeaderError::InvalidSyntax => super::invalid_header(name),
            HeaderError::Forbidden => super::forbidden_header(name),
            HeaderError::Immutable => format!("header {name:?} cannot be changed"),
        }
    }
}

/// A wasi:http error code as one readable phrase. The host's own refusals
/// (an origin not granted, a cap reached) come as `internal-error` with a
/// message saying what to grant where: that message is passed on verbatim.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn describe(code: &crate::__bindings::wasi::http::types::ErrorCode) -> String {
    use crate::__bindings::wasi::http::types::ErrorCode as E;
    let text = match code {
        E::InternalError(Some(message)) => return message.clone(),
        E::InternalError(None) => "internal error in the host",
        E::DnsTimeout => "DNS timeout",
        E::DnsError(payload) => {
            return match &payload.rcode {
                Some(rcode) => format!("DNS error ({rcode})"),
                None => "DNS error".to_owned(),
            };
        }
        E::DestinationNotFound => "host not found",
        E::DestinationUnavailable => "destination unavailable",
        E::DestinationIpProhibited => "destination IP prohibited",
        E::DestinationIpUnroutable => "destination IP unroutable",
        E::ConnectionRefused => "connection refused",
        E::ConnectionTerminated => "connection terminated",
        E::ConnectionTimeout => "connection timeout",
        E::ConnectionReadTimeout => "timeout reading from the connection",
        E::ConnectionWriteTimeout => "timeout writing to the connection",
        E::ConnectionLimitReached => "connection limit reached",
        E::TlsProtocolError => "TLS protocol error",
        E::TlsCertificateError => "TLS certificate error",
        E::TlsAlertReceived(alert) => {
            return match &alert.alert_message {
                Some(message) => format!("TLS alert received: {message}"),
                None => "TLS alert received".to_owned(),
            };
        }
        E::HttpRequestDenied => "request denied",
        E::HttpRequestBodySize(_) => "request body too large",
        E::HttpRequestUriInvalid => "invalid request URI",
        E::HttpRequestUriTooLong => "request URI too long",
        E::HttpResponseIncomplete => "incomplete response",
        E::HttpResponseBodySize(Some(limit)) => {
            return format!("response body larger than {limit} bytes");
        }
        E::HttpResponseBodySize(None) => "response body too large",
        E::HttpResponseTimeout => "timeout waiting for the response",
        E::HttpProtocolError => "HTTP protocol error",
        E::ConfigurationError => "configuration error in the host",
        other => return format!("{other:?}"),
    };
    text.to_owned()
}

fn invalid_header(name: &str) -> String {
    format!("header {name:?}: invalid name or value")
}

fn forbidden_header(name: &str) -> String {
    format!("header {name:?} is set by the host, not by plugins")
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Failed, Incoming, Outgoing};
    use crate::testing::{self, HttpRequest};

    /// What wasmtime's wasi:http refuses by default (hop-by-hop headers and
    /// `host`), so a native test fails where the plugin would.
    const FORBIDDEN: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "host",
        "http2-settings",
    ];

    pub fn send(request: &Outgoing) -> Result<Incoming, Failed> {
        for (name, value) in request.headers {
            let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
            if name.is_empty() || !name.chars().all(token) || value.contains(['\r', '\n', '\0']) {
                return Err(Failed::Refused(super::invalid_header(name)));
            }
            if FORBIDDEN.iter().any(|f| f.eq_ignore_ascii_case(name)) {
                return Err(Failed::Refused(super::forbidden_header(name)));
            }
        }
        let recorded = HttpRequest {
            method: request.method,
            url: request.full_url.to_owned(),
            headers: request.headers.to_vec(),
            body: request.body.unwrap_or_default().to_vec(),
        };
        testing::answer_http(recorded).map_err(Failed::Network)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::__bindings::wasi::http::types::{DnsErrorPayload, ErrorCode};

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn urls_split_into_scheme_authority_and_path() {
        let parsed = url("HTTPS://api.example.com:8443/v1/items?id=7#top");
        assert!(parsed.https);
        assert_eq!(parsed.authority, "api.example.com:8443");
        assert_eq!(parsed.path_and_query, "/v1/items?id=7");
        assert_eq!(
            parsed.without_query(),
            "https://api.example.com:8443/v1/items"
        );
        assert_eq!(url("http://h").path_and_query, "/");
        assert_eq!(url("http://h?q=1").path_and_query, "/?q=1");
        assert_eq!(url("http://[::1]:8080/x").authority, "[::1]:8080");
    }

    #[test]
    fn bad_urls_are_refused() {
        for bad in [
            "api.example.com/x",
            "ftp://example.com/",
            "http:///path",
            "http://user:pw@example.com/",
            "http://example.com:port/",
            "http://example.com:99999/",
            "http://exa mple.com/",
            "http://::1/",
        ] {
            assert!(Url::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:37 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(
            parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn excerpts_are_short_single_lines() {
        assert_eq!(excerpt(b"  line one\nline two \n"), "line one line two");
        let long = "é".repeat(300);
        let cut = excerpt(long.as_bytes());
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }

    #[test]
    fn host_refusals_pass_through_verbatim_and_others_are_named() {
        let granted =
            "origin https://evil.example is not granted: add it to [grants] http in x.toml";
        assert_eq!(
            describe(&ErrorCode::InternalError(Some(granted.to_owned()))),
            granted
        );
        assert_eq!(
            describe(&ErrorCode::ConnectionRefused),
            "connection refused"
        );
        assert_eq!(
            describe(&ErrorCode::DnsError(DnsErrorPayload {
                rcode: Some("NXDOMAIN".to_owned()),
                info_code: None
            })),
            "DNS error (NXDOMAIN)"
        );
        assert!(!describe(&ErrorCode::HttpUpgradeFailed).is_empty());
    }

    #[test]
    fn statuses_map_to_the_right_kind_of_error() {
        let response = |status: u16, headers: &[(&str, &str)]| Response {
            status,
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: b"why".to_vec(),
            label: "GET http://h/".to_owned(),
        };
        assert!(response(200, &[]).error_for_status().is_ok());
        assert!(response(304, &[]).error_for_status().is_ok());
        let fatal = response(400, &[]).error_for_status().unwrap_err();
        assert!(fatal.is_fatal());
        assert_eq!(fatal.message(), "GET http://h/: HTTP 400: why");
        let retry = response(500, &[]).error_for_status().unwrap_err();
        assert!(!retry.is_fatal() && retry.retry_delay().is_none());
        let limited = response(429, &[]).error_for_status().unwrap_err();
        assert!(!limited.is_fatal() && limited.retry_delay().is_none());
        let later = response(503, &[("retry-after", "7")])
            .error_for_status()
            .unwrap_err();
        assert_eq!(later.retry_delay(), Some(Duration::from_secs(7)));
        let ignored = response(500, &[("retry-after", "7")])
            .error_for_status()
            .unwrap_err();
        assert_eq!(ignored.retry_delay(), None);
    }
}
