//! The probe's URL parsing and its one-JSON-line-per-response output, shared by the binary and the tests.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// A plain `http://host[:port]/path` URL: all the probe needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    /// Parse `http://host[:port][/path]`; other schemes are refused.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let rest = raw
            .strip_prefix("http://")
            .ok_or_else(|| format!("{raw}: only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().map_err(|_| format!("{raw}: bad port {p:?}"))?),
            None => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{raw}: empty host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

impl fmt::Display for Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}:{}{}", self.host, self.port, self.path)
    }
}

/// One response (or failure) as printed by `e2e-probe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProbeLine {
    /// The URL asked for.
    pub url: String,
    /// The address actually connected to (the replica, with dnsrr).
    pub addr: Option<String>,
    /// HTTP status, if a response came back.
    pub status: Option<u16>,
    /// The body: parsed JSON if it was JSON, else a string.
    pub body: serde_json::Value,
    /// Round-trip time in milliseconds.
    pub ms: Option<u64>,
    /// Connection or protocol error.
    pub error: Option<String>,
}

impl ProbeLine {
    /// A response line.
    pub fn response(url: &str, addr: SocketAddr, status: u16, body: &str, ms: u64) -> Self {
        let body = serde_json::from_str(body)
            .unwrap_or_else(|_| serde_json::Value::String(body.to_string()));
        ProbeLine {
            url: url.into(),
            addr: Some(addr.to_string()),
            status: Some(status),
            body,
            ms: Some(ms),
            error: None,
        }
    }

    /// A failure line.
    pub fn error(url: &str, addr: Option<SocketAddr>, error: &str) -> Self {
        ProbeLine {
            url: url.into(),
            addr: addr.map(|a| a.to_string()),
            status: None,
            body: serde_json::Value::Null,
            ms: None,
            error: Some(error.into()),
        }
    }

    /// Compact JSON, one line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ProbeLine always serializes")
    }

    /// Parse the probe's stdout; lines that are not probe lines are ignored.
    pub fn parse_all(stdout: &str) -> Vec<ProbeLine> {
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://account-service:6767/accounts/10000").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("account-service", 6767, "/accounts/10000")
        );
        assert_eq!(Url::parse("http://10.0.1.7").unwrap().path, "/");
        assert!(Url::parse("https://x").is_err());
        assert!(Url::parse("http://x:port/").is_err());
    }

    #[test]
    fn lines_round_trip() {
        let l = ProbeLine::response(
            "http://a:1/",
            "10.0.0.2:1".parse().unwrap(),
            200,
            r#"{"servedBy":"10.0.0.2"}"#,
            3,
        );
        let back = ProbeLine::parse_all(&format!("noise\n{}\n", l.to_json()));
        assert_eq!(back, vec![l]);
        assert_eq!(back[0].body["servedBy"], "10.0.0.2");
    }
}
