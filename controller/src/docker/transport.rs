//! One HTTP client for the engine over the resolved endpoint (unix socket, tcp, TLS, ssh), shared by bollard and the raw reads.
//!
//! bollard is handed this client as its custom transport, so that every request, bollard's and
//! ours, goes through the same connections: one TLS stack (rustls with ring), one way to run
//! ssh (the system `ssh` running `docker system dial-stdio`, as the docker CLI does).

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bollard::{API_DEFAULT_VERSION, BollardRequest, Docker};
use bytes::Bytes;
use futures_util::Stream;
use http_body_util::{Either, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, Uri};
use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tracing::{debug, warn};

use super::endpoint::{Endpoint, SshTarget, TlsFiles};

/// How long opening a connection (socket or TCP, and the TLS handshake) may take. ssh has its
/// own `ConnectTimeout=30`, as the docker CLI passes it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The authority of requests over a socket or ssh, where there is no host name (the docker
/// CLI's choice too).
const LOCAL_AUTHORITY: &str = "api.moby.localhost";
/// The most a connection's read buffer grows to. hyper's default (about 400 kB) is reached by
/// every list of a few hundred objects, and a pooled connection keeps its buffer while it idles:
/// 1.4 MB of the operator's heap at 5,000 services (heaptrack) was read buffers. Reads of a
/// large list just take more, smaller reads (a 10 MB list: 160 instead of 25).
const READ_BUFFER_MAX: usize = 64 * 1024;

/// Idle connections kept per engine. A burst opens one for each request in flight (64 by
/// default, [`super::Endpoint::default_concurrency`]); kept idle afterwards, each holds its
/// buffers (2 MB at 5,000 services: 39.7–39.9 MB resident against 37.7 MB with 8 in flight,
/// `resident.sh`), while the steady state uses a few at a time (a task poll, a re-read, a
/// status write; the event stream holds its own).
const POOL_IDLE_MAX: usize = 8;

/// bollard's request body (its `BodyType`, which it does not export by name).
pub(crate) type EngineBody = Either<
    Full<Bytes>,
    StreamBody<Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, io::Error>> + Send>>>,
>;

/// Why the endpoint's transport could not be set up. Messages name the file, never its
/// contents.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A TLS file could not be read or holds nothing usable (never its contents).
    #[error("TLS file {0}")]
    TlsFile(#[from] crate::pem::PemError),
    /// No CA file and the system's roots could not be loaded.
    #[error(
        "no ca.pem for the engine and no system CA certificates ({0}); \
         put the CA that signed the engine's certificate in ca.pem"
    )]
    NoRoots(String),
    /// rustls refused the configuration (e.g. a key that does not match its certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// bollard refused the transport.
    #[error("setting up the Docker client: {0}")]
    Bollard(#[from] bollard::errors::Error),
}

/// The shared client and the base URL its requests go to (`https://host:2376`,
/// `http://api.moby.localhost`).
#[derive(Clone)]
pub struct EngineTransport {
    client: Client<Bounded, EngineBody>,
    base: Arc<str>,
}

impl EngineTransport {
    /// A transport for `endpoint`; TLS files are read now, so that a bad file is reported at
    /// start, naming it.
    pub fn new(endpoint: &Endpoint) -> Result<Self, TransportError> {
        Self::with_connect_timeout(endpoint, CONNECT_TIMEOUT)
    }

