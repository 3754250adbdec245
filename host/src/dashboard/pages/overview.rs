//! The overview: every queue's counts with pause and resume, and the last
//! hour's charts. `live.js` refreshes both from `/api/overview`.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::{PageError, Section, action_button, confirm, frame, link, outcome};
use crate::dashboard::App;
use crate::dashboard::guard::ActionForm;
use crate::dashboard::snapshot::Snapshot;
use crate::envelope::now_ms;

/// Height of a chart's drawing area, in its own units (the width is 10 per minute).
const CHART_HEIGHT: u64 = 120;

pub async fn page(State(app): State<App>) -> Response {
    let snapshot = app.latest.get();
    let body = html! {
        (status(&snapshot))
        h1 { "Queues" }
        div.scroll {
            table id="queues" {
                thead {
                    tr {
                        th { "Queue" }
                        th.number { "Waiting" }
                        th.number { "Running" }
                        th.number { "Delayed" }
                        th.number { "Dead" }
                        th.number { "Done" }
                        th.number { "Failed" }
                        th { "State" }
                        th {}
                    }
                }
                tbody {
                    @for queue in &snapshot.queues {
                        tr data-queue=(queue.queue) data-paused=(queue.paused) {
                            td { a href=(link("/dead", &[("queue", &queue.queue)])) title="its dead jobs" { (queue.queue) } }
                            td.number data-stat="waiting" { (queue.waiting) }
                            td.number data-stat="running" { (queue.running) }
                            td.number data-stat="delayed" { (queue.delayed) }
                            td.number data-stat="dead" { (queue.dead) }
                            td.number data-stat="done" { (queue.done) }
                            td.number data-stat="failed" { (queue.failed) }
                            td data-stat="paused" { @if queue.paused { "paused" } }
                            td {
                                @if queue.paused {
                                    (action_button(&app, "/queues/resume", &[("queue", &queue.queue)], "Resume", None))
                                } @else {
                                    (action_button(&app, "/queues/pause", &[("queue", &queue.queue)], "Pause", None))
                                }
                            }
                        }
                    }
                }
            }
        }
        @if snapshot.queues.is_empty() && snapshot.taken_ms > 0 {
            p.empty { "No queues yet in namespace " (app.namespace) ": enqueue a job or start a host." }
        }
        h2 { "Last hour" }
        div.charts {
            figure {
                figcaption { "Jobs done per minute" }
                (chart("chart-throughput", &snapshot.throughput))
            }
            figure {
                figcaption { "Failed attempts per minute (retried or dead)" }
                (chart("chart-failures", &snapshot.failures))
            }
        }
        p.updated {
            "Live hosts: " span id="hosts-count" { (snapshot.hosts.len()) } " · updated "
            span id="updated" data-ms=(snapshot.taken_ms) { (super::ago(snapshot.taken_ms, now_ms())) }
        }
    };
    frame(&app, "Overview", Section::Overview, body)
}

/// The banner that says the figures are stale, and why.
fn status(snapshot: &Snapshot) -> Markup {
    let message = match (&snapshot.error, snapshot.taken_ms) {
        (Some(error), _) => Some(error.clone()),
        (None, 0) => Some("Reading Redis…".to_owned()),
        (None, _) => None,
    };
    html! {
        p id="status" class="error" hidden[message.is_none()] { (message.unwrap_or_default()) }
    }
}

/// A bar chart of one value per minute, oldest first; `live.js` redraws it
/// the same way.
pub fn chart(id: &str, values: &[u64]) -> Markup {
    let width = values.len() * 10;
    let most = values.iter().copied().max().unwrap_or(0);
    html! {
        svg id=(id) class="chart" viewBox=(format!("0 0 {width} {CHART_HEIGHT}")) preserveAspectRatio="none" role="img" {
            path d=(bars(values, most));
        }
        div.axis { span { "60 min ago" } span.most { "max " span.max { (most) } } span { "now" } }
    }
}

/// The SVG path of the bars: minute `i` is the bar at x = 10·i.
fn bars(values: &[u64], most: u64) -> String {
    let mut path = String::new();
    for (i, value) in values.iter().enumerate() {
        if *value == 0 {
            continue;
        }
        let height = (value * (CHART_HEIGHT - 4) / most.max(1)).max(1);
        let x = i * 10 + 1;
        let y = CHART_HEIGHT - height;
        path.push_str(&format!("M{x} {y}h8v{height}h-8z"));
    }
    path
}

/// `/api/overview`: the latest snapshot as JSON, for `live.js`.
pub async fn api(State(app): State<App>) -> Response {
    axum::Json((*app.latest.get()).clone()).into_response()
}

/// POST `/queues/pause` and `/queues/resume`.
pub async fn pause(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    set_paused(app, form, true).await
}

pub async fn resume(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    set_paused(app, form, false).await
}

async fn set_paused(app: App, form: ActionForm, pause: bool) -> Result<Response, PageError> {
    let queue = form.get("queue").to_owned();
    crate::host::check_queue_name(&queue).map_err(|e| PageError::bad_request(&e))?;
    let (title, action) = if pause {
        ("Pause queue", "/queues/pause")
    } else {
        ("Resume queue", "/queues/resume")
    };
    if !form.confirmed() {
        let question = if pause {
            html! { "Pause queue " strong { (queue) } "? Every host stops reading it within about a second; jobs already running finish, and producers can still enqueue." }
        } else {
            html! { "Resume queue " strong { (queue) } "? Hosts serving it start reading it again." }
        };
        return Ok(confirm(&app, title, question, action, &form, "/"));
    }
    let mut redis = app.redis.clone();
    let changed = if pause {
        redis.pause(&app.namespace, &queue).await?
    } else {
        redis.resume(&app.namespace, &queue).await?
    };
    let result = match (pause, changed) {
        (true, true) => {
            format!("Paused queue {queue}: hosts stop reading it within about a second")
        }
        (true, false) => format!("Queue {queue} was paused already"),
        (false, true) => format!("Resumed queue {queue}"),
        (false, false) => format!("Queue {queue} was not paused"),
    };
    Ok(outcome(&app, title, &result, "/", "Back to the overview"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest_minute() {
        assert_eq!(bars(&[0, 0], 0), "");
        assert_eq!(bars(&[4, 2, 0], 4), "M1 4h8v116h-8zM11 62h8v58h-8z");
        // A tiny value still shows.
        assert_eq!(bars(&[1000, 1], 1000), "M1 4h8v116h-8zM11 119h8v1h-8z");
    }
}
