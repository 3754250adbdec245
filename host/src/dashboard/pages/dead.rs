//! Dead jobs: the queue's dead-letter stream, newest first, filtered by
//! type and error text; one job's page; replay and purge of one job or of
//! every job the filter matches, each behind a confirmation.

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::{PageError, Section, action_button, confirm, frame, jobs, link, outcome, when};
use crate::broker::{BrokerError, DeadJob, MAX_REPLAYS, Redis, Replay};
use crate::dashboard::App;
use crate::dashboard::guard::ActionForm;
use crate::envelope::{field, now_ms};
use crate::keys::QueueKeys;

/// Dead jobs per page.
const PAGE_SIZE: usize = 25;
/// Entries read per round trip while filtering.
const READ_PAGE: usize = 500;
/// A list page looks at this many entries at most, newest first.
const LIST_CAP: usize = 10_000;
/// A replay or purge of what the filter matches touches at most this many.
const BULK_CAP: usize = 100_000;
/// Payloads are shown up to this many bytes.
const SHOWN_PAYLOAD: usize = 64 * 1024;

/// Which dead jobs are meant: type and error text each contained, the
/// error's case ignored; empty matches all.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub job_type: String,
    pub error: String,
}

impl Filter {
    fn from_form(form: &ActionForm) -> Self {
        Filter {
            job_type: form.get("type").to_owned(),
            error: form.get("error").to_owned(),
        }
    }

    fn matches(&self, job: &DeadJob) -> bool {
        let job_type = job.field(field::TYPE).unwrap_or("");
        let error = job.field("last_error").unwrap_or("");
        job_type.contains(self.job_type.as_str())
            && error.to_lowercase().contains(&self.error.to_lowercase())
    }

    /// The list of the queue's dead jobs this filter shows.
    fn list_link(&self, keys: &QueueKeys) -> String {
        link(
            "/dead",
            &[
                ("queue", &keys.queue),
                ("type", &self.job_type),
                ("error", &self.error),
            ],
        )
    }

    fn is_empty(&self) -> bool {
        self.job_type.is_empty() && self.error.is_empty()
    }

