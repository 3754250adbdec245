//! Who may use the dashboard and how its forms are protected.
//!
//! - With a token (required beyond loopback) every request must carry it,
//!   as `Authorization: Bearer TOKEN` or as the password of HTTP basic auth
//!   (any user name), which is what a browser asks for.
//! - Every state-changing action is a POST whose form carries this
//!   process's anti-CSRF token, and which no other site sent
//!   (`Sec-Fetch-Site`, where the browser says it): a page elsewhere can
//!   neither read the token nor post with it.
//! - Every answer forbids inline scripts and framing, so even text that
//!   escaped escaping could not run.

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;

use super::App;
use super::pages::PageError;

/// The headers every answer carries.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A fresh token from the system's random source (a v4 UUID's 122 random
/// bits, as hex).
pub fn random_token() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Compares without stopping at the first difference, so timing tells an
/// attacker nothing about how much of a guess was right.
fn same(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |diff, (a, b)| diff | (a ^ b))
            == 0
}

/// Whether the request carries `token`.
fn authorized(headers: &HeaderMap, token: &str) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(bearer) = value.strip_prefix("Bearer ") {
        return same(bearer.trim().as_bytes(), token.as_bytes());
    }
    let Some(basic) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
        return false;
    };
    let password = match decoded.iter().position(|b| *b == b':') {
        Some(colon) => &decoded[colon + 1..],
        None => &decoded[..],
    };
    same(password, token.as_bytes())
}

/// Checks the token (when one is set) and adds the security headers.
pub async fn protect(State(app): State<App>, request: Request, next: Next) -> Response {
    if let Some(token) = &app.token
        && !authorized(request.headers(), token)
    {
        let mut refused =
            (StatusCode::UNAUTHORIZED, "this dashboard needs its token\n").into_response();
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"jobhost\", charset=\"UTF-8\""),
        );
        return with_security_headers(refused);
    }
    with_security_headers(next.run(request).await)
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The fields of an action's form, once its anti-CSRF token checked out.
pub struct ActionForm {
    fields: Vec<(String, String)>,
}

impl ActionForm {
    /// The first value of field `name`, empty when missing.
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, value)| value.as_str())
            .unwrap_or("")
    }

    /// Whether this is the second step: the user confirmed.
    pub fn confirmed(&self) -> bool {
        self.get("confirm") == "yes"
    }

    /// The fields to carry into the confirmation step.
    pub fn carried(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields
            .iter()
            .filter(|(name, _)| name != "csrf" && name != "confirm")
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl FromRequest<App> for ActionForm {
    type Rejection = PageError;

    async fn from_request(request: Request, app: &App) -> Result<Self, Self::Rejection> {
        let cross_site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|site| site == "cross-site");
        if cross_site {
            return Err(PageError::forbidden(
                "refused: the form was sent from another site",
            ));
        }
        let axum::Form(fields) = axum::Form::<Vec<(String, String)>>::from_request(request, app)
            .await
            .map_err(|rejection| PageError::bad_request(&rejection.body_text()))?;
        let form = ActionForm { fields };
        if !same(form.get("csrf").as_bytes(), app.csrf.as_bytes()) {
            return Err(PageError::forbidden(
                "refused: the form's anti-CSRF token is missing or stale; reload the page and try again",
            ));
        }
        Ok(form)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn the_token_is_taken_as_bearer_or_basic_password() {
        assert!(authorized(&with("Bearer s3cret"), "s3cret"));
        // "ops:s3cret" and ":s3cret"
        assert!(authorized(&with("Basic b3BzOnMzY3JldA=="), "s3cret"));
        assert!(authorized(&with("Basic OnMzY3JldA=="), "s3cret"));
        assert!(!authorized(&with("Bearer s3cre"), "s3cret"));
        assert!(!authorized(&with("Basic b3BzOndyb25n"), "s3cret"));
        assert!(!authorized(&with("Basic !!"), "s3cret"));
        assert!(!authorized(&HeaderMap::new(), "s3cret"));
    }

    #[test]
    fn tokens_differ_and_compare_whole() {
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 32);
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"ab", b"abc"));
    }
}