    /// As [`EngineTransport::new`], with another bound on opening a connection.
    fn with_connect_timeout(endpoint: &Endpoint, limit: Duration) -> Result<Self, TransportError> {
        let (dial, base, tls) = match endpoint {
            Endpoint::Unix { socket } => (
                Dial::Unix(Arc::from(socket.as_path())),
                format!("http://{LOCAL_AUTHORITY}"),
                None,
            ),
            Endpoint::Ssh(target) => (
                Dial::Ssh(Arc::new(target.clone())),
                format!("http://{LOCAL_AUTHORITY}"),
                None,
            ),
            Endpoint::Tcp { tls, .. } => (Dial::Tcp, endpoint.to_string(), tls.as_ref()),
        };
        let config = match tls {
            Some(files) => client_config(files)?,
            // Never used: the base URL is http://, and the connector only starts TLS for
            // https:// (one connector type keeps one client type for every endpoint).
            None => ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_or_http()
            .enable_http1()
            .wrap_connector(Dialer { dial });
        let client = Client::builder(TokioExecutor::new())
            .http1_max_buf_size(READ_BUFFER_MAX)
            .pool_max_idle_per_host(POOL_IDLE_MAX)
            .build(Bounded {
                inner: connector,
                limit,
            });
        Ok(EngineTransport {
            client,
            base: Arc::from(base.as_str()),
        })
    }

    /// The URL requests are addressed to, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Sends one request.
    pub fn request(
        &self,
        request: Request<EngineBody>,
    ) -> impl Future<Output = Result<Response<Incoming>, hyper_util::client::legacy::Error>> + use<>
    {
        self.client.request(request)
    }

    /// A bollard client whose every request goes through this transport. `timeout` bounds each
    /// request as bollard's own transports do.
    pub fn bollard(&self, timeout: Duration) -> Result<Docker, TransportError> {
        let transport = self.clone();
        let docker = Docker::connect_with_custom_transport(
            move |request: BollardRequest| {
                let response = transport.client.request(request);
                async move { response.await.map_err(bollard::errors::Error::from) }
            },
            Some(self.base()),
            timeout.as_secs(),
            API_DEFAULT_VERSION,
        )?;
        Ok(docker)
    }
}

/// rustls's ring provider, named explicitly so that no process-wide default is needed (and
/// aws-lc-rs is never pulled in).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The TLS client configuration for the endpoint's files, as the docker CLI builds it: the
/// CA file alone as roots when there is one (else the system's), the client certificate when
/// there is one, and no verification of the engine at all when verification is off.
fn client_config(files: &TlsFiles) -> Result<ClientConfig, TransportError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if files.verify {
        let roots = match &files.ca {
            Some(ca) => crate::pem::roots(ca)?,
            None => {
                let native = rustls_native_certs::load_native_certs();
                if native.certs.is_empty() {
                    let reason = native
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string);
                    return Err(TransportError::NoRoots(reason));
                }
                let mut roots = rustls::RootCertStore::empty();
                roots.add_parsable_certificates(native.certs);
                roots
            }
        };
        builder.with_root_certificates(roots)
    } else {
        warn!("TLS without verifying the engine's certificate (DOCKER_TLS or SkipTLSVerify)");
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
    };
    let mut config = match &files.client {
        Some((cert, key)) => {
            let chain = crate::pem::certificates(cert)?;
            let key = crate::pem::private_key(key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    // No session resumption, as the docker CLI (Go's TLS client keeps no session cache unless
    // asked): a mutual-TLS front end forking per connection (socat's OpenSSL listener, in the
    // tests) answered the resumed handshake with an internal error. Connections are pooled, so
    // full handshakes are rare anyway.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Accepts any engine certificate: `DOCKER_TLS` without `DOCKER_TLS_VERIFY`, or a context
/// with `SkipTLSVerify`, as the docker CLI allows. Signatures are still checked, so that the
/// handshake itself is sound.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How a connection is opened.
#[derive(Clone)]
enum Dial {
    /// Connect to this socket, whatever the URL says.
    Unix(Arc<Path>),
    /// Connect to the URL's host and port.
    Tcp,
    /// Run ssh to the target.
    Ssh(Arc<SshTarget>),
}

/// The connector under hyper-rustls: opens the byte stream a connection runs over.
#[derive(Clone)]
struct Dialer {
    dial: Dial,
}

impl tower_service::Service<Uri> for Dialer {
    type Response = EngineStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<EngineStream>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let dial = self.dial.clone();
        Box::pin(async move {
            match dial {
                Dial::Unix(socket) => {
                    let stream = UnixStream::connect(&*socket).await?;
                    Ok(EngineStream::Unix(TokioIo::new(stream)))
                }
                Dial::Tcp => {
                    let host = uri
                        .host()
                        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?
                        .trim_matches(['[', ']'])
                        .to_owned();
                    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
                        Some("https") => 2376,
                        _ => 2375,
                    });
                    let stream = TcpStream::connect((host.as_str(), port)).await?;
                    stream.set_nodelay(true)?;
                    Ok(EngineStream::Tcp(TokioIo::new(stream)))
                }
                Dial::Ssh(target) => Ok(EngineStream::Ssh(Box::new(SshStream::spawn(&target)?))),
            }
        })
    }
}

/// The connector with a deadline on opening a connection, TLS handshake included: an engine
/// (or something in front of it) that accepts and then stalls must not hold a read forever.
#[derive(Clone)]
struct Bounded {
    inner: HttpsConnector<Dialer>,
    limit: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for Bounded {
    type Response = MaybeHttpsStream<EngineStream>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no connection within {}s", limit.as_secs_f32()),
                )
                .into()),
            }
        })
    }
}

/// A connection's byte stream.
enum EngineStream {
    Unix(TokioIo<UnixStream>),
    Tcp(TokioIo<TcpStream>),
    /// Boxed: a child process and its pipes are much larger than a socket.
    Ssh(Box<SshStream>),
}

impl Connection for EngineStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// `ssh … docker system dial-stdio`: the remote docker CLI connects its stdin/stdout to the
/// remote engine's socket, so the child's pipes carry the HTTP connection.
struct SshStream {
    stdin: TokioIo<ChildStdin>,
    stdout: TokioIo<SshOutput>,
    /// Killed when the connection is dropped (`kill_on_drop`).
    _child: Child,
}

