//! A test-only plugin for the end-to-end tests of outbound HTTP and config:
//! each `probe.*` type does one thing through the SDK and reports exactly
//! what the SDK said, so a test can assert on the text in the output or the
//! dead-letter entry.
//!
//! - `probe.request`: sends `{"method","url","body"?,"headers"?:[[k,v]]}`;
//!   output `{"status","body_len","body"}` (first 200 characters), whatever
//!   the status; a send error is fatal as `http: <message>`.
//! - `probe.status`: the same request, failing as `error_for_status` and
//!   `send` map it (retry, fatal, retry-after).
//! - `probe.secrets`: the attacker: logs, prints and fails with every
//!   `[config]` value; the host must redact the secret ones everywhere.
//! - `probe.retry-after`: asks for a retry after `payload` milliseconds.
//! - `probe.many`: `{"url","count"}`: that many GETs in a row, fatal at the
//!   first send error as `http: <message> (after K requests)`, else `K ok`.

use std::time::Duration;

use jobhost_sdk::http::{self, Method, Response};
use jobhost_sdk::{Error, Job, Level, Output, config};
use serde::Deserialize;

#[derive(Deserialize)]
struct Probe {
    #[serde(default = "get")]
    method: String,
    url: String,
    body: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
}

fn get() -> String {
    "GET".to_owned()
}

#[derive(Deserialize)]
struct Many {
    url: String,
    count: u32,
}

fn handle(job: Job) -> Result<Output, Error> {
    match job.job_type() {
        "probe.request" => {
            let response =
                send(job.json()?).map_err(|e| Error::fatal(format!("http: {}", e.message())))?;
            report(&response)
        }
        "probe.status" => report(&send(job.json()?)?.error_for_status()?),
        "probe.secrets" => secrets(),
        "probe.retry-after" => {
            let ms: u64 = job
                .payload_str()?
                .trim()
                .parse()
                .map_err(|e| Error::fatal(format!("payload is not milliseconds: {e}")))?;
            Err(Error::retry_after(
                "asked to wait",
                Duration::from_millis(ms),
            ))
        }
        "probe.many" => {
            let many: Many = job.json()?;
            for done in 0..many.count {
                http::get(many.url.as_str()).send().map_err(|e| {
                    Error::fatal(format!("http: {} (after {done} requests)", e.message()))
                })?;
            }
            Ok(format!("{} ok", many.count).into())
        }
        other => Err(Error::fatal(format!("http-probe does not handle {other}"))),
    }
}

fn send(probe: Probe) -> Result<Response, Error> {
    let method: Method = probe.method.parse()?;
    let mut request = http::request(method, probe.url);
    for (name, value) in probe.headers {
        request = request.header(name, value);
    }
    if let Some(body) = probe.body {
        request = request.body(body);
    }
    request.send()
}

fn report(response: &Response) -> Result<Output, Error> {
    let body = String::from_utf8_lossy(&response.body);
    Output::json(&serde_json::json!({
        "status": response.status,
        "body_len": response.body.len(),
        "body": body.chars().take(200).collect::<String>(),
    }))
}

/// Every way a plugin could leak a value: log message, log field, stdout,
/// stderr and the failure reason.
fn secrets() -> Result<Output, Error> {
    let all = config::all()?;
    for (key, value) in &all {
        jobhost_sdk::info!("config {key}={value}");
        jobhost_sdk::log(
            Level::Warn,
            "config value",
            &[(key.as_str(), value.as_str())],
        );
        println!("stdout {key}={value}");
        eprintln!("stderr {key}={value}");
    }
    let leaked: Vec<String> = all.iter().map(|(k, v)| format!("{k}={v}")).collect();
    Err(Error::fatal(format!("leaking {}", leaked.join(" "))))
}

jobhost_sdk::plugin! {
    name: "http-probe",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["probe.*"],
    handler: handle,
}

#[cfg(test)]
mod tests {
    use jobhost_sdk::testing::{self, HttpReply};

    use super::*;

    fn run(job_type: &str, payload: &str) -> Result<String, Error> {
        handle(Job::new(job_type, payload)).map(|o| String::from_utf8(o.into_bytes()).unwrap())
    }

    #[test]
    fn request_reports_any_status_and_sends_what_it_is_told() {
        testing::respond_http(|_| HttpReply::status(404).body("gone"));
        let output = run(
            "probe.request",
            r#"{"method":"put","url":"http://h/x","body":"hi","headers":[["X-A","1"]]}"#,
        )
        .unwrap();
        assert_eq!(output, r#"{"body":"gone","body_len":4,"status":404}"#);
        let sent = &testing::take_http_requests()[0];
        assert_eq!(
            (sent.method, sent.body.as_slice()),
            (Method::Put, &b"hi"[..])
        );
        assert_eq!(sent.header("x-a"), Some("1"));
    }

    #[test]
    fn request_errors_are_fatal_with_the_sdk_message() {
        testing::respond_http(|_| HttpReply::network_error("origin not granted"));
        let error = run("probe.request", r#"{"url":"http://h/x"}"#).unwrap_err();
        assert!(error.is_fatal());
        assert_eq!(error.message(), "http: GET http://h/x: origin not granted");
    }

    #[test]
    fn status_fails_as_the_sdk_maps_it() {
        testing::respond_http(|_| HttpReply::status(503).header("retry-after", "3"));
        let error = run("probe.status", r#"{"url":"http://h/x"}"#).unwrap_err();
        assert_eq!(error.retry_delay(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn secrets_leak_everywhere() {
        testing::set_config("api_key", "hunter2");
        let error = run("probe.secrets", "").unwrap_err();
        assert!(error.is_fatal() && error.message().contains("hunter2"));
        let logs = testing::take_logs();
        assert!(logs[0].message.contains("hunter2"));
        assert_eq!(
            logs[1].fields,
            vec![("api_key".to_owned(), "hunter2".to_owned())]
        );
    }

    #[test]
    fn retry_after_waits_the_payload() {
        let error = run("probe.retry-after", "1500").unwrap_err();
        assert_eq!(error.retry_delay(), Some(Duration::from_millis(1500)));
        assert_eq!(error.message(), "asked to wait");
    }

    #[test]
    fn many_counts_requests_until_the_first_error() {
        let mut left = 2;
        testing::respond_http(move |_| match left {
            0 => HttpReply::network_error("request limit reached"),
            _ => {
                left -= 1;
                HttpReply::status(200)
            }
        });
        let error = run("probe.many", r#"{"url":"http://h/","count":5}"#).unwrap_err();
        assert_eq!(
            error.message(),
            "http: GET http://h/: request limit reached (after 2 requests)"
        );
        testing::respond_http(|_| HttpReply::status(200));
        assert_eq!(
            run("probe.many", r#"{"url":"http://h/","count":3}"#).unwrap(),
            "3 ok"
        );
    }
}
