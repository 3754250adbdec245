//! A `jobhost dashboard` process on a free loopback port, and a plain
//! HTTP/1.1 client to read its pages and post its forms.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, jobhost_bin, wait_until};

/// A running `jobhost dashboard`.
pub struct Dashboard {
    child: Child,
    port: u16,
    token: Option<String>,
}

/// One answer of the dashboard.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of the first `name="csrf"` field of the page.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no csrf field in: {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').expect("closing quote")].to_owned()
    }

    /// The text of the element with `id="ID"` up to its closing tag (the
    /// element must not nest another of its kind).
    pub fn element(&self, id: &str) -> Option<&str> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let start = at + self.body[at..].find('>')? + 1;
        let end = start + self.body[start..].find("</")?;
        Some(&self.body[start..end])
    }
}

impl Dashboard {
    /// `jobhost dashboard --listen 127.0.0.1:FREE --redis URL ARGS...`, once
    /// it says where it listens.
    pub fn start(redis_url: &str, args: &[&str]) -> Dashboard {
        let port = free_port();
        let mut child = Command::new(jobhost_bin())
            .args(["dashboard", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--redis", redis_url])
            .args(args)
            .env_remove("REDIS_URL")
            .env_remove("JOBHOST_REDIS_URL")
            .env_remove("JOBHOST_DASHBOARD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn jobhost dashboard");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("dashboard's first line");
        assert!(
            line.contains(&format!("http://127.0.0.1:{port}/")),
            "{line}"
        );
        let token = args
            .iter()
            .position(|a| *a == "--token")
            .map(|i| args[i + 1].to_owned());
        let dashboard = Dashboard { child, port, token };
        wait_until("the dashboard answers", Duration::from_secs(30), || {
            dashboard
                .try_request("GET", "/assets/style.css", None)
                .is_ok()
        });
        dashboard
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET `path` (with the token, when the dashboard has one).
    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None, &[])
    }

    /// POST `fields` to `path` as a form.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.request("POST", path, Some(fields), &[])
    }

    /// A request with extra `headers`; the token is added unless one of
    /// them is `Authorization`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Response {
        let mut all: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        if let Some(token) = &self.token
            && !headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        {
            all.push(("Authorization".into(), format!("Bearer {token}")));
        }
        let body = form.map(encode_form);
        self.send(method, path, &all, body.as_deref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<Response> {
        let auth = self
            .token
            .as_ref()
            .map(|t| ("Authorization".to_owned(), format!("Bearer {t}")));
        self.send(method, path, auth.as_slice(), body)
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<&str>,
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.port
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if let Some(body) = body {
            request.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or(""));
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(parse(&raw))
    }
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `a=1&b=x+y`, each name and value percent-encoded.
fn encode_form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A whole HTTP/1.1 answer, chunked or not.
fn parse(raw: &[u8]) -> Response {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return body;
        };
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&rest[..end]).trim(), 16).unwrap_or(0);
        if size == 0 || rest.len() < end + 2 + size {
            return body;
        }
        body.extend_from_slice(&rest[end + 2..end + 2 + size]);
        rest = &rest[(end + 4 + size).min(rest.len())..];
    }
}
