//! Redis as users outgrow one server: a Cluster of three masters, a master
//! with a replica watched by Sentinel, and a TLS server with a private CA.
//! All real `redis-server` processes on free loopback ports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::{RedisServer, wait_until};

const READY: Duration = Duration::from_secs(30);

fn run(what: &str, command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// INFO of one section, or "" while the server refuses or drops connections
/// (as a failover does when it changes a server's role): callers poll it.
fn info(server: &RedisServer, section: &str) -> String {
    server
        .try_connection()
        .and_then(|mut connection| redis::cmd("INFO").arg(section).query(&mut connection))
        .unwrap_or_default()
}

/// Three masters, no replicas, every slot covered.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// With TLS: each node's TLS port (the cluster speaks only TLS there; the
    /// plain ports stay open for the test's own checks) and the CA's file.
    tls: Option<(Vec<u16>, PathBuf)>,
}

const CLUSTER_NODE: &[&str] = &["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| RedisServer::start_with(CLUSTER_NODE))
            .collect();
        Self::create(nodes, None)
    }

    /// A cluster whose clients and cluster bus use TLS, with certificates
    /// from `certs`' private CA.
    pub fn start_tls(certs: &Certificates) -> Self {
        let file = |name: &str| certs.path(name).to_str().expect("utf-8 path").to_owned();
        let mut tls_ports = Vec::new();
        let nodes = (0..3)
            .map(|_| {
                let port = crate::free_port();
                tls_ports.push(port);
                let port = port.to_string();
                let mut args = CLUSTER_NODE.to_vec();
                let (cert, key, ca) = (file("server.pem"), file("server.key"), file("ca.pem"));
                args.extend_from_slice(&[
                    "--tls-port",
                    &port,
                    "--tls-cluster",
                    "yes",
                    "--tls-auth-clients",
                    "no",
                    "--tls-cert-file",
                    &cert,
                    "--tls-key-file",
                    &key,
                    "--tls-ca-cert-file",
                    &ca,
                ]);
                RedisServer::start_with(&args)
            })
            .collect();
        Self::create(nodes, Some((tls_ports, certs.path("ca.pem"))))
    }

    fn create(nodes: Vec<RedisServer>, tls: Option<(Vec<u16>, PathBuf)>) -> Self {
        let mut create = Command::new("redis-cli");
        let ports: Vec<u16> = match &tls {
            Some((ports, ca)) => {
                create.arg("--tls").arg("--cacert").arg(ca);
                ports.clone()
            }
            None => nodes.iter().map(|n| n.port()).collect(),
        };
        run(
            "redis-cli --cluster create",
            create
                .args(["--cluster", "create"])
                .args(ports.iter().map(|p| format!("127.0.0.1:{p}")))
                .args(["--cluster-replicas", "0", "--cluster-yes"]),
        );
        let cluster = RedisCluster { nodes, tls };
        wait_until("every node sees the cluster ok", READY, || {
            cluster.nodes.iter().all(|n| {
                let state: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut n.connection())
                    .unwrap_or_default();
                state.contains("cluster_state:ok")
            })
        });
        cluster
    }

    /// The URL jobhost takes, naming only the first node as a seed: the
    /// others must be discovered.
    pub fn url(&self) -> String {
        match &self.tls {
            Some((ports, ca)) => format!(
                "rediss+cluster://127.0.0.1:{}?tls_ca={}",
                ports[0],
                ca.display()
            ),
            None => format!("redis+cluster://127.0.0.1:{}", self.nodes[0].port()),
        }
    }

    /// A queue name whose keys live on another master than `queue`'s.
    pub fn queue_on_another_master(&self, queue: &str) -> String {
        let home = self.node_of(&format!("jobhost:{{{queue}}}:stream")).port();
        (0..100)
            .map(|i| format!("q{i}"))
            .find(|q| self.node_of(&format!("jobhost:{{{q}}}:stream")).port() != home)
            .expect("some queue name hashes to another master")
    }

    /// The node that serves `key`'s slot.
    pub fn node_of(&self, key: &str) -> &RedisServer {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].connection())
            .expect("CLUSTER KEYSLOT");
        self.nodes
            .iter()
            .find(|n| serves(n, slot))
            .expect("some node serves every slot")
    }
}

