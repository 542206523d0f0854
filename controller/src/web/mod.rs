//! The operator's HTTP server: binds before anything starts, serves the router over plain TCP
//! or TLS, protects it with basic auth, and bounds every connection.
//!
//! * **Bounded**: at most [`MAX_CONNECTIONS`] connections (more are closed at once); a
//!   request's headers must arrive within [`HEADER_TIMEOUT`], which also ends a keep-alive
//!   connection idle that long; a TLS handshake must end within [`HANDSHAKE_TIMEOUT`]; a
//!   client that stops reading is dropped after [`WRITE_STALL_TIMEOUT`].
//! * **Shutdown**: connections are asked to close after their current response and are dropped
//!   after [`SHUTDOWN_GRACE`] whatever the client does, so a half-sent request never holds the
//!   operator (and its webhooks and lease) at SIGTERM.
//! * **Health checks over TLS**: on a TLS listener a connection whose first byte is not a TLS
//!   handshake is served plain HTTP with only `/healthz` and `/readyz` (which reveal nothing),
//!   so the image's plain-HTTP `HEALTHCHECK` keeps working behind `--web-config`.

pub mod auth;
pub mod config;
pub mod tls;

use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use auth::BasicAuth;
pub use config::{WebConfig, WebConfigError};
pub use tls::TlsError;

/// Connections served at once; more are closed at once (a browser opens about six, a
/// Prometheus one).
pub const MAX_CONNECTIONS: usize = 128;
/// Time for a request's headers, and the longest a keep-alive connection may sit idle.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a write may make no progress (a client that stopped reading a page or an event
/// stream) before the connection is dropped, so that stalled readers cannot hold every slot.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long shutdown waits for open connections before dropping them.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The first byte of a TLS record carrying a handshake.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why the HTTP server cannot start or run.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// The address could not be bound.
    #[error("cannot listen on --metrics-addr {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why (in use, not an address of this host, no permission).
        source: std::io::Error,
    },
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound listener with its protection, made before anything else starts so that a taken
/// address ends `run` at once. Cheap to clone: clones share the socket.
#[derive(Clone)]
pub struct Listener {
    listener: Arc<TcpListener>,
    addr: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    auth: Option<Arc<BasicAuth>>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("addr", &self.addr)
            .field("tls", &self.tls.is_some())
            .field("auth", &self.auth)
            .finish()
    }
}

impl Listener {
    /// Binds `addr`, protected as `config` says (unprotected without one).
    pub async fn bind(addr: SocketAddr, config: Option<&WebConfig>) -> Result<Listener, WebError> {
        // The TLS files first: reading them cannot fail because of the address.
        let tls = match config.and_then(|c| c.tls.as_ref().map(|t| (t, &c.file))) {
            Some((settings, file)) => Some(tokio_rustls::TlsAcceptor::from(tls::server_config(
                settings, file,
            )?)),
            None => None,
        };
        let auth = config
            .and_then(|c| BasicAuth::new(c.basic_auth_users.clone()))
            .map(Arc::new);
        if let Some(config) = config {
            let file = config.file.display();
            match (&tls, &auth) {
                (None, None) => {
                    warn!(%file, "the web configuration sets neither TLS nor basic auth: the endpoints are open");
                }
                (None, Some(_)) => {
                    warn!(%file, "basic auth without TLS: passwords cross the network in clear text");
                }
                _ => {}
            }
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| WebError::Bind { addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        Ok(Listener {
            listener: Arc::new(listener),
            addr,
            tls,
            auth,
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then within [`SHUTDOWN_GRACE`].
pub async fn serve(listener: Listener, app: Router, shutdown: CancellationToken) {
    let app = match &listener.auth {
        Some(auth) => app.layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::require,
        )),
        None => app,
    };
    let health_only = app
        .clone()
        .layer(axum::middleware::from_fn(only_open_paths));
    info!(addr = %listener.addr, tls = listener.tls.is_some(), basic_auth = listener.auth.is_some(),
          "serving /metrics, /healthz, /readyz, the status page (/) and /api/v1/status");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors, or the peer gave up: not the server's end.
                        warn!(%error, "accepting an HTTP connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    debug!(%peer, "{MAX_CONNECTIONS} connections open: closing a new one");
                    continue;
                };
                let tls = listener.tls.clone();
                let (app, health_only, shutdown) = (app.clone(), health_only.clone(), shutdown.clone());
                connections.spawn(async move {
                    connection(stream, tls, app, health_only, shutdown).await;
                    drop(slot);
                });
            }
        }
    }
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        info!(
            open = connections.len(),
            "dropping HTTP connections still open at shutdown"
        );
        connections.shutdown().await;
    }
}

/// What a plain-HTTP connection to a TLS listener may reach.
async fn only_open_paths(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if auth::OPEN_PATHS.contains(&request.uri().path()) {
        next.run(request).await
    } else {
        (
            StatusCode::BAD_REQUEST,
            "this server speaks HTTPS; only /healthz and /readyz answer plain HTTP\n",
        )
            .into_response()
    }
}