/// How much of ssh's stderr an error quotes.
const SSH_STDERR_LIMIT: usize = 2048;

impl SshStream {
    fn spawn(target: &SshTarget) -> io::Result<Self> {
        let mut child = Command::new("ssh")
            .args(target.ssh_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("running ssh (the system ssh client, e.g. openssh-client): {e}"),
                )
            })?;
        let missing = || io::Error::other("ssh started without its pipes");
        let stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        // What ssh or the remote docker says (host key mismatch, permission denied, no docker
        // there) becomes the error of the connection that ends, as in the docker CLI.
        let host = target.host.clone();
        let stderr = tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut said = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                debug!(ssh_host = %host, "ssh: {line}");
                if said.len() < SSH_STDERR_LIMIT {
                    if !said.is_empty() {
                        said.push_str("; ");
                    }
                    said.extend(line.trim().chars().take(SSH_STDERR_LIMIT - said.len()));
                }
            }
            said
        });
        Ok(SshStream {
            stdin: TokioIo::new(stdin),
            stdout: TokioIo::new(SshOutput {
                stdout,
                stderr: Some(stderr),
            }),
            _child: child,
        })
    }
}

/// ssh's stdout; at its end, an error with what ssh wrote to stderr, if anything.
struct SshOutput {
    stdout: ChildStdout,
    stderr: Option<tokio::task::JoinHandle<String>>,
}

impl AsyncRead for SshOutput {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        std::task::ready!(Pin::new(&mut self.stdout).poll_read(cx, buf))?;
        let at_end = buf.filled().len() == before && buf.remaining() > 0;
        if !at_end {
            return Poll::Ready(Ok(()));
        }
        let Some(stderr) = self.stderr.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let said = std::task::ready!(Pin::new(stderr).poll(cx)).unwrap_or_default();
        self.stderr = None;
        if said.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("ssh: {said}"),
            )))
        }
    }
}

impl hyper::rt::Read for EngineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            EngineStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            EngineStream::Ssh(s) => Pin::new(&mut s.stdout).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for EngineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            EngineStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            EngineStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            EngineStream::Ssh(s) => Pin::new(&mut s.stdin).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Unix(s) => Pin::new(s).poll_flush(cx),
            EngineStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            EngineStream::Ssh(s) => Pin::new(&mut s.stdin).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            EngineStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            EngineStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            EngineStream::Ssh(s) => Pin::new(&mut s.stdin).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(port: u16, tls: Option<TlsFiles>) -> Endpoint {
        Endpoint::Tcp {
            host: "127.0.0.1".into(),
            port,
            tls,
        }
    }

    async fn get_version(transport: &EngineTransport) -> String {
        let request = Request::get(format!("{}/version", transport.base()))
            .body(Either::Left(Full::new(Bytes::new())))
            .expect("request");
        match transport.request(request).await {
            Ok(response) => format!("answered {}", response.status()),
            Err(e) => super::super::raw::error_chain(&e),
        }
    }

    #[tokio::test]
    async fn a_tls_endpoint_that_stalls_in_the_handshake_is_given_up() {
        // Accepts TCP, never says a word: the TLS handshake would wait forever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let _held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        let files = TlsFiles {
            ca: None,
            client: None,
            verify: false,
        };
        let transport = EngineTransport::with_connect_timeout(
            &tcp(port, Some(files)),
            Duration::from_millis(300),
        )
        .expect("transport");
        let message = get_version(&transport).await;
        assert!(message.contains("no connection within 0.3s"), "{message}");
    }

    #[test]
    fn a_bad_tls_file_is_named_and_never_quoted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let key = dir.path().join("key.pem");
        let cert = dir.path().join("cert.pem");
        std::fs::write(
            &key,
            "-----BEGIN PRIVATE KEY-----\nS3CR3T-KEY-BYTES\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        std::fs::write(&cert, "not a certificate S3CR3T-CERT\n").expect("write");
        let files = TlsFiles {
            ca: None,
            client: Some((cert.clone(), key)),
            verify: false,
        };
        let error = EngineTransport::new(&tcp(2376, Some(files)))
            .err()
            .expect("refused");
        let message = error.to_string();
        assert!(message.contains(&cert.display().to_string()), "{message}");
        assert!(!message.contains("S3CR3T"), "{message}");

        std::fs::write(&cert, "").expect("write");
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nS3CR3T\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let files = TlsFiles {
            ca: Some(ca.clone()),
            client: None,
            verify: true,
        };
        let message = EngineTransport::new(&tcp(2376, Some(files)))
            .err()
            .expect("refused")
            .to_string();
        assert!(message.contains(&ca.display().to_string()), "{message}");
        assert!(!message.contains("S3CR3T"), "{message}");
    }
}
