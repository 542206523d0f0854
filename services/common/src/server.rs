//! Serving a router with graceful shutdown, and a handle to stop a server started in-process.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Errors of serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listener has no local address (it was not bound).
    #[error("reading the listener's address failed: {0}")]
    LocalAddr(#[source] io::Error),
    /// The accept loop failed.
    #[error("serving HTTP failed: {0}")]
    Io(#[source] io::Error),
    /// What the router shared was still held this long after the last connection closed.
    #[error("the server's resources were still held {0:?} after it stopped")]
    NotReleased(std::time::Duration),
    /// The serving task panicked or was cancelled.
    #[error("the server task ended abnormally: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting, lets
/// in-flight requests finish and closes idle keep-alive connections.
pub async fn serve(
    router: Router,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    // Responses are small and written at once: without TCP_NODELAY, Nagle plus delayed ACKs
    // can add 40 ms to a keep-alive request that follows a pipelined write.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServeError::Io)
}

/// Resolves on SIGTERM (what `docker stop` and swarm send) or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// How long [`Server::shutdown`] waits for a released signal after the serving task ended:
/// only connection tasks finishing their drop stand between the two.
const RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A server running on a spawned task: its address and a way to stop it gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
    /// Fires when what the router shared (a store's file) is let go: see [`Server::releasing`].
    released: Option<oneshot::Receiver<()>>,
}

impl Server {
    /// Starts serving `router` on `listener` in the background.
    pub fn spawn(router: Router, listener: TcpListener) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async move {
            // A dropped sender also means "stop": a forgotten handle must not leak a server.
            let _ = stopped.await;
        };
        let task = tokio::spawn(serve(router, listener, shutdown));
        Ok(Self {
            addr,
            stop: Some(stop),
            task,
            released: None,
        })
    }

    /// Makes [`Server::shutdown`] also wait for `released` (the sender dropped or sent):
    /// the serving task returns once every connection is closed, but a connection task may
    /// drop its clone of the router (and what the router holds, such as an open database)
    /// a moment later. A caller that reopens that resource right after shutdown needs it gone.
    #[must_use]
    pub fn releasing(mut self, released: oneshot::Receiver<()>) -> Self {
        self.released = Some(released);
        self
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Graceful stop: no new connections, in-flight requests finish, then return.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task).await.map_err(ServeError::Task)??;
        if let Some(released) = self.released.take() {
            // An error only means the sender was dropped: that is the release itself.
            if tokio::time::timeout(RELEASE_TIMEOUT, released)
                .await
                .is_err()
            {
                return Err(ServeError::NotReleased(RELEASE_TIMEOUT));
            }
        }
        Ok(())
    }

    /// Runs until `signal` resolves (then stops gracefully) or the server fails on its own.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        tokio::select! {
            () = signal => self.shutdown().await,
            joined = &mut self.task => joined.map_err(ServeError::Task)?,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Weak};

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// What a router shares with its connection tasks; its drop sends the released signal.
    struct Shared(#[allow(dead_code)] oneshot::Sender<()>);

    async fn server_sharing() -> (Server, Weak<Shared>) {
        let (tx, rx) = oneshot::channel();
        let shared = Arc::new(Shared(tx));
        let weak = Arc::downgrade(&shared);
        let router = Router::new()
            .route("/", get(|| async { "ok" }))
            .with_state(())
            .layer(axum::Extension(shared));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::spawn(router, listener).unwrap().releasing(rx);
        (server, weak)
    }

    #[tokio::test]
    async fn shutdown_returns_after_the_shared_state_is_dropped() {
        let (server, weak) = server_sharing().await;
        // A keep-alive connection: its task holds a clone of the router until it closes.
        let mut conn = tokio::net::TcpStream::connect(server.local_addr())
            .await
            .unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = conn.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        server.shutdown().await.unwrap();
        assert!(
            weak.upgrade().is_none(),
            "shutdown returned while a connection task still held the router's state"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_reports_state_that_is_never_released() {
        let (tx, rx) = oneshot::channel::<()>();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = Server::spawn(Router::new(), listener)
            .unwrap()
            .releasing(rx);
        let err = server.shutdown().await.unwrap_err();
        assert!(matches!(err, ServeError::NotReleased(_)), "{err}");
        drop(tx);
    }
}
