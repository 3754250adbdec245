//! TLS (SPEC §8): `rediss://` to a redis-server whose certificate comes from a
//! private CA and that demands a client certificate, with an ACL user whose
//! password never reaches a log line.

use std::time::Duration;

use jobhost_tests::topologies::{Certificates, RedisCluster, TlsRedis};
use jobhost_tests::{Host, PluginDir, enqueue_and_wait, jobhost, ok_stdout, one_line_error};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn jobs_flow_over_tls_with_a_private_ca_a_client_certificate_and_an_acl_user() {
    let certs = Certificates::new();
    let redis = TlsRedis::start(&certs);
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("worker")
        .arg("on")
        .arg(">tls-s3cret")
        .arg("~jobhost:*")
        .arg("resetchannels")
        .arg("+@all")
        .arg("-@dangerous")
        .arg("-@admin")
        .query(&mut redis.server.connection())
        .unwrap();
    let file = |name: &str| certs.path(name).display().to_string();
    let url = format!(
        "rediss://worker:tls-s3cret@127.0.0.1:{}?tls_ca={}&tls_cert={}&tls_key={}",
        redis.tls_port,
        file("ca.pem"),
        file("client.pem"),
        file("client.key")
    );
    let plugins = PluginDir::with(&["hello"]);
    let host = Host::start(&url, plugins.path(), &[]);
    let out = enqueue_and_wait(&url, &["hello.tls", r#"{"name":"tls"}"#], "30s");
    assert_eq!(ok_stdout(out).trim(), "Hello, tls!");
    host.wait_for_log("type=hello.tls plugin=hello attempt=1 outcome=done", WAIT);
    let clients: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query(&mut redis.server.connection())
        .unwrap();
    assert!(
        clients.lines().any(|c| c.contains("user=worker")),
        "the host is connected as the ACL user: {clients}"
    );
    assert!(!host.log().contains("tls-s3cret"), "password logged");

    // The server's certificate is not trusted without the private CA.
    let untrusted = format!("rediss://127.0.0.1:{}", redis.tls_port);
    let stderr = one_line_error(&jobhost(&[
        "enqueue", "hello.x", "{}", "--redis", &untrusted,
    ]));
    assert!(stderr.contains("cannot reach Redis"), "{stderr}");
    assert!(
        stderr.contains("tls_ca"),
        "the hint names the fix: {stderr}"
    );

    // The server demands a client certificate.
    let anonymous = format!(
        "rediss://127.0.0.1:{}?tls_ca={}",
        redis.tls_port,
        file("ca.pem")
    );
    one_line_error(&jobhost(&[
        "enqueue", "hello.x", "{}", "--redis", &anonymous,
    ]));

    // A certificate file that is not there is named.
    let missing = format!(
        "rediss://127.0.0.1:{}?tls_ca=/nonexistent/ca.pem",
        redis.tls_port
    );
    let stderr = one_line_error(&jobhost(&["enqueue", "hello.x", "{}", "--redis", &missing]));
    assert!(
        stderr.contains("tls_ca: cannot read /nonexistent/ca.pem"),
        "{stderr}"
    );
}

#[test]
fn jobs_flow_on_a_tls_cluster_to_queues_on_two_masters() {
    let certs = Certificates::new();
    let cluster = RedisCluster::start_tls(&certs);
    let url = cluster.url();
    let plugins = PluginDir::with(&["hello"]);
    let other = cluster.queue_on_another_master("default");
    for queue in ["default", other.as_str()] {
        let _host = Host::start(&url, plugins.path(), &["--queue", queue]);
        let out = enqueue_and_wait(
            &url,
            &["hello.tls", r#"{"name":"tls cluster"}"#, "--queue", queue],
            "30s",
        );
        assert_eq!(ok_stdout(out).trim(), "Hello, tls cluster!");
    }
}
