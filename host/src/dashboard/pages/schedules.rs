//! The namespace's schedules, as `jobhost schedule list` shows them, with
//! pause, resume and run-now.

use axum::extract::State;
use axum::response::Response;
use maud::html;

use super::{PageError, Section, action_button, confirm, frame, outcome};
use crate::broker::schedules::{Edited, Fired, ScheduleStoreError};
use crate::dashboard::App;
use crate::dashboard::guard::ActionForm;
use crate::schedule::ScheduleName;

impl From<ScheduleStoreError> for PageError {
    fn from(error: ScheduleStoreError) -> Self {
        match error {
            ScheduleStoreError::Redis(error) => error.into(),
            other => PageError::bad_request(&other.to_string()),
        }
    }
}

pub async fn page(State(app): State<App>) -> Result<Response, PageError> {
    let mut redis = app.redis.clone();
    let lines = crate::cli::schedule::schedule_lines(&mut redis, &app.namespace).await?;
    let dash = || "–".to_owned();
    let body = html! {
        h1 { "Schedules" }
        @if lines.is_empty() {
            p.empty { "No schedules in namespace " (app.namespace) ". Add one with " code { "jobhost schedule add NAME --cron EXPR TYPE PAYLOAD" } "." }
        }
        div.scroll {
            table id="schedules" {
                thead {
                    tr { th { "Name" } th { "Cron" } th { "Queue" } th { "Type" } th { "State" } th { "Last fired" } th { "Next fire" } th {} }
                }
                tbody {
                    @for line in &lines {
                        tr data-schedule=(line.name) {
                            td { (line.name) }
                            td { code { (line.cron) } " " small { (line.tz) } }
                            td { (line.queue) }
                            td { (line.job_type) }
                            td {
                                @if let Some(problem) = &line.problem { span.badge.frozen title=(problem) { "broken" } }
                                @else if line.paused { span.badge { "paused" } }
                                @else { "active" }
                            }
                            td { (line.last_fired_at.clone().unwrap_or_else(dash)) }
                            td { (line.next_fire.clone().unwrap_or_else(dash)) }
                            td {
                                @if line.problem.is_none() {
                                    @if line.paused {
                                        (action_button(&app, "/schedules/resume", &[("name", &line.name)], "Resume", None))
                                    } @else {
                                        (action_button(&app, "/schedules/pause", &[("name", &line.name)], "Pause", None))
                                    }
                                    (action_button(&app, "/schedules/run-now", &[("name", &line.name)], "Run now", None))
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(frame(&app, "Schedules", Section::Schedules, body))
}

/// What an action on a schedule does.
#[derive(Debug, Clone, Copy)]
enum Act {
    Pause,
    Resume,
    RunNow,
}

pub async fn pause(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    act(app, form, Act::Pause).await
}

pub async fn resume(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    act(app, form, Act::Resume).await
}

pub async fn run_now(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    act(app, form, Act::RunNow).await
}

async fn act(app: App, form: ActionForm, act: Act) -> Result<Response, PageError> {
    let name = ScheduleName::parse(form.get("name"))
        .map_err(|e| PageError::bad_request(&e.to_string()))?;
    let name = name.as_str();
    let (title, path, question) = match act {
        Act::Pause => (
            "Pause schedule",
            "/schedules/pause",
            "No host fires it until it is resumed.",
        ),
        Act::Resume => (
            "Resume schedule",
            "/schedules/resume",
            "It fires from its next tick; ticks missed while paused do not fire.",
        ),
        Act::RunNow => (
            "Run schedule now",
            "/schedules/run-now",
            "Its job is enqueued once, now; its ticks are unchanged.",
        ),
    };
    if !form.confirmed() {
        let question = html! { (title) " " strong { (name) } "? " (question) };
        return Ok(confirm(&app, title, question, path, &form, "/schedules"));
    }
    let namespace = &app.namespace;
    let mut redis = app.redis.clone();
    let result = match act {
        Act::Pause | Act::Resume => {
            let pause = matches!(act, Act::Pause);
            match (
                redis.set_schedule_paused(namespace, name, pause).await?,
                pause,
            ) {
                (Edited::Done, true) => format!("Paused schedule {name}"),
                (Edited::Done, false) => format!("Resumed schedule {name}"),
                (Edited::Unchanged, true) => format!("Schedule {name} was paused already"),
                (Edited::Unchanged, false) => format!("Schedule {name} was not paused"),
            }
        }
        Act::RunNow => {
            let stored = redis.find_schedule(namespace, name).await?;
            let definition = stored.definition()?;
            match redis
                .fire_schedule(namespace, &stored, &definition, None)
                .await?
            {
                Fired::Fired { job_id, .. } => {
                    format!("Ran schedule {name}: enqueued job {job_id}")
                }
                Fired::WrongType { key, reason } => {
                    return Err(ScheduleStoreError::WrongType { key, reason }.into());
                }
                Fired::Gone => return Err(ScheduleStoreError::Missing(name.to_owned()).into()),
                _ => format!("Schedule {name} changed while it was read; try again"),
            }
        }
    };
    Ok(outcome(
        &app,
        title,
        &result,
        "/schedules",
        "Back to the schedules",
    ))
}
