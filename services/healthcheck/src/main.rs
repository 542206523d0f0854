//! `healthcheck --port N [--path /health] [--timeout 2s] [--host 127.0.0.1]`: exit 0 on HTTP 200, else 1.
//!
//! Plain blocking std networking and one HTTP/1.0 request: no async runtime, no dependency,
//! so it starts in a millisecond in a `FROM scratch` image.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: healthcheck --port N [--path /health] [--timeout 2s] [--host 127.0.0.1]";

/// What to probe.
#[derive(Debug, PartialEq)]
struct Args {
    host: IpAddr,
    port: u16,
    path: String,
    timeout: Duration,
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("healthcheck: {message}\n{USAGE}");
            // Docker reads 2 as "reserved"; a usage error is simply unhealthy.
            return ExitCode::from(1);
        }
    };
    match probe(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("healthcheck: unhealthy: {reason}");
            ExitCode::from(1)
        }
    }
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut port = None;
    let mut path = "/health".to_owned();
    let mut timeout = Duration::from_secs(2);
    let mut host = IpAddr::V4(Ipv4Addr::LOCALHOST);
    while let Some(arg) = argv.next() {
        // Accept both `--port 8080` and `--port=8080` (and the seed's `-port=8080`).
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| argv.next())
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.trim_start_matches('-') {
            "port" => {
                let raw = value()?;
                port = Some(raw.parse().map_err(|_| format!("bad port {raw:?}"))?);
            }
            "path" => {
                path = value()?;
                if !path.starts_with('/') {
                    return Err(format!("path {path:?} must start with /"));
                }
            }
            "timeout" => timeout = parse_duration(&value()?)?,
            "host" => {
                let raw = value()?;
                host = raw
                    .parse()
                    .map_err(|_| format!("bad host {raw:?} (an IP address)"))?;
            }
            "h" | "help" => return Err("help requested".to_owned()),
            _ => return Err(format!("unknown argument {arg:?}")),
        }
    }
    let port = port.ok_or("--port is required")?;
    Ok(Args {
        host,
        port,
        path,
        timeout,
    })
}

/// `500ms`, `2s`, `1m` or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration {raw:?} (like 500ms, 2s, 1m)");
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let duration = match unit {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(bad()),
    };
    if duration.is_zero() {
        return Err(bad());
    }
    Ok(duration)
}

/// One GET within `timeout` in total; `Ok` only on status 200.
fn probe(args: &Args) -> Result<(), String> {
    let deadline = Instant::now() + args.timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("timed out after {:?}", args.timeout))
    };
    let addr = SocketAddr::new(args.host, args.port);
    let mut stream = TcpStream::connect_timeout(&addr, left()?)
        .map_err(|err| format!("connecting to {addr}: {err}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .map_err(|e| e.to_string())?;
    // HTTP/1.0: the server closes after the response, so reading to EOF is the framing.
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: healthcheck\r\n\r\n",
        args.path, addr
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|err| format!("sending to {addr}: {err}"))?;
    // Only the status line matters; read until it is complete, never more than 1 KiB.
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "timed out after {:?} waiting for {addr}",
                    args.timeout
                ));
            }
            Err(err) => return Err(format!("reading from {addr}: {err}")),
        }
    }
    let line = String::from_utf8_lossy(&head);
    let status_line = line.lines().next().unwrap_or("").trim();
    let status = status_line
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .ok_or_else(|| format!("not an HTTP response: {status_line:?}"))?;
    if status == "200" {
        Ok(())
    } else {
        Err(format!("GET {} answered {status_line:?}", args.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        parse_args(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_flags() {
        let parsed = args(&["--port", "8080", "--timeout", "500ms", "--path=/ready"]).unwrap();
        assert_eq!(parsed.port, 8080);
        assert_eq!(parsed.timeout, Duration::from_millis(500));
        assert_eq!(parsed.path, "/ready");
        assert_eq!(args(&["-port=6767"]).unwrap().port, 6767);
        assert!(args(&[]).is_err());
        assert!(args(&["--port", "x"]).is_err());
        assert!(args(&["--port", "1", "--timeout", "0s"]).is_err());
        assert!(args(&["--port", "1", "--bogus"]).is_err());
    }
}