impl RedisCluster {
    /// Moves the slot of `key`, with every key in it, to `nodes[to]`, the way
    /// `redis-cli --cluster reshard` does: while it runs, clients get `ASK`
    /// (and `TRYAGAIN`) redirects, and `MOVED` afterwards.
    pub fn move_slot_of(&self, key: &str, to: usize) {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut self.nodes[0].connection())
            .expect("CLUSTER KEYSLOT");
        let source = self.node_of(key);
        let target = &self.nodes[to];
        assert_ne!(
            source.port(),
            target.port(),
            "the slot moves somewhere else"
        );
        let id = |node: &RedisServer| -> String {
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut node.connection())
                .expect("CLUSTER MYID")
        };
        let setslot = |node: &RedisServer, state: &str, owner: &str| {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(state)
                .arg(owner)
                .query(&mut node.connection())
                .unwrap_or_else(|e| panic!("CLUSTER SETSLOT {slot} {state}: {e}"));
        };
        setslot(target, "IMPORTING", &id(source));
        setslot(source, "MIGRATING", &id(target));
        let mut conn = source.connection();
        loop {
            let keys: Vec<String> = redis::cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(slot)
                .arg(100)
                .query(&mut conn)
                .expect("CLUSTER GETKEYSINSLOT");
            if keys.is_empty() {
                break;
            }
            let _: () = redis::cmd("MIGRATE")
                .arg("127.0.0.1")
                .arg(target.port())
                .arg("")
                .arg(0)
                .arg(5000)
                .arg("KEYS")
                .arg(&keys)
                .query(&mut conn)
                .expect("MIGRATE");
        }
        let owner = id(target);
        for node in
            std::iter::once(target).chain(self.nodes.iter().filter(|n| n.port() != target.port()))
        {
            setslot(node, "NODE", &owner);
        }
        wait_until("every node agrees on the slot's new owner", READY, || {
            self.node_of(key).port() == target.port()
        });
    }
}

