//! A minimal HTTP/1.1 GET client over pooled keep-alive connections, driven in the calling task.
//!
//! Why not reqwest/hyper's pooled client: they run every connection in its own spawned task
//! and hand each request to it over a channel, so one quote call costs two cross-task
//! wake-ups (often cross-thread on the multi-threaded runtime) on top of the socket I/O.
//! Here the request task writes the pre-rendered request and reads the response itself.
//! Responses are parsed with `httparse` (the parser hyper uses); `Content-Length`, chunked
//! and read-to-close bodies are all understood.

use std::io;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Most headers a quote response may have.
const MAX_HEADERS: usize = 32;

/// Most idle connections kept per endpoint.
const MAX_IDLE: usize = 256;

/// Errors of one exchange.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Connecting, writing or reading failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The response is not valid HTTP/1.x.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
    /// The body exceeded the limit.
    #[error("body larger than {0} bytes")]
    TooLarge(usize),
}

/// A response: its status and body.
#[derive(Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The (de-chunked) body.
    pub body: Vec<u8>,
}

struct Conn {
    stream: TcpStream,
    idle_since: Instant,
}

/// One origin (`host:port`) and its idle keep-alive connections.
#[derive(Debug)]
pub struct Origin {
    authority: String,
    request: Box<[u8]>,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("stream", &self.stream)
            .finish()
    }
}

impl Origin {
    /// GET `path_and_query` on `authority` (`host:port`).
    pub fn new(authority: &str, path_and_query: &str) -> Self {
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nhost: {authority}\r\naccept: application/json\r\n\r\n"
        );
        Self {
            authority: authority.to_owned(),
            request: request.into_bytes().into_boxed_slice(),
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take_idle(&self, idle_timeout: Duration) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some(conn) = idle.pop() {
            if conn.idle_since.elapsed() < idle_timeout {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, mut conn: Conn) {
        conn.idle_since = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// Sends the GET on an idle connection (or a new one) and reads the whole response,
    /// body limited to `max_body`. An idle connection the server closed meanwhile (nothing
    /// read back) is dropped and the request goes out on the next one: that is the pool's
    /// business, not a failure of the endpoint. Not cancel-safe in the pool's favour: a
    /// cancelled exchange drops its connection, which is what a timeout must do.
    pub async fn get(
        &self,
        idle_timeout: Duration,
        max_body: usize,
    ) -> Result<Response, HttpError> {
        loop {
            let (mut conn, reused) = match self.take_idle(idle_timeout) {
                Some(conn) => (conn, true),
                None => {
                    let stream = TcpStream::connect(self.authority.as_str()).await?;
                    stream.set_nodelay(true)?;
                    let conn = Conn {
                        stream,
                        idle_since: Instant::now(),
                    };
                    (conn, false)
                }
            };
            match exchange(&mut conn.stream, &self.request, max_body).await {
                Ok((response, keep_alive)) => {
                    if keep_alive {
                        self.put_idle(conn);
                    }
                    return Ok(response);
                }
                Err(Exchange::Stale(_)) if reused => continue,
                Err(Exchange::Stale(err)) => return Err(HttpError::Io(err)),
                Err(Exchange::Failed(err)) => return Err(err),
            }
        }
    }
}

enum Exchange {
    /// Failed before a single response byte arrived (closed or reset idle connection).
    Stale(io::Error),
    Failed(HttpError),
}

impl From<HttpError> for Exchange {
    fn from(err: HttpError) -> Self {
        Self::Failed(err)
    }
}

/// Writes `request`, reads one response. Returns it and whether the connection may be reused.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    max_body: usize,
) -> Result<(Response, bool), Exchange> {
    stream.write_all(request).await.map_err(Exchange::Stale)?;
    let mut buf = Vec::with_capacity(1024);
    // Status line and headers.
    let (status, head_len, framing, close) = loop {
        let n = read_more(stream, &mut buf).await.map_err(|err| {
            if buf.is_empty() {
                Exchange::Stale(err)
            } else {
                Exchange::Failed(HttpError::Io(err))
            }
        })?;
        if n == 0 {
            let eof = io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed");
            return Err(if buf.is_empty() {
                Exchange::Stale(eof)
            } else {
                Exchange::Failed(HttpError::Io(eof))
            });
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let code = response.code.ok_or(HttpError::Malformed("no status"))?;
                let status =
                    StatusCode::from_u16(code).map_err(|_| HttpError::Malformed("bad status"))?;
                let mut framing = Framing::UntilClose;
                let mut close = response.version != Some(1);
                for header in response.headers.iter() {
                    if header.name.eq_ignore_ascii_case("content-length") {
                        let len = std::str::from_utf8(header.value)
                            .ok()
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .ok_or(HttpError::Malformed("bad content-length"))?;
                        if !matches!(framing, Framing::Chunked) {
                            framing = Framing::Length(len);
                        }
                    } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
                        if header.value.eq_ignore_ascii_case(b"chunked") {
                            framing = Framing::Chunked;
                        } else {
                            return Err(
                                HttpError::Malformed("unsupported transfer-encoding").into()
                            );
                        }
                    } else if header.name.eq_ignore_ascii_case("connection") {
                        if header.value.eq_ignore_ascii_case(b"close") {
                            close = true;
                        } else if header.value.eq_ignore_ascii_case(b"keep-alive") {
                            close = false;
                        }
                    }
                }
                break (status, head_len, framing, close);
            }
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_body {
                    return Err(HttpError::TooLarge(max_body).into());
                }
            }
            Err(_) => return Err(HttpError::Malformed("unparsable head").into()),
        }
    };
    buf.drain(..head_len);
    let (body, keep_alive) = match framing {
        Framing::Length(len) => {
            if len > max_body {
                return Err(HttpError::TooLarge(max_body).into());
            }
            while buf.len() < len {
                if read_more(stream, &mut buf).await.map_err(HttpError::Io)? == 0 {
                    return Err(HttpError::Malformed("body shorter than content-length").into());
                }
            }
            // Anything beyond the body was not asked for: the connection is out of step.
            let extra = buf.len() > len;
            buf.truncate(len);
            (buf, !close && !extra)
        }
        Framing::Chunked => {
            let body = read_chunked(stream, buf, max_body).await?;
            (body, !close)
        }
        Framing::UntilClose => {
            while read_more(stream, &mut buf).await.map_err(HttpError::Io)? > 0 {
                if buf.len() > max_body {
                    return Err(HttpError::TooLarge(max_body).into());
                }
            }
            (buf, false)
        }
    };
    Ok((Response { status, body }, keep_alive))
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < 512 {
        buf.reserve(buf.capacity().max(1024));
    }
    stream.read_buf(buf).await
}

