//! One connection type for every topology, so the rest of jobhost sends
//! commands without knowing whether Redis is one server, a Cluster or a master
//! watched by Sentinel. Every kind reconnects by itself after an error; the
//! failed command's error still reaches the caller, which retries with backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::ClusterConfig;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, RedisFuture, Value};

use super::target::{Kind, Target};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// A connection to wherever a [`Target`] points. Clones share it.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(SentinelMaster),
}

impl Target {
    /// Opens a connection whose replies may take up to `response_timeout`
    /// (longer than any BLOCK its commands ask for).
    pub async fn connect(&self, response_timeout: Duration) -> Result<Connection, RedisError> {
        match &self.kind {
            Kind::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(response_timeout))
                    .set_number_of_retries(1);
                let manager = client.get_connection_manager_with_config(config).await?;
                Ok(Connection::Single(manager))
            }
            Kind::Cluster(client) => {
                let config = ClusterConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_response_timeout(response_timeout);
                let connection = client.get_async_connection_with_config(config).await?;
                Ok(Connection::Cluster(connection))
            }
            Kind::Sentinel(sentinel) => {
                let master = SentinelMaster {
                    sentinel: sentinel.clone(),
                    config: AsyncConnectionConfig::new()
                        .set_connection_timeout(Some(CONNECT_TIMEOUT))
                        .set_response_timeout(Some(response_timeout)),
                    current: Arc::new(Mutex::new(None)),
                };
                // Fail now, not on the first command, when no master can be found.
                master.clone().master().await?;
                Ok(Connection::Sentinel(master))
            }
        }
    }

    /// Whether this target is a Redis Cluster (where a command without keys
    /// reaches one node, not all of them).
    pub fn is_cluster(&self) -> bool {
        matches!(self.kind, Kind::Cluster(_))
    }
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Single(c) => c.req_packed_command(cmd),
            Connection::Cluster(c) => c.req_packed_command(cmd),
            Connection::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Connection::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Single(c) => c.get_db(),
            Connection::Cluster(c) => c.get_db(),
            Connection::Sentinel(c) => c.get_db(),
        }
    }
}

impl Connection {
    /// Every key matching `pattern`, found with SCAN (never the blocking KEYS)
    /// on the server, or on each master of a cluster.
    pub async fn scan(&mut self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let Connection::Cluster(cluster) = self else {
            return scan_node(self, None, pattern).await;
        };
        let mut cluster = cluster.clone();
        let mut keys = Vec::new();
        for master in cluster_masters(&mut cluster).await? {
            keys.extend(scan_node(self, Some(master), pattern).await?);
        }
        Ok(keys)
    }
}

async fn scan_node(
    conn: &mut Connection,
    node: Option<(String, u16)>,
    pattern: &str,
) -> Result<Vec<String>, RedisError> {
    let mut cursor: u64 = 0;
    let mut keys = Vec::new();
    loop {
        let mut cmd = redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        let reply = match (&mut *conn, &node) {
            (Connection::Cluster(cluster), Some((host, port))) => {
                let route = SingleNodeRoutingInfo::ByAddress {
                    host: host.clone(),
                    port: *port,
                };
                cluster
                    .route_command(cmd, RoutingInfo::SingleNode(route))
                    .await?
            }
            (conn, _) => cmd.query_async(conn).await?,
        };
        let (next, page): (u64, Vec<String>) = redis::from_redis_value(reply)?;
        keys.extend(page);
        if next == 0 {
            return Ok(keys);
        }
        cursor = next;
    }
}

/// Host and port of every master, from `CLUSTER SLOTS`.
async fn cluster_masters(
    cluster: &mut ClusterConnection,
) -> Result<Vec<(String, u16)>, RedisError> {
    let slots: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(cluster)
        .await?;
    let mut masters = Vec::new();
    for range in slots {
        // [first slot, last slot, [host, port, id, ...], replicas...]
        let Value::Array(range) = range else { continue };
        if let Some(Value::Array(master)) = range.get(2)
            && let (Some(host), Some(Value::Int(port))) = (master.first(), master.get(1))
        {
            let host: String = redis::from_redis_value(host.clone())?;
            let node = (host, *port as u16);
            if !masters.contains(&node) {
                masters.push(node);
            }
        }
    }
    Ok(masters)
}

/// The current master of a Sentinel-watched service. After an error that
/// means the master moved (connection lost, or `READONLY` from a demoted
/// master), the next command asks the sentinels again.
#[derive(Clone)]
pub struct SentinelMaster {
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    config: AsyncConnectionConfig,
    current: Arc<Mutex<Option<MultiplexedConnection>>>,
}

impl SentinelMaster {
    async fn master(&mut self) -> Result<MultiplexedConnection, RedisError> {
        if let Some(connection) = self.current.lock().expect("not poisoned").clone() {
            return Ok(connection);
        }
        let client = self.sentinel.lock().await.async_get_client().await?;
        let connection = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        *self.current.lock().expect("not poisoned") = Some(connection.clone());
        Ok(connection)
    }

    fn after<T>(&self, result: Result<T, RedisError>) -> Result<T, RedisError> {
        if let Err(error) = &result
            && master_may_have_moved(error)
        {
            self.current.lock().expect("not poisoned").take();
        }
        result
    }
}

fn master_may_have_moved(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || matches!(error.code(), Some("READONLY" | "MASTERDOWN" | "LOADING"))
}

impl ConnectionLike for SentinelMaster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut master = self.master().await?;
            let result = master.req_packed_command(cmd).await;
            self.after(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut master = self.master().await?;
            let result = master.req_packed_commands(pipeline, offset, count).await;
            self.after(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .map_or(0, |c| c.get_db())
    }
}
