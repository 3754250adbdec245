//! The live hosts, from the registry they renew every two seconds: a host
//! killed or cut off from Redis drops off within ten.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::{Section, frame, when};
use crate::dashboard::App;
use crate::envelope::now_ms;

pub async fn page(State(app): State<App>) -> Response {
    let snapshot = app.latest.get();
    let now = now_ms();
    let body = html! {
        h1 { "Hosts" }
        @if snapshot.hosts.is_empty() {
            p.empty { "No live host in namespace " (app.namespace) ". Start one with " code { "jobhost run --plugins DIR" } "." }
        }
        div.scroll {
            table id="hosts" {
                thead {
                    tr {
                        th { "Host" }
                        th { "Started" }
                        th.number { "Threads" }
                        th { "Queues" }
                        th { "Plugins" }
                        th.number { "Running" }
                        th.number { "Done" }
                        th.number { "Failed" }
                        th { "Seen" }
                    }
                }
                tbody {
                    @for host in &snapshot.hosts {
                        tr data-host=(host.name) {
                            td { (host.name) br; small { "jobhost " (host.version) " · pid " (host.pid) } }
                            td { (when(host.started_ms, now)) }
                            td.number { (host.concurrency) }
                            td { (host.queues.join(", ")) }
                            td {
                                @for plugin in &host.plugins {
                                    div.plugin {
                                        (plugin.name) " " (plugin.version) " "
                                        code title=(plugin.hash) { (plugin.hash.get(..12).unwrap_or(&plugin.hash)) }
                                    }
                                }
                                @if host.plugins.is_empty() { span.muted { "none" } }
                            }
                            td.number { (host.in_flight) }
                            td.number { (host.outcomes.get("done").copied().unwrap_or(0)) }
                            td.number {
                                (host.outcomes.get("dead").copied().unwrap_or(0) + host.outcomes.get("retry").copied().unwrap_or(0))
                            }
                            td { (when(host.seen_ms, now)) }
                        }
                    }
                }
            }
        }
        p.muted { "Failed counts attempts retried or dead-lettered. Counts are since each host started." }
    };
    frame(&app, "Hosts", Section::Hosts, body)
}
