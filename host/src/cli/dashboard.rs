//! `jobhost dashboard`: serves the web dashboard until SIGINT/SIGTERM.

use std::net::SocketAddr;

use clap::Args;

use super::QueueArgs;
use crate::dashboard::{DashboardConfig, serve};

#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Address to serve on. Beyond loopback a --token is required.
    #[arg(
        long,
        value_name = "ADDR",
        env = "JOBHOST_DASHBOARD_LISTEN",
        default_value = "127.0.0.1:9400"
    )]
    pub listen: SocketAddr,
    /// Secret every request must carry: the password of HTTP basic auth
    /// (any user name), or `Authorization: Bearer TOKEN`.
    #[arg(
        long,
        value_name = "TOKEN",
        env = "JOBHOST_DASHBOARD_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    #[command(flatten)]
    pub queue: QueueArgs,
}

pub async fn execute(args: DashboardArgs) -> anyhow::Result<i32> {
    let config = DashboardConfig {
        listen: args.listen,
        redis_url: args.queue.redis_url(),
        namespace: args.queue.namespace.clone(),
        token: args.token,
    };
    let namespace = config.namespace.clone();
    let (trigger, shutdown) = crate::shutdown::channel();
    tokio::spawn(async move {
        super::wait_for_signal().await;
        trigger.trigger();
    });
    serve(config, shutdown, |addr| {
        println!("jobhost dashboard of namespace {namespace}: http://{addr}/");
    })
    .await?;
    Ok(0)
}