    /// `whose type contains “x” and whose error contains “y”`.
    fn in_words(&self) -> Markup {
        html! {
            @if !self.job_type.is_empty() { " whose type contains “" (self.job_type) "”" }
            @if !self.job_type.is_empty() && !self.error.is_empty() { " and" }
            @if !self.error.is_empty() { " whose error contains “" (self.error) "”" }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    queue: String,
    #[serde(default, rename = "type")]
    job_type: String,
    #[serde(default)]
    error: String,
    #[serde(default)]
    page: Option<usize>,
}

/// The dead jobs matching `filter`, newest first: at most `cap` of them,
/// out of the newest `cap` entries or so; and whether the whole stream was
/// looked at.
async fn matching(
    redis: &mut Redis,
    keys: &QueueKeys,
    filter: &Filter,
    cap: usize,
) -> Result<(Vec<DeadJob>, bool), BrokerError> {
    let mut found = Vec::new();
    let mut before: Option<String> = None;
    let mut looked = 0;
    loop {
        let page = redis
            .dead_jobs_newest_first(keys, before.as_deref(), READ_PAGE)
            .await?;
        let complete = page.len() < READ_PAGE;
        looked += page.len();
        before = page.last().map(|job| job.id.clone());
        for job in page {
            if filter.matches(&job) {
                if found.len() == cap {
                    return Ok((found, false));
                }
                found.push(job);
            }
        }
        if complete {
            return Ok((found, true));
        }
        if looked >= cap {
            return Ok((found, false));
        }
    }
}

/// The queue a page or form names, the first known one when none.
fn queue_keys(app: &App, queue: &str) -> Result<QueueKeys, PageError> {
    let queue = if queue.is_empty() {
        app.latest
            .get()
            .queues
            .first()
            .map(|q| q.queue.clone())
            .unwrap_or_else(|| crate::keys::DEFAULT_QUEUE.to_owned())
    } else {
        queue.to_owned()
    };
    crate::host::check_queue_name(&queue).map_err(|e| PageError::bad_request(&e))?;
    Ok(QueueKeys::new(&app.namespace, &queue))
}

fn replays(job: &DeadJob) -> u32 {
    job.field(field::REPLAY_COUNT)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn frozen(job: &DeadJob) -> bool {
    replays(job) >= MAX_REPLAYS
}

/// The ms of an entry id (`1700000000000-0`).
fn entry_ms(id: &str) -> u64 {
    id.split('-')
        .next()
        .and_then(|ms| ms.parse().ok())
        .unwrap_or(0)
}

/// At most `chars` characters of `text`, with an ellipsis when cut.
fn clipped(text: &str, chars: usize) -> String {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

pub async fn list(
    State(app): State<App>,
    Query(query): Query<ListQuery>,
) -> Result<Response, PageError> {
    let keys = queue_keys(&app, &query.queue)?;
    let mut redis = app.redis.clone();
    let filter = &Filter {
        job_type: query.job_type.clone(),
        error: query.error.clone(),
    };
    let (found, complete) = matching(&mut redis, &keys, filter, LIST_CAP).await?;
    let pages = found.len().div_ceil(PAGE_SIZE).max(1);
    let page = query.page.unwrap_or(1).clamp(1, pages);
    let shown = found.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE);
    let now = now_ms();
    let snapshot = app.latest.get();
    let page_link = |page: usize| {
        link(
            "/dead",
            &[
                ("queue", &keys.queue),
                ("type", &filter.job_type),
                ("error", &filter.error),
                ("page", &page.to_string()),
            ],
        )
    };
    let filtered = [
        ("queue", keys.queue.as_str()),
        ("type", filter.job_type.as_str()),
        ("error", filter.error.as_str()),
        ("scope", "filtered"),
    ];
    let body = html! {
        h1 { "Dead jobs of " (keys.queue) }
        form id="dead-filter" class="filter" method="get" action="/dead" {
            label { "Queue "
                select name="queue" {
                    @for queue in &snapshot.queues {
                        option value=(queue.queue) selected[queue.queue == keys.queue] { (queue.queue) }
                    }
                    @if !snapshot.queues.iter().any(|q| q.queue == keys.queue) {
                        option value=(keys.queue) selected { (keys.queue) }
                    }
                }
            }
            label { "Type contains " input type="search" name="type" value=(filter.job_type) placeholder="orders."; }
            label { "Error contains " input type="search" name="error" value=(filter.error) placeholder="timeout"; }
            button id="filter" type="submit" { "Filter" }
            @if !filter.is_empty() { " " a href=(link("/dead", &[("queue", &keys.queue)])) { "Clear" } }
        }
        p.count {
            (found.len()) @if !complete { "+" } " dead " (if found.len() == 1 { "job" } else { "jobs" })
            (filter.in_words())
            @if !complete { " (only the newest " (LIST_CAP) " entries were looked at)" }
        }
        div.scroll {
            table id="dead-jobs" {
                thead {
                    tr { th { "Died" } th { "Type" } th { "Error" } th.number { "Attempts" } th { "Replays" } }
                }
                tbody {
                    @for job in shown {
                        tr.dead-job data-id=(job.id) {
                            td {
                                a.job-link href=(link("/dead/show", &[("queue", &keys.queue), ("id", &job.id)])) {
                                    (when(entry_ms(&job.id), now))
                                }
                            }
                            td data-field="type" { (job.field(field::TYPE).unwrap_or("")) }
                            td data-field="error" { (clipped(job.field("last_error").unwrap_or(""), 160)) }
                            td.number { (job.field("total_attempts").unwrap_or("")) }
                            td {
                                (replays(job))
                                @if frozen(job) { " " span.badge.frozen title="replayed too often; replay it from its page" { "frozen" } }
                            }
                        }
                    }
                }
            }
        }
        @if pages > 1 {
            nav.pages {
                @if page > 1 { a rel="prev" href=(page_link(page - 1)) { "← newer" } }
                span { "page " (page) " of " (pages) }
                @if page < pages { a rel="next" href=(page_link(page + 1)) { "older →" } }
            }
        }
        @if !found.is_empty() {
            div.actions {
                (action_button(&app, "/dead/replay", &filtered, "Replay these…", Some("replay-filtered")))
                (action_button(&app, "/dead/purge", &filtered, "Purge these…", Some("purge-filtered")))
            }
        }
    };
    Ok(frame(&app, "Dead jobs", Section::Dead, body))
}

#[derive(Debug, Deserialize)]
pub struct ShowQuery {
    #[serde(default)]
    queue: String,
    #[serde(default)]
    id: String,
}

pub async fn show(
    State(app): State<App>,
    Query(query): Query<ShowQuery>,
) -> Result<Response, PageError> {
    let keys = queue_keys(&app, &query.queue)?;
    let mut redis = app.redis.clone();
    let Some(job) = redis.dead_job(&keys, &query.id).await? else {
        return Err(PageError::not_found(&format!(
            "no dead job {} in queue {}: it was replayed or purged",
            query.id, keys.queue
        )));
    };
    let now = now_ms();
    let one = [("queue", keys.queue.as_str()), ("id", job.id.as_str())];
    let forced = [
        ("queue", keys.queue.as_str()),
        ("id", job.id.as_str()),
        ("force", "yes"),
    ];
    let payload = job
        .fields
        .iter()
        .find(|(name, _)| name == field::PAYLOAD)
        .map(|(_, value)| value.as_slice())
        .unwrap_or_default();
    let body = html! {
        h1 { "Dead job " code { (job.id) } }
        p {
            "Queue " a href=(link("/dead", &[("queue", &keys.queue)])) { (keys.queue) }
            " · died " (when(entry_ms(&job.id), now))
            @if let Some(job_id) = job.field(field::JOB_ID) {
                " · job " a href=(link("/jobs", &[("id", job_id)])) { code { (job_id) } }
            }
        }
        @if frozen(&job) {
            p.badge.frozen { "Frozen: replayed " (replays(&job)) " times already. Replaying it again needs “Replay anyway”." }
        }
        div.actions {
            @if frozen(&job) {
                (action_button(&app, "/dead/replay", &forced, "Replay anyway…", Some("replay")))
            } @else {
                (action_button(&app, "/dead/replay", &one, "Replay…", Some("replay")))
            }
            (action_button(&app, "/dead/purge", &one, "Purge…", Some("purge")))
        }
        h2 { "Error" }
        pre.error { (job.field("last_error").unwrap_or("")) }
        h2 { "Payload" }
        (render_payload(payload))
        h2 { "Fields" }
        div.scroll {
            table.fields {
                tbody {
                    @for (name, value) in &job.fields {
                        @if name != field::PAYLOAD {
                            tr { th { (name) } td { code { (shown(value)) } } }
                        }
                    }
                }
            }
        }
    };
    Ok(frame(&app, "Dead job", Section::Dead, body))
}

/// Text as it is, anything else with its bytes escaped (`\xff`).
fn shown(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// A payload as pretty JSON, text, or escaped bytes, with what it is.
fn render_payload(payload: &[u8]) -> Markup {
    let cut = payload.len() > SHOWN_PAYLOAD;
    let head = &payload[..payload.len().min(SHOWN_PAYLOAD)];
    let (kind, text) = match std::str::from_utf8(payload) {
        Ok(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(json) if !cut => (
                "JSON",
                serde_json::to_string_pretty(&json).unwrap_or_default(),
            ),
            _ => ("text", String::from_utf8_lossy(head).into_owned()),
        },
        Err(_) => ("binary, bytes escaped", head.escape_ascii().to_string()),
    };
    html! {
        p.muted { (kind) ", " (payload.len()) " bytes" @if cut { ", the first " (SHOWN_PAYLOAD) " shown" } }
        pre.payload { (text) }
    }
}

/// The dead jobs an action means: one by id, or what its filter matches.
async fn targets(
    redis: &mut Redis,
    keys: &QueueKeys,
    form: &ActionForm,
) -> Result<(Vec<String>, Filter, bool), PageError> {
    if form.get("scope") == "filtered" {
        let filter = Filter::from_form(form);
        let (found, complete) = matching(redis, keys, &filter, BULK_CAP).await?;
        return Ok((
            found.into_iter().map(|job| job.id).collect(),
            filter,
            complete,
        ));
    }
    let id = form.get("id");
    if id.is_empty() {
        return Err(PageError::bad_request(
            "say which dead job: an id, or scope=filtered",
        ));
    }
    Ok((vec![id.to_owned()], Filter::default(), true))
}

/// What the confirmation says the action touches.
fn described(
    keys: &QueueKeys,
    form: &ActionForm,
    ids: &[String],
    filter: &Filter,
    complete: bool,
) -> Markup {
    html! {
        @if form.get("scope") == "filtered" {
            "the " (ids.len()) @if !complete { " (the most one action takes)" }
            " dead " (if ids.len() == 1 { "job" } else { "jobs" }) " of queue " strong { (keys.queue) } (filter.in_words())
        } @else {
            "dead job " code { (form.get("id")) } " of queue " strong { (keys.queue) }
        }
    }
}

/// POST `/dead/replay`: back on the queue's stream as fresh jobs.
pub async fn replay(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    let keys = queue_keys(&app, form.get("queue"))?;
    let mut redis = app.redis.clone();
    let (ids, filter, complete) = targets(&mut redis, &keys, &form).await?;
    let back = filter.list_link(&keys);
    let force = form.get("force") == "yes";
    if !form.confirmed() {
        let question = html! {
            "Replay " (described(&keys, &form, &ids, &filter, complete)) "? "
            "Each goes back on the queue as a fresh job (attempt 1)."
            @if !force { " Jobs replayed " (MAX_REPLAYS) " times already are frozen and stay." }
        };
        return Ok(confirm(
            &app,
            "Replay dead jobs",
            question,
            "/dead/replay",
            &form,
            &back,
        ));
    }
    let (mut replayed, mut frozen, mut missing) = (0u64, 0u64, 0u64);
    for id in &ids {
        match redis.replay(&keys, id, MAX_REPLAYS, force).await? {
            Replay::Replayed(_) => replayed += 1,
            Replay::Frozen(_) => frozen += 1,
            Replay::Missing => missing += 1,
        }
    }
    let mut result = format!("Replayed {}", jobs(replayed));
    if frozen > 0 {
        result.push_str(&format!(
            "; {} frozen (replayed {MAX_REPLAYS} times already) left dead",
            jobs(frozen)
        ));
    }
    if missing > 0 {
        result.push_str(&format!("; {} gone meanwhile", jobs(missing)));
    }
    Ok(outcome(
        &app,
        "Replay dead jobs",
        &result,
        &back,
        "Back to the dead jobs",
    ))
}

/// POST `/dead/purge`: deleted for good.
pub async fn purge(State(app): State<App>, form: ActionForm) -> Result<Response, PageError> {
    let keys = queue_keys(&app, form.get("queue"))?;
    let mut redis = app.redis.clone();
    let (ids, filter, complete) = targets(&mut redis, &keys, &form).await?;
    let back = filter.list_link(&keys);
    if !form.confirmed() {
        let question = html! {
            "Purge " (described(&keys, &form, &ids, &filter, complete)) "? They are deleted for good."
        };
        return Ok(confirm(
            &app,
            "Purge dead jobs",
            question,
            "/dead/purge",
            &form,
            &back,
        ));
    }
    let purged = redis.delete_dead(&keys, &ids).await?;
    let result = format!("Purged {}", jobs(purged));
    Ok(outcome(
        &app,
        "Purge dead jobs",
        &result,
        &back,
        "Back to the dead jobs",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead(job_type: &str, error: &str) -> DeadJob {
        DeadJob {
            id: "1-0".to_owned(),
            fields: vec![
                ("type".to_owned(), job_type.as_bytes().to_vec()),
                ("last_error".to_owned(), error.as_bytes().to_vec()),
            ],
        }
    }

    #[test]
    fn a_filter_matches_type_and_error_text() {
        let filter = |job_type: &str, error: &str| Filter {
            job_type: job_type.to_owned(),
            error: error.to_owned(),
        };
        let job = dead("orders.created", "Upstream TIMEOUT after 5s");
        assert!(filter("", "").matches(&job));
        assert!(filter("orders.", "").matches(&job));
        assert!(filter("", "timeout").matches(&job));
        assert!(filter("created", "after").matches(&job));
        assert!(!filter("emails", "").matches(&job));
        assert!(!filter("orders", "refused").matches(&job));
    }

    #[test]
    fn values_are_shown_as_text_or_escaped_bytes() {
        assert_eq!(shown(b"plain"), "plain");
        assert_eq!(shown(&[0x61, 0xff, 0x00]), "a\\xff\\x00");
        assert_eq!(clipped("abcdef", 3), "abc…");
        assert_eq!(clipped("abc", 3), "abc");
        assert_eq!(entry_ms("1700000000123-4"), 1_700_000_000_123);
    }
}
