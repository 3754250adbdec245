//! Sending one granted request: a fresh HTTP/1.1 connection (TLS verified
//! against the system's roots for `https`), every wait bounded, and a
//! response body that fails once the job's response bytes run out.
//!
//! Everything here runs on wasmtime-wasi's runtime, in the task
//! `wasi:http/outgoing-handler.handle` spawns; when the job ends, its store
//! drops that task and with it the connection (nothing is left behind: the
//! connection is driven by the same task, or by the response's worker task,
//! which the store owns too).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore, pki_types::ServerName};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error, WasiBody};

use super::origin::Origin;

/// How long each step of one request may wait, already cut to the job's
/// remaining time.
#[derive(Debug, Clone, Copy)]
pub struct Waits {
    pub connect: Duration,
    pub first_byte: Duration,
    pub between_bytes: Duration,
}

/// What the response body may still bring, over all requests of one job.
#[derive(Debug, Clone)]
pub struct ByteBudget {
    pub used: Arc<AtomicU64>,
    pub limit: u64,
    /// The error text once the budget is spent (names the limit and file).
    pub exceeded: Arc<str>,
}

/// The response head, and the connection's remaining work (driving the body).
pub type Sent = (
    http::Response<WasiBody>,
    Box<dyn Future<Output = Result<(), Error>> + Send>,
);

/// Sends `request` to `origin`.
pub async fn send(
    origin: Origin,
    mut request: http::Request<WasiBody>,
    waits: Waits,
    budget: ByteBudget,
) -> Result<Sent, Error> {
    let tcp = tokio::time::timeout(waits.connect, TcpStream::connect(origin.authority()))
        .await
        .map_err(|_| Error::ConnectionTimeout)?
        .map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    let stream: Box<dyn Stream> = if origin.is_https() {
        let server = ServerName::try_from(origin.host().to_owned()).map_err(|_| {
            Error::InternalError(Some(format!("{origin}: invalid TLS server name")))
        })?;
        let tls = tokio::time::timeout(waits.connect, tls_connector()?.connect(server, tcp))
            .await
            .map_err(|_| Error::ConnectionTimeout)?
            .map_err(tls_error)?;
        Box::new(tls)
    } else {
        Box::new(tcp)
    };
    let (mut sender, connection) = tokio::time::timeout(
        waits.connect,
        hyper::client::conn::http1::handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| Error::ConnectionTimeout)??;

    // The request line carries the path only (the Host header names the origin).
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    *request.uri_mut() = path.parse().map_err(|_| Error::HttpRequestUriInvalid)?;

    // The connection must be driven while the response comes. A server that
    // answers and closes finishes the connection first: the response is then
    // already there to take.
    let mut connection = Some(Box::pin(connection));
    let first_byte = async {
        let send = sender.send_request(request);
        tokio::pin!(send);
        loop {
            let closed = match connection.as_mut() {
                None => break send.await,
                Some(driving) => tokio::select! {
                    biased;
                    response = &mut send => break response,
                    closed = driving => closed,
                },
            };
            connection = None;
            closed?;
        }
    };
    let response = tokio::time::timeout(waits.first_byte, first_byte)
        .await
        .map_err(|_| Error::ConnectionReadTimeout)??;
    let response = response.map(|incoming| {
        CappedBody {
            incoming,
            budget,
            between_bytes: waits.between_bytes,
            idle: Box::pin(tokio::time::sleep(waits.between_bytes)),
        }
        .boxed_unsync()
    });
    let rest = async move {
        match connection {
            Some(driving) => driving.await.map_err(Error::from),
            None => Ok(()),
        }
    };
    Ok((response, Box::new(rest)))
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// The client TLS settings, with the system's root certificates (loaded once).
fn tls_connector() -> Result<TlsConnector, Error> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let config = CONFIG.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err("no system root certificates found (install ca-certificates)".to_owned());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| format!("TLS setup: {e}"))
    });
    match config {
        Ok(config) => Ok(TlsConnector::from(config.clone())),
        Err(error) => Err(Error::InternalError(Some(error.clone()))),
    }
}

fn connect_error(error: std::io::Error) -> Error {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::ConnectionRefused => Error::ConnectionRefused,
        ErrorKind::TimedOut => Error::ConnectionTimeout,
        _ if error.to_string().contains("failed to lookup address") => Error::DnsError {
            rcode: Some(error.to_string()),
            info_code: None,
        },
        _ => Error::InternalError(Some(format!("connect: {error}"))),
    }
}

fn tls_error(error: std::io::Error) -> Error {
    let certificate = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::InvalidCertificate(_)));
    if certificate {
        Error::TlsCertificateError
    } else {
        Error::InternalError(Some(format!("TLS: {error}")))
    }
}

/// A response body that counts its bytes against the job's budget and fails
/// when no byte arrives for `between_bytes`.
struct CappedBody {
    incoming: hyper::body::Incoming,
    budget: ByteBudget,
    between_bytes: Duration,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl Body for CappedBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let len = frame.data_ref().map_or(0, |data| data.len() as u64);
                let used = self.budget.used.fetch_add(len, Ordering::Relaxed) + len;
                if used > self.budget.limit {
                    let text = self.budget.exceeded.to_string();
                    return Poll::Ready(Some(Err(Error::InternalError(Some(text)))));
                }
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.idle.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(Error::from(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.idle.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(Error::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.incoming.size_hint()
    }
}
