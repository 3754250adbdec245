//! A test HTTP/1.1 server on a free loopback port, for the plugins that make
//! outbound requests (SPEC §10): it answers what a test asks for through the
//! path alone, and records every request so the test can assert on what the
//! plugin really sent and when.
//!
//! Routes (the path without its query; anything else is 404):
//!
//! | path | answer |
//! |---|---|
//! | `/ok` | 200 `ok` |
//! | `/echo` | 200 with the request's body |
//! | `/status/CODE` | CODE, body `status CODE` |
//! | `/flaky/N` | 500 for the first N requests to this exact path, then 200 `ok` |
//! | `/retry-after/SECS` | the first request to this exact path 429 with `Retry-After: SECS`, then 200 `ok` |
//! | `/stall` | reads the request, never answers; the connection stays open until the server drops |
//! | `/huge/BYTES` | 200 with BYTES bytes of `x` (`Content-Length`), written 64 KiB at a time |
//!
//! Requests are recorded when they have been read in full, before the answer
//! is written, so [`HttpServer::wait_for_requests`] never misses one a client
//! has already been answered for. Request bodies may come with
//! `Content-Length` or chunked (what a streaming client sends). Connections
//! are kept alive unless the client says `Connection: close`.
//!
//! Plain `std::net` and one thread per connection: tests send few requests,
//! and a blocking read is the simplest way to be exact about HTTP/1.1 framing.
//! Dropping the server shuts every connection down and joins every thread.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most a request's head (request line and headers) may take.
const MAX_HEAD: usize = 64 * 1024;
/// The most a request's body may take: tests send small bodies, and a bound
/// keeps a runaway client from filling the test's memory.
const MAX_BODY: usize = 16 * 1024 * 1024;
/// How much of a `/huge` answer is written at a time.
const HUGE_CHUNK: usize = 64 * 1024;

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target as sent, query included.
    pub path: String,
    /// Header names in lowercase, values as sent, in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// When the request had been read in full.
    pub received: Instant,
}

impl Request {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// The test HTTP server; see the module docs for its routes.
pub struct HttpServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

/// What the acceptor, the connection threads and the test share.
#[derive(Default)]
struct Shared {
    stopping: AtomicBool,
    /// Every request read so far, oldest first; `arrived` is notified on each.
    requests: Mutex<Vec<Request>>,
    arrived: Condvar,
    /// Requests seen per path (for `/flaky` and `/retry-after`).
    hits: Mutex<HashMap<String, usize>>,
    /// Open connections (clones), so dropping the server can shut them down.
    open: Mutex<HashMap<u64, TcpStream>>,
    next_connection: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// `/stall` waits on this until the server stops.
    stopped: Mutex<bool>,
    stop_signal: Condvar,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking connection thread must not hide the requests from the test.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl HttpServer {
    /// Starts serving on `127.0.0.1:0` (a free port).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the test HTTP server");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared::default());
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("http-server-accept".into())
                .spawn(move || accept_loop(listener, shared))
                .expect("spawn the acceptor")
        };
        HttpServer {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:PORT`: what a manifest grants.
    pub fn origin(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    /// `http://127.0.0.1:PORT/PATH` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin())
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    /// Every request so far whose path (without query) is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| route_of(&r.path) == path)
            .collect()
    }

    /// Waits until at least `count` requests have arrived and returns them
    /// all; panics at the deadline naming what did arrive.
    pub fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<Request> {
        let deadline = Instant::now() + timeout;
        let mut requests = lock(&self.shared.requests);
        while requests.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let seen: Vec<String> = requests
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {count} HTTP requests; got {}: {seen:?}",
                    requests.len()
                );
            }
            requests = self
                .shared
                .arrived
                .wait_timeout(requests, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        requests.clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        *lock(&self.shared.stopped) = true;
        self.shared.stop_signal.notify_all();
        for stream in lock(&self.shared.open).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        // Wakes the acceptor, which sees `stopping` and returns.
        let _ = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let threads = std::mem::take(&mut *lock(&self.shared.threads));
        for thread in threads {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            lock(&shared.open).insert(id, clone);
        }
        let connection_shared = shared.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("http-server-conn-{id}"))
            .spawn(move || {
                let _ = serve_connection(stream, &connection_shared);
                lock(&connection_shared.open).remove(&id);
            });
        let mut threads = lock(&shared.threads);
        threads.retain(|t| !t.is_finished());
        if let Ok(thread) = spawned {
            threads.push(thread);
        }
    }
}

