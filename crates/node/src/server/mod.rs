//! The HTTP server under the API's router: accepts connections up to a cap, gives each one an
//! idle and a header deadline ([`conn`]), serves HTTP/1.1 with hyper, and stops gracefully.
//!
//! - Connection cap (`http.max_connections`): a connection over it is answered
//!   `503 too_many_connections` (with `Retry-After`) and closed at once, so clients learn why
//!   instead of hanging in the listen backlog, and file descriptors stay for storage.
//! - Idle (`http.idle_timeout_ms`) and header (`http.header_read_timeout_ms`) deadlines: see
//!   [`conn`]. The body deadline (`http.body_read_timeout_ms`) is a layer on the router
//!   ([`crate::http`]).
//! - `accept` failing for lack of file descriptors (EMFILE, ENFILE) is logged (once a second at
//!   most) and retried after a short pause instead of spinning.
//! - Stopping: no new connections; each open one finishes the request it serves and is closed
//!   (hyper's graceful shutdown; an idle one at once). Dropping the future closes every
//!   connection.

pub mod conn;
pub mod tls;

use axum::Router;
use conn::{Clock, TimedIo, Timeouts};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// How the server treats connections.
#[derive(Clone)]
pub struct Limits {
    /// Most connections served at once.
    pub max_connections: u32,
    /// The idle and header deadlines (the header deadline also bounds a TLS handshake).
    pub timeouts: Timeouts,
    /// TLS (`[http.tls]`), or plain HTTP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("max_connections", &self.max_connections)
            .field("timeouts", &self.timeouts)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Limits {
    /// The limits `http` configures; without `http.max_connections`, 10 000 or half of
    /// `open_files`, whichever is lower. Fails when `[http.tls]` files cannot be used.
    pub fn of(
        http: &perdure_types::config::HttpConfig,
        open_files: Option<u64>,
    ) -> Result<Self, tls::TlsError> {
        Ok(Self {
            max_connections: http
                .max_connections
                .unwrap_or_else(|| crate::limits::default_max_connections(open_files)),
            timeouts: Timeouts {
                header_read: Duration::from_millis(http.header_read_timeout_ms),
                idle: Duration::from_millis(http.idle_timeout_ms),
            },
            tls: http.tls.as_ref().map(tls::acceptor).transpose()?,
        })
    }
}

/// The server's own measurements (registered in the node's registry when metrics are on).
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    /// `perdure_http_connections`: client connections open now.
    pub open: prometheus::IntGauge,
    /// `perdure_http_connections_refused_total`: connections over the cap, answered 503.
    pub refused: prometheus::IntCounter,
    /// `perdure_http_connections_timed_out_total`: connections closed by the idle or header
    /// timeout, or a TLS handshake that did not finish within the header timeout.
    pub timed_out: prometheus::IntCounter,
}

impl ConnMetrics {
    /// Unregistered metrics.
    pub fn new() -> Self {
        let counter = |name: &str, help: &str| {
            prometheus::IntCounter::new(name, help).expect("a valid metric name")
        };
        Self {
            open: prometheus::IntGauge::new(
                "perdure_http_connections",
                "Client HTTP connections open now.",
            )
            .expect("a valid metric name"),
            refused: counter(
                "perdure_http_connections_refused_total",
                "Client connections over http.max_connections, answered 503 and closed.",
            ),
            timed_out: counter(
                "perdure_http_connections_timed_out_total",
                "Client connections closed by the idle or header read timeout.",
            ),
        }
    }

    /// Registers them in `r`.
    pub fn register(&self, r: &prometheus::Registry) -> prometheus::Result<()> {
        r.register(Box::new(self.open.clone()))?;
        r.register(Box::new(self.refused.clone()))?;
        r.register(Box::new(self.timed_out.clone()))
    }
}

impl Default for ConnMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Connections over the cap being answered 503 at once, at most; past that they are just
/// closed.
const MAX_REFUSING: usize = 64;

/// What a connection over the cap reads before it is closed.
const TOO_MANY: &str = concat!(
    "HTTP/1.1 503 Service Unavailable\r\n",
    "content-type: application/json\r\n",
    "retry-after: 1\r\n",
    "connection: close\r\n",
    "content-length: 100\r\n",
    "\r\n",
    r#"{"error":{"code":"too_many_connections","message":"the node serves as many connections as it may"}}"#,
    "\n",
);

/// Serves `app` on `listener` until `stop` completes and every connection has finished (see the
/// module doc); dropping the returned future closes every connection at once.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: ConnMetrics,
    stop: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let refusing = Arc::new(Semaphore::new(MAX_REFUSING));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut conns = JoinSet::new();
    let mut last_accept_error: Option<tokio::time::Instant> = None;
    tokio::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            () = &mut stop => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    accept_failed(&e, &mut last_accept_error).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                let app = app.clone();
                let closing = closing_rx.clone();
                let (timeouts, tls, m) = (limits.timeouts, limits.tls.clone(), metrics.clone());
                m.open.inc();
                conns.spawn(async move {
                    let timed_out = m.timed_out.clone();
                    match tls {
                        None => serve_connection(stream, app, timeouts, timed_out, closing).await,
                        Some(tls) => {
                            let handshake = tls.accept(stream);
                            match tokio::time::timeout(timeouts.header_read, handshake).await {
                                Ok(Ok(stream)) => {
                                    serve_connection(stream, app, timeouts, timed_out, closing)
                                        .await
                                }
                                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                Err(_) => {
                                    timed_out.inc();
                                    tracing::debug!("TLS handshake timed out")
                                }
                            }
                        }
                    }
                    m.open.dec();
                    drop(slot);
                });
            }
            Err(_) => {
                metrics.refused.inc();
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    tokio::spawn(async move {
                        refuse(stream).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    let _ = closing_tx.send(true);
    while conns.join_next().await.is_some() {}
}

/// Logs an accept failure (at most once a second) and, unless it concerned one connection only
/// (aborted or reset before it was accepted), pauses so the loop does not spin: out of file
/// descriptors (EMFILE, ENFILE), out of memory or buffers.
async fn accept_failed(e: &std::io::Error, last: &mut Option<tokio::time::Instant>) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    ) {
        return;
    }
    let out_of_files = matches!(e.raw_os_error(), Some(code) if code == 24 || code == 23);
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
        *last = Some(tokio::time::Instant::now());
        tracing::error!(error = %e, out_of_files, "accepting an HTTP connection failed");
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Answers a connection over the cap 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(TOO_MANY.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// Serves one connection until it closes, times out, or `closing` turns true (then it finishes
/// its request and closes).
async fn serve_connection<S>(
    stream: S,
    app: Router,
    timeouts: Timeouts,
    timed_out: prometheus::IntCounter,
    mut closing: watch::Receiver<bool>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let clock = Clock::new(timeouts);
    let io = TokioIo::new(TimedIo::new(stream, clock.clone(), timed_out));
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let app = app.clone();
        clock.request_started();
        let done = RequestDone(clock.clone());
        async move {
            let resp = app.oneshot(req.map(axum::body::Body::new)).await;
            drop(done);
            resp
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let mut graceful = false;
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "HTTP connection closed on an error");
                }
                return;
            }
            changed = closing.changed(), if !graceful => {
                if changed.is_err() || *closing.borrow() {
                    graceful = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Tells a connection's clock that a request ended, also when its handler is dropped midway
/// (the client went away).
struct RequestDone(Arc<Clock>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_is_well_formed() {
        let (head, body) = TOO_MANY.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
