//! Delivers each `webhook.*` job's payload, as-is, to the URL in config key
//! `url` (`[config]` in `webhook.toml`), as `POST` with
//! `content-type: application/json` and `Idempotency-Key: <job id>`: the key
//! is the same on every retry, so a receiver that honours it applies a job
//! once even when an answer was lost and the job is sent again.
//!
//! - `2xx`: done, output `delivered: <status>`.
//! - `3xx`: fatal. Redirects are not followed (the body would be lost on a
//!   `303`), so the webhook was not delivered: point `url` at the final address.
//! - `4xx` except `429`: fatal, with the status and the start of the body.
//! - `5xx`, unreachable, timed out: retried with backoff; `429`/`503` with
//!   `Retry-After`: retried when the receiver asks.

use jobhost_sdk::{Error, Job, config, http};

fn deliver(job: Job) -> Result<String, Error> {
    let url = config::require("url")?;
    let response = http::post(url)
        .header("content-type", "application/json")
        .header("idempotency-key", job.id())
        .body(job.payload())
        .send()?
        .error_for_status()?;
    if response.status >= 300 {
        let to = response.header("location").unwrap_or("nowhere");
        return Err(Error::fatal(format!(
            "webhook answered {} redirecting to {to}: redirects are not followed; \
             set [config] url in webhook.toml to the final address",
            response.status
        )));
    }
    Ok(format!("delivered: {}", response.status))
}

jobhost_sdk::plugin! {
    name: "webhook",
    version: env!("CARGO_PKG_VERSION"),
    handles: ["webhook.*"],
    handler: deliver,
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use jobhost_sdk::testing::{self, HttpReply};

    use super::*;

    const URL: &str = "http://127.0.0.1:8080/hooks";

    fn job() -> Job {
        Job::new("webhook.order", r#"{"order":7}"#)
    }

    /// Configures `url` and answers every request with `reply`.
    fn receiver(reply: HttpReply) {
        testing::set_config("url", URL);
        testing::respond_http(move |_| reply.clone());
    }

    #[test]
    fn posts_the_payload_as_is_with_the_job_id_as_idempotency_key() {
        receiver(HttpReply::status(202));
        assert_eq!(deliver(job()).unwrap(), "delivered: 202");

        let sent = testing::take_http_requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].method, http::Method::Post);
        assert_eq!(sent[0].url, URL);
        assert_eq!(sent[0].body, br#"{"order":7}"#);
        assert_eq!(sent[0].header("content-type"), Some("application/json"));
        assert_eq!(sent[0].header("idempotency-key"), Some("test-job"));
    }

    #[test]
    fn client_errors_are_fatal_with_status_and_body() {
        receiver(HttpReply::status(422).body("unknown event type\n"));
        let error = deliver(job()).unwrap_err();
        assert!(error.is_fatal());
        assert_eq!(
            error.message(),
            "POST http://127.0.0.1:8080/hooks: HTTP 422: unknown event type"
        );
    }

    #[test]
    fn server_errors_are_retried_with_backoff() {
        receiver(HttpReply::status(500).body("oops"));
        let error = deliver(job()).unwrap_err();
        assert!(!error.is_fatal());
        assert_eq!(error.retry_delay(), None);
        assert!(error.message().contains("HTTP 500: oops"), "{error}");
    }

    #[test]
    fn unreachable_or_slow_receivers_are_retried() {
        for why in ["connection refused", "timeout waiting for the response"] {
            receiver(HttpReply::network_error(why));
            let error = deliver(job()).unwrap_err();
            assert!(!error.is_fatal());
            assert_eq!(
                error.message(),
                format!("POST http://127.0.0.1:8080/hooks: {why}")
            );
        }
    }

    #[test]
    fn rate_limits_are_retried_when_the_receiver_asks() {
        for status in [429, 503] {
            receiver(HttpReply::status(status).header("Retry-After", "90"));
            let error = deliver(job()).unwrap_err();
            assert!(!error.is_fatal());
            assert_eq!(error.retry_delay(), Some(Duration::from_secs(90)));
        }
        receiver(HttpReply::status(429));
        let error = deliver(job()).unwrap_err();
        assert!(!error.is_fatal() && error.retry_delay().is_none());
    }

    #[test]
    fn redirects_are_fatal_naming_the_target() {
        receiver(HttpReply::status(308).header("Location", "https://new.example/hooks"));
        let error = deliver(job()).unwrap_err();
        assert!(error.is_fatal());
        assert!(
            error.message().contains("https://new.example/hooks"),
            "{error}"
        );
    }

    #[test]
    fn a_missing_url_is_fatal_naming_the_config_key() {
        testing::respond_http(|_| HttpReply::status(200));
        let error = deliver(job()).unwrap_err();
        assert!(error.is_fatal());
        assert!(error.message().contains("\"url\""), "{error}");
        assert!(error.message().contains("[config]"), "{error}");
        assert!(testing::take_http_requests().is_empty());
    }
}
