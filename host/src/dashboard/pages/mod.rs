//! The dashboard's pages: the frame they share, error pages, and the two
//! steps of every action (a confirmation, then what it did).
//!
//! Every value is written through maud, which escapes it: a job type or a
//! payload holding `<script>` shows as text.

pub mod dead;
pub mod hosts;
pub mod jobs;
pub mod overview;
pub mod schedules;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use super::App;
use super::guard::ActionForm;
use crate::broker::BrokerError;
use crate::envelope::format_rfc3339_ms;

/// The sections of the navigation bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Hosts,
    Dead,
    Jobs,
    Schedules,
    None,
}

const SECTIONS: [(Section, &str, &str); 5] = [
    (Section::Overview, "/", "Overview"),
    (Section::Hosts, "/hosts", "Hosts"),
    (Section::Dead, "/dead", "Dead jobs"),
    (Section::Jobs, "/jobs", "Find a job"),
    (Section::Schedules, "/schedules", "Schedules"),
];

/// Every page's `<head>`: its title, the built-in stylesheet, no favicon
/// request.
fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · jobhost" }
            link rel="stylesheet" href="/assets/style.css";
            link rel="icon" href="data:,";
        }
    }
}

/// A whole page: head, navigation, `body`, and the live script.
pub fn frame(app: &App, title: &str, section: Section, body: Markup) -> Response {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    a.brand href="/" { "jobhost" }
                    span.namespace title="namespace" { (app.namespace) }
                    nav {
                        @for (each, href, label) in SECTIONS {
                            a href=(href) class=[(each == section).then_some("current")] { (label) }
                        }
                    }
                }
                main { (body) }
                script src="/assets/live.js" {}
            }
        }
    };
    Html(page.into_string()).into_response()
}

/// The hidden field every action's form carries.
pub fn csrf_field(app: &App) -> Markup {
    html! { input type="hidden" name="csrf" value=(app.csrf); }
}

/// A POST button with hidden fields: one step of an action.
pub fn action_button(
    app: &App,
    action: &str,
    fields: &[(&str, &str)],
    label: &str,
    id: Option<&str>,
) -> Markup {
    html! {
        form.inline method="post" action=(action) id=[id] {
            (csrf_field(app))
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" { (label) }
        }
    }
}

/// The first step of an action: what it will do, and a button that does it.
pub fn confirm(
    app: &App,
    title: &str,
    question: Markup,
    action: &str,
    form: &ActionForm,
    back: &str,
) -> Response {
    frame(
        app,
        title,
        Section::None,
        html! {
            h1 { (title) }
            div.confirm {
                p.question { (question) }
                form id="confirm" method="post" action=(action) {
                    (csrf_field(app))
                    input type="hidden" name="confirm" value="yes";
                    @for (name, value) in form.carried() {
                        input type="hidden" name=(name) value=(value);
                    }
                    button id="confirm-button" class="danger" type="submit" { "Yes, " (title.to_lowercase()) }
                    " "
                    a.button href=(back) { "Cancel" }
                }
            }
        },
    )
}

/// The second step of an action: what it did.
pub fn outcome(app: &App, title: &str, result: &str, back: &str, back_label: &str) -> Response {
    frame(
        app,
        title,
        Section::None,
        html! {
            h1 { (title) }
            p id="result" { (result) }
            p { a href=(back) { (back_label) } }
        },
    )
}

/// `1 job`, `3 jobs`.
pub fn jobs(count: u64) -> String {
    match count {
        1 => "1 job".to_owned(),
        n => format!("{n} jobs"),
    }
}

/// A link's address: `path` with `params` as its query string.
pub fn link(path: &str, params: &[(&str, &str)]) -> String {
    let params: Vec<(&str, &str)> = params
        .iter()
        .copied()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if params.is_empty() {
        return path.to_owned();
    }
    let query = serde_urlencoded::to_string(&params).unwrap_or_default();
    format!("{path}?{query}")
}

/// A time as RFC 3339, and how long ago it was.
pub fn when(ms: u64, now: u64) -> Markup {
    html! {
        time datetime=(format_rfc3339_ms(ms)) title=(format_rfc3339_ms(ms)) { (ago(ms, now)) }
    }
}

/// `12 s ago`, `5 min ago`, `3 h ago`, `2 d ago` (`in 4 min` ahead).
pub fn ago(ms: u64, now: u64) -> String {
    let (seconds, ahead) = if ms > now {
        ((ms - now) / 1000, true)
    } else {
        ((now - ms) / 1000, false)
    };
    let span = match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// Why a page could not be served, as a page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn bad_request(message: &str) -> Self {
        PageError {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
        }
    }

    pub fn forbidden(message: &str) -> Self {
        PageError {
            status: StatusCode::FORBIDDEN,
            message: message.to_owned(),
        }
    }

    pub fn not_found(message: &str) -> Self {
        PageError {
            status: StatusCode::NOT_FOUND,
            message: message.to_owned(),
        }
    }
}

impl From<BrokerError> for PageError {
    fn from(error: BrokerError) -> Self {
        PageError {
            status: StatusCode::BAD_GATEWAY,
            message: error.to_string(),
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let page = html! {
            (DOCTYPE)
            html lang="en" {
                (head("Error"))
                body {
                    header { a.brand href="/" { "jobhost" } }
                    main {
                        h1 { "Cannot do that" }
                        p id="error" class="error" { (self.message) }
                        p { a href="/" { "Back to the overview" } }
                    }
                }
            }
        };
        (self.status, Html(page.into_string())).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_escape_their_values() {
        assert_eq!(
            link("/dead", &[("queue", "a b&c"), ("type", ""), ("page", "2")]),
            "/dead?queue=a+b%26c&page=2"
        );
        assert_eq!(link("/dead", &[("type", "")]), "/dead");
    }

    #[test]
    fn ages_read_naturally() {
        assert_eq!(ago(1_000, 13_000), "12 s ago");
        assert_eq!(ago(0, 300_000), "5 min ago");
        assert_eq!(ago(0, 3 * 3_600_000), "3 h ago");
        assert_eq!(ago(500_000, 260_000), "in 4 min");
        assert_eq!(jobs(1), "1 job");
        assert_eq!(jobs(0), "0 jobs");
    }
}