/// Serves requests on one connection until the client closes it, asks to,
/// or sends something that is not HTTP/1.1 the server understands.
fn serve_connection(stream: TcpStream, shared: &Shared) -> io::Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let Some(request) = read_request(&mut reader)? else {
            return Ok(());
        };
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let hit = {
            let mut hits = lock(&shared.hits);
            let n = hits.entry(request.path.clone()).or_insert(0);
            *n += 1;
            *n
        };
        let route = route_of(&request.path).to_owned();
        let body = request.body.clone();
        {
            lock(&shared.requests).push(request);
            shared.arrived.notify_all();
        }
        match answer(&route, hit, body) {
            Answer::Respond {
                status,
                headers,
                body,
            } => write_response(&mut writer, status, &headers, &body)?,
            Answer::Huge(bytes) => write_huge(&mut writer, bytes)?,
            Answer::Stall => {
                let mut stopped = lock(&shared.stopped);
                while !*stopped {
                    stopped = shared
                        .stop_signal
                        .wait(stopped)
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                }
                return Ok(());
            }
        }
        if close {
            return Ok(());
        }
    }
}

/// The path without its query.
fn route_of(target: &str) -> &str {
    target.split('?').next().unwrap_or(target)
}

enum Answer {
    Respond {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    Huge(u64),
    Stall,
}

fn plain(status: u16, body: impl Into<Vec<u8>>) -> Answer {
    Answer::Respond {
        status,
        headers: Vec::new(),
        body: body.into(),
    }
}

/// What `route` answers to its `hit`-th request (1-based) carrying `body`.
fn answer(route: &str, hit: usize, body: Vec<u8>) -> Answer {
    let mut parts = route.trim_start_matches('/').splitn(2, '/');
    let (head, arg) = (parts.next().unwrap_or(""), parts.next());
    let number = |arg: Option<&str>| arg.and_then(|a| a.parse::<u64>().ok());
    match (head, arg) {
        ("ok", None) => plain(200, "ok"),
        ("echo", None) => plain(200, body),
        ("stall", None) => Answer::Stall,
        ("status", Some(code)) => match code.parse::<u16>() {
            Ok(code @ 100..=999) => plain(code, format!("status {code}")),
            _ => plain(400, "bad status code"),
        },
        ("flaky", n) => match number(n) {
            Some(n) if (hit as u64) <= n => plain(500, format!("flaky failure {hit} of {n}")),
            Some(_) => plain(200, "ok"),
            None => plain(400, "bad count"),
        },
        ("retry-after", secs) => match number(secs) {
            Some(secs) if hit == 1 => Answer::Respond {
                status: 429,
                headers: vec![("Retry-After", secs.to_string())],
                body: b"slow down".to_vec(),
            },
            Some(_) => plain(200, "ok"),
            None => plain(400, "bad seconds"),
        },
        ("huge", bytes) => match number(bytes) {
            Some(bytes) => Answer::Huge(bytes),
            None => plain(400, "bad size"),
        },
        _ => plain(404, "no such route"),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_head(
    writer: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    length: u64,
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {length}\r\nContent-Type: text/plain\r\n",
        reason(status)
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    writer.write_all(head.as_bytes())
}

fn write_response(
    writer: &mut impl Write,
    status: u16,
    headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    write_head(writer, status, headers, body.len() as u64)?;
    writer.write_all(body)?;
    writer.flush()
}

/// `bytes` bytes of `x`, a chunk at a time: the server never holds more than
/// one chunk, whatever the size (a client that stops reading blocks it, and
/// one that hangs up ends it with a write error).
fn write_huge(writer: &mut impl Write, bytes: u64) -> io::Result<()> {
    static CHUNK: [u8; HUGE_CHUNK] = [b'x'; HUGE_CHUNK];
    write_head(writer, 200, &[], bytes)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(HUGE_CHUNK as u64) as usize;
        writer.write_all(&CHUNK[..n])?;
        left -= n as u64;
    }
    writer.flush()
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One line ending in CRLF (or LF), without it; `None` at a clean EOF.
fn read_line(reader: &mut impl BufRead, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = reader
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget || !line.ends_with(b"\n") {
        return Err(invalid("request head too long or cut short"));
    }
    *budget -= n;
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| invalid("request head is not UTF-8"))
}

/// The next request on the connection; `None` when the client closed it
/// between requests.
fn read_request(reader: &mut impl BufRead) -> io::Result<Option<Request>> {
    let mut budget = MAX_HEAD;
    let Some(request_line) = read_line(reader, &mut budget)? else {
        return Ok(None);
    };
    let mut words = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (words.next(), words.next(), words.next())
    else {
        return Err(invalid("bad request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid("not HTTP/1.x"));
    }
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader, &mut budget)?.ok_or_else(|| invalid("head cut short"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("header without a colon"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked =
        find("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let length: usize = match find("content-length") {
            Some(v) => v.parse().map_err(|_| invalid("bad Content-Length"))?,
            None => 0,
        };
        if length > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body)?;
        body
    };
    Ok(Some(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        headers,
        body,
        received: Instant::now(),
    }))
}

fn read_chunked(reader: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut budget = MAX_HEAD;
    loop {
        let line = read_line(reader, &mut budget)?.ok_or_else(|| invalid("chunk cut short"))?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader, &mut budget)?
                .ok_or_else(|| invalid("trailers cut short"))?
                .is_empty()
            {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(invalid("body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        let end = read_line(reader, &mut budget)?.ok_or_else(|| invalid("chunk cut short"))?;
        if !end.is_empty() {
            return Err(invalid("chunk not followed by CRLF"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response as a plain client reads it.
    struct Response {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Response {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    fn connect(server: &HttpServer) -> TcpStream {
        let stream = TcpStream::connect(("127.0.0.1", server.port())).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream
    }

    /// Reads one response, its body by `Content-Length`.
    fn read_response(reader: &mut impl BufRead) -> Response {
        let mut budget = MAX_HEAD;
        let status_line = read_line(reader, &mut budget).unwrap().expect("a response");
        let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let mut headers = Vec::new();
        loop {
            let line = read_line(reader, &mut budget).unwrap().unwrap();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').unwrap();
            headers.push((n.trim().to_owned(), v.trim().to_owned()));
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map(|(_, v)| v.parse().unwrap())
            .unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        Response {
            status,
            headers,
            body,
        }
    }

    /// One request on a connection of its own.
    fn send(server: &HttpServer, raw: &str) -> Response {
        let mut stream = connect(server);
        stream.write_all(raw.as_bytes()).unwrap();
        read_response(&mut BufReader::new(stream))
    }

    fn get(server: &HttpServer, path: &str) -> Response {
        send(
            server,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
    }

    #[test]
    fn ok_answers_200_and_the_request_is_recorded_with_lowercase_headers() {
        let server = HttpServer::start();
        let before = Instant::now();
        let response = get(&server, "/ok?x=1");
        assert_eq!((response.status, &response.body[..]), (200, &b"ok"[..]));
        let requests = server.wait_for_requests(1, Duration::from_secs(5));
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("GET", "/ok?x=1")
        );
        assert_eq!(request.header("HOST"), Some("x"));
        assert!(
            request
                .headers
                .iter()
                .any(|(n, v)| n == "connection" && v == "close")
        );
        assert!(request.received >= before);
        assert_eq!(server.requests_to("/ok").len(), 1);
        assert_eq!(server.requests_to("/echo").len(), 0);
    }

    #[test]
    fn echo_returns_a_sized_body_and_a_chunked_one_de_chunked() {
        let server = HttpServer::start();
        let sized = send(
            &server,
            "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nIdempotency-Key: job-1\r\n\r\nhello world",
        );
        assert_eq!((sized.status, &sized.body[..]), (200, &b"hello world"[..]));
        let chunked = send(
            &server,
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n",
        );
        assert_eq!(
            (chunked.status, &chunked.body[..]),
            (200, &b"hello world"[..])
        );
        let requests = server.wait_for_requests(2, Duration::from_secs(5));
        assert_eq!(requests[0].header("idempotency-key"), Some("job-1"));
        assert_eq!(requests[1].body_text(), "hello world");
    }

    #[test]
    fn a_kept_alive_connection_serves_several_requests() {
        let server = HttpServer::start();
        let mut stream = connect(&server);
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        for path in ["/ok", "/status/204", "/ok"] {
            write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let response = read_response(&mut reader);
            assert!(matches!(response.status, 200 | 204));
        }
        assert_eq!(server.wait_for_requests(3, Duration::from_secs(5)).len(), 3);
    }

    #[test]
    fn status_flaky_and_retry_after_answer_by_their_path_and_count() {
        let server = HttpServer::start();
        assert_eq!(get(&server, "/status/503").status, 503);
        assert_eq!(get(&server, "/status/418").status, 418);
        assert_eq!(get(&server, "/nowhere").status, 404);
        let flaky: Vec<u16> = (0..4).map(|_| get(&server, "/flaky/2").status).collect();
        assert_eq!(flaky, [500, 500, 200, 200]);
        // Counted per path: another N starts afresh.
        assert_eq!(get(&server, "/flaky/1").status, 500);
        let first = get(&server, "/retry-after/7");
        assert_eq!(first.status, 429);
        assert_eq!(first.header("retry-after"), Some("7"));
        let second = get(&server, "/retry-after/7");
        assert_eq!(second.status, 200);
        assert_eq!(second.header("retry-after"), None);
    }

    #[test]
    fn huge_sends_exactly_the_bytes_asked_for() {
        let server = HttpServer::start();
        let bytes = 3 * HUGE_CHUNK + 17;
        let response = get(&server, &format!("/huge/{bytes}"));
        assert_eq!(response.status, 200);
        assert_eq!(response.body.len(), bytes);
        assert!(response.body.iter().all(|&b| b == b'x'));
    }

    #[test]
    fn huge_ends_when_the_client_hangs_up_early() {
        let server = HttpServer::start();
        let mut stream = connect(&server);
        write!(stream, "GET /huge/100000000000 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut first = [0; 1024];
        stream.read_exact(&mut first).unwrap();
        drop(stream);
        server.wait_for_requests(1, Duration::from_secs(5));
        // The connection's thread ends on its own (its write fails), long
        // before it could have written 100 GB.
        crate::wait_until(
            "the connection of a client that hung up is closed",
            Duration::from_secs(10),
            || lock(&server.shared.open).is_empty(),
        );
    }

    #[test]
    fn stall_never_answers_until_the_server_drops() {
        let server = HttpServer::start();
        let mut stream = connect(&server);
        stream
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        write!(stream, "GET /stall HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let stalled = server.wait_for_requests(1, Duration::from_secs(5));
        assert_eq!(stalled[0].path, "/stall");
        let mut buf = [0; 16];
        let err = stream.read(&mut buf).expect_err("no answer while stalled");
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{err:?}"
        );
        // Other requests are served meanwhile.
        assert_eq!(get(&server, "/ok").status, 200);
        drop(server);
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(
            stream.read(&mut buf).unwrap_or(0),
            0,
            "closed without an answer"
        );
    }

    #[test]
    fn waiting_for_more_requests_than_arrive_fails_naming_what_came() {
        let server = HttpServer::start();
        get(&server, "/ok");
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            server.wait_for_requests(2, Duration::from_millis(100))
        }));
        let message = waited.expect_err("only one request came");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains("GET /ok") && text.contains("got 1"), "{text}");
    }
}
