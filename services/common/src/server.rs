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

/// A server running on a spawned task: its address and a way to stop it gracefully.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), ServeError>>,
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
        })
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
        (&mut self.task).await.map_err(ServeError::Task)?
    }

    /// Runs until `signal` resolves (then stops gracefully) or the server fails on its own.
    pub async fn run_until(mut self, signal: impl Future<Output = ()>) -> Result<(), ServeError> {
        tokio::select! {
            () = signal => self.shutdown().await,
            joined = &mut self.task => joined.map_err(ServeError::Task)?,
        }
    }
}