async fn connection(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Router,
    health_only: Router,
    shutdown: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let Some(acceptor) = tls else {
        return http(TokioIo::new(StallLimit::new(stream)), app, shutdown).await;
    };
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)) => peeked,
        () = shutdown.cancelled() => return,
    };
    match peeked {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            return http(TokioIo::new(StallLimit::new(stream)), health_only, shutdown).await;
        }
        _ => return,
    }
    let handshake = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(StallLimit::new(stream))) => done,
        () = shutdown.cancelled() => return,
    };
    match handshake {
        Ok(Ok(stream)) => http(TokioIo::new(stream), app, shutdown).await,
        // Wrong CA, no client certificate, a port scanner: the client's problem, not logged
        // above debug so that a scanner cannot fill the log.
        Ok(Err(error)) => debug!(%error, "TLS handshake failed"),
        Err(_) => debug!("TLS handshake timed out"),
    }
}

async fn http<I>(io: TokioIo<I>, app: Router, shutdown: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 * 1024);
    let conn = builder.serve_connection(io, TowerToHyperService::new(app));
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = shutdown.cancelled() => {
            // Ends the connection after the response in flight; the caller drops it after
            // the grace if the client holds it open.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(error) = result {
        debug!(%error, "HTTP connection ended with an error");
    }
}

/// A socket whose writes fail once they made no progress for [`WRITE_STALL_TIMEOUT`].
struct StallLimit<T> {
    inner: T,
    /// Running while a write or flush waits; reset by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<T> StallLimit<T> {
    fn new(inner: T) -> Self {
        StallLimit {
            inner,
            stalled: None,
        }
    }

    fn check<R>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        if stalled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for StallLimit<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for StallLimit<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.check(cx, poll)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.check(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn start() -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
            .await
            .unwrap();
        let addr = listener.local_addr();
        let app = Router::new().route("/", axum::routing::get(|| async { "hello" }));
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, app, stop.clone()));
        (addr, stop, server)
    }

    /// Reads until the server closes (or resets) the connection; what it sent.
    async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes).await;
        String::from_utf8_lossy(&bytes).into_owned()
    }

    // Paused time: the runtime jumps to the next timer whenever everything waits on the
    // sockets, so these show the timeouts fire without waiting for them.
    #[tokio::test(start_paused = true)]
    async fn a_half_sent_request_is_closed_after_the_header_timeout() {
        let (addr, _stop, _server) = start().await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let started = tokio::time::Instant::now();
        let answer = read_to_close(&mut stream).await;
        assert!(!answer.contains("hello"), "{answer}");
        assert!(
            started.elapsed() >= HEADER_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_keep_alive_connection_is_closed() {
        let (addr, _stop, _server) = start().await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut stream).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
            "{answer}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_does_not_wait_for_a_stalled_client() {
        let (addr, stop, server) = start().await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\nHost").await.unwrap();
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        stop.cancel();
        server.await.unwrap();
        assert!(
            started.elapsed() <= SHUTDOWN_GRACE,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_dropped() {
        const CHUNK: usize = 64 * 1024;
        const CHUNKS: usize = 1024;
        let listener = Listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
            .await
            .unwrap();
        let addr = listener.local_addr();
        // 64 MiB: far more than the socket buffers hold while the client does not read.
        let app = Router::new().route(
            "/big",
            axum::routing::get(|| async {
                let chunk = bytes::Bytes::from(vec![b'x'; CHUNK]);
                let chunks = futures_util::stream::iter(
                    std::iter::repeat_n(chunk, CHUNKS).map(Ok::<_, std::convert::Infallible>),
                );
                axum::body::Body::from_stream(chunks)
            }),
        );
        let _server = tokio::spawn(serve(listener, app, CancellationToken::new()));
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(WRITE_STALL_TIMEOUT * 2).await;
        let mut received = 0;
        let mut buf = vec![0u8; CHUNK];
        while let Ok(n @ 1..) = stream.read(&mut buf).await {
            received += n;
        }
        assert!(
            received < CHUNK * CHUNKS,
            "the whole body arrived: {received} bytes"
        );
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_closed() {
        let (addr, _stop, _server) = start().await;
        let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut open = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            // Each answers once, so the server holds it (keep-alive) when the next one comes.
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.write_all(request).await.unwrap();
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
            open.push(stream);
        }
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(request).await;
        let answer = read_to_close(&mut extra).await;
        assert_eq!(answer, "", "a connection past the cap was served");
        // A freed slot is usable again.
        drop(open.pop());
        let served = async {
            loop {
                let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
                stream
                    .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                if read_to_close(&mut stream).await.ends_with("hello") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), served)
            .await
            .expect("a freed slot was never reused");
    }
}
