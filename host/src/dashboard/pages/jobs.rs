//! Finding a job by id in every queue, as `jobhost job ID` does, and
//! cancelling it while it waits, is delayed or runs.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::{PageError, Section, action_button, confirm, frame, link, outcome};
use crate::broker::{Place, Redis};
use crate::dashboard::App;
use crate::dashboard::guard::ActionForm;
use crate::keys::QueueKeys;

/// How long a cancelled waiting or delayed job stays findable.
const KEEP_CANCELLED: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Deserialize)]
pub struct JobQuery {
    #[serde(default)]
    id: String,
}

/// Every queue of the namespace, to look in.
async fn every_queue(app: &App, redis: &mut Redis) -> Result<Vec<QueueKeys>, PageError> {
    let mut names: Vec<String> = app
        .latest
        .get()
        .queues
        .iter()
        .map(|q| q.queue.clone())
        .collect();
    for name in redis.queues(&app.namespace).await? {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names
        .iter()
        .map(|name| QueueKeys::new(&app.namespace, name))
        .collect())
}

pub async fn page(
    State(app): State<App>,
    Query(query): Query<JobQuery>,
) -> Result<Response, PageError> {
    let id = query.id.trim().to_owned();
    let search = html! {
        h1 { "Find a job" }
        form id="job-lookup" class="filter" method="get" action="/jobs" {
            label { "Job id " input type="search" name="id" value=(id) placeholder="as enqueue printed it" size="40"; }
            button type="submit" { "Find" }
        }
    };
    if id.is_empty() {
        return Ok(frame(&app, "Find a job", Section::Jobs, search));
    }
    let mut redis = app.redis.clone();
    let queues = every_queue(&app, &mut redis).await?;
    let found = redis.locate(&queues, &id).await?;
    let body = match found {
        None => html! {
            (search)
            p id="job-state" class="empty" {
                "Job " code { (id) } " is unknown: not waiting, delayed, running or dead in any queue. "
                "Finished jobs are kept only by hosts run with --keep-results."
            }
        },
        Some((keys, found)) => {
            let json = crate::cli::job::as_json(&id, keys, &found);
            let state = json
                .get("state")
                .and_then(|s| s.as_str())
                .unwrap_or("")
                .to_owned();
            let cancellable = matches!(
                found.place,
                Place::Waiting { .. } | Place::Delayed { .. } | Place::Running { .. }
            );
            let dead_entry = match &found.place {
                Place::Dead { entry_id } => Some(entry_id.clone()),
                _ => None,
            };
            html! {
                (search)
                p id="job-state" { "Job " code { (id) } " in queue " strong { (keys.queue) } ": " span.badge { (state) } }
                div.scroll {
                    table.fields {
                        tbody {
                            @for (name, value) in json.as_object().into_iter().flatten() {
                                @if !value.is_null() {
                                    tr { th { (name) } td { code { (value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())) } } }
                                }
                            }
                        }
                    }
                }
                div.actions {
                    @if cancellable {
                        (action_button(&app, "/jobs/cancel", &[("id", &id)], "Cancel…", Some("cancel")))
                    }
                    @if let Some(entry_id) = dead_entry {
                        a.button href=(link("/dead/show", &[("queue", &keys.queue), ("id", &entry_id)])) { "Its dead-letter entry" }
                    }
                }
            }
        }
    };
    Ok(frame(&app, "Find a job", Section::Jobs, body))
}

/// POST `/jobs/cancel`.
pub async fn cancel(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    let id = form.get("id").trim().to_owned();
    if id.is_empty() {
        return Err(PageError::bad_request("say which job to cancel: its id"));
    }
    let back = link("/jobs", &[("id", &id)]);
    if !form.confirmed() {
        let question = html! {
            "Cancel job " code { (id) } "? If it waits or is delayed it never runs; if it runs, its host stops it."
        };
        return Ok(confirm(
            &app,
            "Cancel job",
            question,
            "/jobs/cancel",
            &form,
            &back,
        ));
    }
    let mut redis = app.redis.clone();
    let queues = every_queue(&app, &mut redis).await?;
    let report = redis.cancel_job(&queues, &id, KEEP_CANCELLED).await?;
    let (line, _) = crate::cli::cancel::in_words(&id, report);
    Ok(outcome(&app, "Cancel job", &line, &back, "Back to the job"))
}
