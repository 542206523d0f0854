//! The operator's HTTP server: binds before anything starts, serves the router over plain TCP
//! or TLS, protects it with basic auth, and bounds every connection.
//!
//! * **Bounded**: at most [`MAX_CONNECTIONS`] connections (more are closed at once); a
//!   request's headers must arrive within [`HEADER_TIMEOUT`], which also ends a keep-alive
//!   connection idle that long; a TLS handshake must end within [`HANDSHAKE_TIMEOUT`].
//! * **Shutdown**: connections are asked to close after their current response and are dropped
//!   after [`SHUTDOWN_GRACE`] whatever the client does, so a half-sent request never holds the
//!   operator (and its webhooks and lease) at SIGTERM.
//! * **Health checks over TLS**: on a TLS listener a connection whose first byte is not a TLS
//!   handshake is served plain HTTP with only `/healthz` and `/readyz` (which reveal nothing),
//!   so the image's plain-HTTP `HEALTHCHECK` keeps working behind `--web-config`.

pub mod auth;
pub mod config;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
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
        return http(TokioIo::new(stream), app, shutdown).await;
    };
    let mut first = [0u8; 1];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)) => peeked,
        () = shutdown.cancelled() => return,
    };
    match peeked {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return http(TokioIo::new(stream), health_only, shutdown).await,
        _ => return,
    }
    let handshake = tokio::select! {
        done = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
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