impl RedisCluster {
    /// Adds a node as a replica of the master serving `key`; returns its index.
    pub fn add_replica_of(&mut self, key: &str) -> usize {
        let master = self.node_of(key);
        let master_id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query(&mut master.connection())
            .expect("CLUSTER MYID");
        let master_address = format!("127.0.0.1:{}", master.port());
        let replica = RedisServer::start_with(&[
            "--cluster-enabled",
            "yes",
            "--cluster-node-timeout",
            "2000",
        ]);
        run(
            "redis-cli --cluster add-node",
            Command::new("redis-cli").args([
                "--cluster",
                "add-node",
                &format!("127.0.0.1:{}", replica.port()),
                &master_address,
                "--cluster-slave",
                "--cluster-master-id",
                &master_id,
            ]),
        );
        wait_until("the new replica is in sync", READY, || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        self.nodes.push(replica);
        self.nodes.len() - 1
    }

    /// Promotes `nodes[replica]` with `CLUSTER FAILOVER` (the replica catches
    /// up first, so nothing is lost) and waits until it serves its slots.
    pub fn fail_over_to(&self, replica: usize, key: &str) {
        let node = &self.nodes[replica];
        let _: () = redis::cmd("CLUSTER")
            .arg("FAILOVER")
            .query(&mut node.connection())
            .expect("CLUSTER FAILOVER");
        wait_until("the replica is promoted", READY, || {
            info(node, "replication").contains("role:master")
                && self.node_of(key).port() == node.port()
        });
    }
}

/// Whether `node` is the master of `slot`, from its own view of the cluster.
fn serves(node: &RedisServer, slot: u16) -> bool {
    let nodes: String = redis::cmd("CLUSTER")
        .arg("NODES")
        .query(&mut node.connection())
        .unwrap_or_default();
    let Some(mine) = nodes.lines().find(|l| l.contains("myself")) else {
        return false;
    };
    mine.split_whitespace().skip(8).any(|range| {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        match (first.parse::<u16>(), last.parse::<u16>()) {
            (Ok(first), Ok(last)) => (first..=last).contains(&slot),
            _ => false,
        }
    })
}

/// A master, its replica, and one sentinel watching them as `mymaster`.
pub struct SentinelSetup {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

pub const SERVICE: &str = "mymaster";

impl SentinelSetup {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
        wait_until("the replica is in sync", READY, || {
            info(&replica, "replication").contains("master_link_status:up")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("sentinel.conf");
        std::fs::write(
            &config,
            format!(
                "sentinel monitor {SERVICE} 127.0.0.1 {} 1\n\
                 sentinel down-after-milliseconds {SERVICE} 1000\n\
                 sentinel failover-timeout {SERVICE} 10000\n",
                master.port()
            ),
        )
        .expect("sentinel.conf");
        let config = config.to_str().expect("utf-8 path").to_owned();
        let sentinel = RedisServer::start_in(dir, &[&config, "--sentinel"]);
        let setup = SentinelSetup {
            master,
            replica,
            sentinel,
        };
        wait_until("the sentinel knows the replica", READY, || {
            let replicas: Vec<redis::Value> = redis::cmd("SENTINEL")
                .arg("REPLICAS")
                .arg(SERVICE)
                .query(&mut setup.sentinel.connection())
                .unwrap_or_default();
            !replicas.is_empty()
        });
        setup
    }

    pub fn url(&self) -> String {
        format!(
            "redis+sentinel://127.0.0.1:{}/{SERVICE}",
            self.sentinel.port()
        )
    }

    /// The port of the master the sentinel names now.
    pub fn master_port(&self) -> u16 {
        let (_, port): (String, String) = redis::cmd("SENTINEL")
            .arg("GET-MASTER-ADDR-BY-NAME")
            .arg(SERVICE)
            .query(&mut self.sentinel.connection())
            .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
        port.parse().expect("a port")
    }

    /// Forces a failover to the replica and waits until it is the master and
    /// the old master has been turned into its replica. (Until then the old
    /// master still takes writes, which its demotion throws away: the loss
    /// window of asynchronous replication.)
    pub fn fail_over(&self) {
        let _: () = redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg(SERVICE)
            .query(&mut self.sentinel.connection())
            .expect("SENTINEL FAILOVER");
        let replica = self.replica.port();
        wait_until("the replica is promoted", READY, || {
            self.master_port() == replica
                && info(&self.replica, "replication").contains("role:master")
                && info(&self.master, "replication").contains("role:slave")
        });
    }
}

/// A private CA and certificates signed by it, made with the `openssl` CLI.
pub struct Certificates {
    dir: TempDir,
}

impl Certificates {
    pub fn new() -> Self {
        let certs = Certificates {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        let dir = certs.dir.path();
        let openssl = |what: &str, args: &[&str]| {
            run(what, Command::new("openssl").args(args).current_dir(dir));
        };
        openssl(
            "make a CA",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=jobhost test CA",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
            ],
        );
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .expect("san.ext");
        for name in ["server", "client"] {
            openssl(
                "make a key and request",
                &[
                    "req",
                    "-newkey",
                    "rsa:2048",
                    "-nodes",
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                ],
            );
            openssl(
                "sign it with the CA",
                &[
                    "x509",
                    "-req",
                    "-in",
                    &format!("{name}.csr"),
                    "-CA",
                    "ca.pem",
                    "-CAkey",
                    "ca.key",
                    "-CAcreateserial",
                    "-days",
                    "2",
                    "-extfile",
                    "san.ext",
                    "-out",
                    &format!("{name}.pem"),
                ],
            );
        }
        certs
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for Certificates {
    fn default() -> Self {
        Self::new()
    }
}

/// A redis-server that takes TLS on `tls_port` and demands a client
/// certificate; its plain port stays open for the test's own checks.
pub struct TlsRedis {
    pub server: RedisServer,
    pub tls_port: u16,
}

impl TlsRedis {
    pub fn start(certs: &Certificates) -> Self {
        let tls_port = crate::free_port();
        let file = |name: &str| certs.path(name).to_str().expect("utf-8 path").to_owned();
        let server = RedisServer::start_with(&[
            "--tls-port",
            &tls_port.to_string(),
            "--tls-cert-file",
            &file("server.pem"),
            "--tls-key-file",
            &file("server.key"),
            "--tls-ca-cert-file",
            &file("ca.pem"),
            "--tls-auth-clients",
            "yes",
        ]);
        TlsRedis { server, tls_port }
    }
}
