//! `e2e-probe`: a tiny static HTTP client (and test server) run inside the swarm's overlay network.
//!
//! Swarm's virtual IPs do not route on kernels without IPVS, so the probe does client-side load
//! balancing itself: it resolves the URL's host to *every* address (with `endpointMode: dnsrr`
//! the embedded DNS returns one per task) and rotates over them. Each response is printed as one
//! JSON line, so a test can see which replica answered. It speaks just enough HTTP/1.1
//! (`Connection: close`) to need no dependencies beyond std: it runs `FROM scratch`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use e2e::probe::{ProbeLine, Url};

#[derive(Parser)]
#[command(about = "HTTP probe for the swarm e2e tests: one JSON line per response")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// GET one URL N times, rotating over every address its host resolves to.
    Get {
        url: String,
        /// How many requests.
        #[arg(short = 'n', long, default_value_t = 1)]
        count: u32,
        /// Per-request timeout.
        #[arg(long, default_value = "3000")]
        timeout_ms: u64,
        /// Keep retrying resolution for this long (DNS entries appear a moment after tasks).
        #[arg(long, default_value = "0")]
        resolve_wait_ms: u64,
    },
    /// GET each URL once (e.g. the `/health` of every endpoint in the status file).
    Each {
        urls: Vec<String>,
        #[arg(long, default_value = "3000")]
        timeout_ms: u64,
    },
    /// Print the addresses a host name resolves to, one per line (empty: unknown name).
    Resolve { host: String },
    /// Serve `{"hostname":..,"path":..}` on a port: a stand-in service for harness self-tests.
    Serve {
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
}

fn main() -> ExitCode {
    match Cli::parse().cmd {
        Cmd::Get {
            url,
            count,
            timeout_ms,
            resolve_wait_ms,
        } => {
            let url = match Url::parse(&url) {
                Ok(u) => u,
                Err(e) => return fail(&e),
            };
            let deadline = Instant::now() + Duration::from_millis(resolve_wait_ms);
            let addrs = loop {
                let addrs = resolve(&url.host, url.port);
                if !addrs.is_empty() || Instant::now() >= deadline {
                    break addrs;
                }
                std::thread::sleep(Duration::from_millis(250));
            };
            if addrs.is_empty() {
                return fail(&format!("{} resolves to no address", url.host));
            }
            let mut ok = 0;
            for i in 0..count as usize {
                let addr = addrs[i % addrs.len()];
                let line = get(addr, &url, Duration::from_millis(timeout_ms));
                ok += usize::from(line.status == Some(200));
                println!("{}", line.to_json());
            }
            if ok == 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Cmd::Each { urls, timeout_ms } => {
            let mut all_ok = true;
            for raw in urls {
                let line = match Url::parse(&raw) {
                    Ok(url) => match resolve(&url.host, url.port).first() {
                        Some(addr) => get(*addr, &url, Duration::from_millis(timeout_ms)),
                        None => ProbeLine::error(&raw, None, "unresolved host"),
                    },
                    Err(e) => ProbeLine::error(&raw, None, &e),
                };
                all_ok &= line.status == Some(200);
                println!("{}", line.to_json());
            }
            if all_ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Resolve { host } => {
            for a in resolve(&host, 0) {
                println!("{}", a.ip());
            }
            ExitCode::SUCCESS
        }
        Cmd::Serve { port } => serve(port),
    }
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("e2e-probe: {msg}");
    ExitCode::FAILURE
}

/// Every address of `host`, in the resolver's order, deduplicated.
fn resolve(host: &str, port: u16) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    if let Ok(iter) = (host, port).to_socket_addrs() {
        for a in iter {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

fn get(addr: SocketAddr, url: &Url, timeout: Duration) -> ProbeLine {
    let raw = url.to_string();
    let started = Instant::now();
    let result = (|| -> std::io::Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&addr, timeout)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        // One write: a server that answers after its first read must see the whole request.
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\r\n",
            url.path, url.host
        );
        s.write_all(req.as_bytes())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf)?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other("malformed status line"))?;
        let chunked = head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked");
        let body = if chunked {
            dechunk(body)
        } else {
            body.to_string()
        };
        Ok((status, body))
    })();
    let ms = started.elapsed().as_millis() as u64;
    match result {
        Ok((status, body)) => ProbeLine::response(&raw, addr, status, &body, ms),
        Err(e) => ProbeLine::error(&raw, Some(addr), &e.to_string()),
    }
}

/// Decode a `Transfer-Encoding: chunked` body (hyper uses it for streamed bodies).
fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

fn serve(port: u16) -> ExitCode {
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => return fail(&format!("bind {port}: {e}")),
    };
    let hostname = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    for stream in listener.incoming().flatten() {
        let mut stream = stream;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
        let mut req = Vec::new();
        let mut buf = [0u8; 2048];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let req = String::from_utf8_lossy(&req);
        let path = req.split_whitespace().nth(1).unwrap_or("/");
        let ip = stream
            .local_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let body = serde_json::json!({"hostname": hostname.trim(), "ip": ip, "path": path, "status": "UP"})
            .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            body.len(),
            body
        );
        let _ = stream.write_all(resp.as_bytes());
    }
    ExitCode::SUCCESS
}