/// De-chunks a chunked body whose first bytes are in `raw`. Trailers are skipped.
async fn read_chunked(
    stream: &mut TcpStream,
    mut raw: Vec<u8>,
    max_body: usize,
) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        // Chunk size line.
        let line_end = loop {
            if let Some(i) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
                break pos + i;
            }
            if raw.len() - pos > 1024 {
                return Err(HttpError::Malformed("chunk size line too long"));
            }
            if read_more(stream, &mut raw).await? == 0 {
                return Err(HttpError::Malformed("truncated chunked body"));
            }
        };
        let line = std::str::from_utf8(&raw[pos..line_end])
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::Malformed("bad chunk size"))?;
        pos = line_end + 2;
        if size == 0 {
            // Trailers (if any) end with an empty line.
            loop {
                if let Some(i) = raw[pos..].windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    pos += i + 2;
                    if empty {
                        if raw.len() > pos {
                            return Err(HttpError::Malformed("bytes after the response"));
                        }
                        return Ok(body);
                    }
                    continue;
                }
                if read_more(stream, &mut raw).await? == 0 {
                    return Err(HttpError::Malformed("truncated chunked body"));
                }
            }
        }
        if body.len() + size > max_body {
            return Err(HttpError::TooLarge(max_body));
        }
        while raw.len() < pos + size + 2 {
            if read_more(stream, &mut raw).await? == 0 {
                return Err(HttpError::Malformed("truncated chunked body"));
            }
        }
        body.extend_from_slice(&raw[pos..pos + size]);
        if &raw[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        pos += size + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers each connection's requests with `responses` in turn, then closes.
    async fn serve(responses: Vec<&'static [u8]>) -> (String, tokio::task::JoinHandle<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let mut connections = 0;
            for response in responses {
                let (mut stream, _) = listener.accept().await.unwrap();
                connections += 1;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await.unwrap();
                stream.write_all(response).await.unwrap();
                // The connection is dropped: the pooled copy goes stale.
            }
            connections
        });
        (addr, task)
    }

    #[tokio::test]
    async fn chunked_body_and_stale_idle_connection() {
        let (addr, server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\nno",
        ])
        .await;
        let origin = Origin::new(&addr, "/q");
        let first = origin.get(Duration::from_secs(20), 1024).await.unwrap();
        assert_eq!(
            (first.status, first.body.as_slice()),
            (StatusCode::OK, &b"abcde"[..])
        );
        // The idle connection was closed by the server: the request goes out on a new one.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let second = origin.get(Duration::from_secs(20), 1024).await.unwrap();
        assert_eq!(
            (second.status, second.body.as_slice()),
            (StatusCode::SERVICE_UNAVAILABLE, &b"no"[..])
        );
        assert_eq!(server.await.unwrap(), 2);
    }

    #[tokio::test]
    async fn oversized_and_malformed_responses_fail() {
        let (addr, _server) = serve(vec![
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999\r\n\r\n",
            b"garbage\r\n\r\n",
        ])
        .await;
        let origin = Origin::new(&addr, "/q");
        let err = origin.get(Duration::from_secs(20), 1024).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLarge(1024)), "{err}");
        let err = origin.get(Duration::from_secs(20), 1024).await.unwrap_err();
        assert!(matches!(err, HttpError::Malformed(_)), "{err}");
    }
}
