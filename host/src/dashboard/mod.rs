//! `jobhost dashboard`: web pages over one namespace — its queues with
//! their counts and charts, the live hosts, the dead jobs, the schedules,
//! job lookup — and the actions that repair them.
//!
//! The pages are rendered on the server (`pages/`) with their stylesheet and
//! script built into the binary, so it works offline. `snapshot.rs` reads the
//! overview's figures once a second however many pages are open; the
//! overview's script (`assets/live.js`) polls them. `guard.rs` checks the
//! token and every form's anti-CSRF token. Nothing of it runs inside
//! `jobhost run`.

mod guard;
mod pages;
mod snapshot;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use thiserror::Error;

use crate::broker::{BrokerError, Redis};
use crate::shutdown::Shutdown;
use snapshot::Latest;

/// A shorter token could be guessed by trying.
const MIN_TOKEN_CHARS: usize = 16;

/// Everything `jobhost dashboard` needs to know.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    pub listen: SocketAddr,
    pub redis_url: String,
    pub namespace: String,
    /// Required of every request when set; required to be set beyond loopback.
    pub token: Option<String>,
}

/// Why the dashboard could not start.
#[derive(Debug, Error)]
pub enum DashboardError {
    #[error(
        "--listen {0} is reachable from other machines: give a --token (or JOBHOST_DASHBOARD_TOKEN) that every request must carry, or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    #[error(
        "--token is {0} characters long: give a secret of 16 characters or more (openssl rand -hex 16 makes one)"
    )]
    ShortToken(usize),
    #[error("cannot listen on {addr}: {error}")]
    Listen {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    Broker(#[from] BrokerError),
}

/// What every page handler gets.
#[derive(Clone)]
pub struct App(Arc<AppState>);

pub struct AppState {
    redis: Redis,
    namespace: String,
    /// The anti-CSRF token every form of this process carries.
    csrf: String,
    token: Option<String>,
    latest: Latest,
}

impl std::ops::Deref for App {
    type Target = AppState;
    fn deref(&self) -> &AppState {
        &self.0
    }
}

/// Checks the settings, connects, binds, and serves until `shutdown`;
/// `ready` learns the address it listens on.
pub async fn serve(
    config: DashboardConfig,
    shutdown: Shutdown,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), DashboardError> {
    if let Some(token) = &config.token
        && token.trim().chars().count() < MIN_TOKEN_CHARS
    {
        return Err(DashboardError::ShortToken(token.trim().chars().count()));
    }
    if !config.listen.ip().is_loopback() && config.token.is_none() {
        return Err(DashboardError::NeedsToken(config.listen));
    }
    let redis = Redis::connect(&config.redis_url).await?;
    let latest = Latest::default();
    let app = App(Arc::new(AppState {
        redis: redis.clone(),
        namespace: config.namespace.clone(),
        csrf: guard::random_token(),
        token: config.token.clone(),
        latest: latest.clone(),
    }));
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| DashboardError::Listen {
            addr: config.listen,
            error,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let sampler = tokio::spawn(snapshot::sample(
        redis,
        config.namespace.clone(),
        latest,
        shutdown.clone(),
    ));
    ready(addr);
    let mut stop = shutdown.clone();
    let served = axum::serve(listener, router(app))
        .with_graceful_shutdown(async move { stop.wait().await })
        .await;
    let _ = sampler.await;
    served.map_err(|error| DashboardError::Listen { addr, error })
}

fn router(app: App) -> Router {
    Router::new()
        .route("/", get(pages::overview::page))
        .route("/queues", get(pages::overview::page))
        .route("/api/overview", get(pages::overview::api))
        .route("/queues/pause", post(pages::overview::pause))
        .route("/queues/resume", post(pages::overview::resume))
        .route("/hosts", get(pages::hosts::page))
        .route("/dead", get(pages::dead::list))
        .route("/dead/show", get(pages::dead::show))
        .route("/dead/replay", post(pages::dead::replay))
        .route("/dead/purge", post(pages::dead::purge))
        .route("/jobs", get(pages::jobs::page))
        .route("/jobs/cancel", post(pages::jobs::cancel))
        .route("/schedules", get(pages::schedules::page))
        .route("/schedules/pause", post(pages::schedules::pause))
        .route("/schedules/resume", post(pages::schedules::resume))
        .route("/schedules/run-now", post(pages::schedules::run_now))
        .route("/assets/style.css", get(style))
        .route("/assets/live.js", get(script))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            guard::protect,
        ))
        .with_state(app)
}

async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
}

async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/live.js"),
    )
}

async fn not_found() -> pages::PageError {
    pages::PageError::not_found("no such page")
}
