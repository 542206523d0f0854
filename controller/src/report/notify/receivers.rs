//! Webhook URLs as configured (`--notify URL`, `--notify-file FILE`): checked at start, and
//! named everywhere by scheme and host only, since a URL's path or query holds its token.

use std::io::Read;
use std::path::{Path, PathBuf};

use hyper::Uri;

/// A `--notify-file` larger than this is refused (it holds a few URLs, not megabytes; and
/// `/dev/zero` must not fill the memory).
const MAX_FILE_SIZE: u64 = 64 * 1024;

/// A webhook URL that can not be used. Never holds the URL or the line: they hold the token.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// A URL that is not a usable `http://` or `https://` URL.
    #[error("{place}: {why}; give an https:// (or http://) URL")]
    BadUrl {
        /// Where it was given: `--notify URL 2`, or `FILE line 3`.
        place: String,
        /// What is wrong.
        why: String,
    },
    /// A `--notify-file` that can not be read.
    #[error("--notify-file {}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// Whether deliveries are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `http://`.
    Http,
    /// `https://`, verified against the system roots or `SSL_CERT_FILE` / `SSL_CERT_DIR`.
    Https,
}

/// One webhook URL, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiverUrl {
    /// The whole URL: only ever handed to the HTTP client, never formatted.
    pub uri: Uri,
    /// `http` or `https`.
    pub scheme: Scheme,
    /// `https://host[:port]`: what logs show of it (no user info, path or query).
    pub public: String,
}

/// The URL itself stays out of every `{:?}` (a panic message, a debug log).
impl std::fmt::Debug for ReceiverUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverUrl")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl ReceiverUrl {
    /// Parses `text`, given at `place` (named in the error, which never quotes the text).
    pub fn parse(text: &str, place: &str) -> Result<Self, ReceiverError> {
        let bad = |why: &str| ReceiverError::BadUrl {
            place: place.to_owned(),
            why: why.to_owned(),
        };
        // http's own message names the problem, not the text ("invalid uri character").
        let uri: Uri = text
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&format!("not a URL ({e})")))?;
        let scheme = match uri.scheme_str() {
            Some("https") => Scheme::Https,
            Some("http") => Scheme::Http,
            Some(_) => return Err(bad("only http:// and https:// URLs are supported")),
            None => return Err(bad("the URL has no scheme")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("the URL has no host"));
        };
        if authority.host().is_empty() {
            return Err(bad("the URL has no host"));
        }
        let public = match authority.port() {
            Some(port) => format!(
                "{}://{}:{port}",
                uri.scheme_str().unwrap_or("?"),
                authority.host()
            ),
            None => format!("{}://{}", uri.scheme_str().unwrap_or("?"), authority.host()),
        };
        Ok(ReceiverUrl {
            uri,
            scheme,
            public,
        })
    }

    /// Every way the secret part of the URL could be spelled in a message from the HTTP
    /// stack: removed by [`ReceiverUrl::scrub`].
    fn secret_parts(&self) -> Vec<String> {
        let mut parts = vec![self.uri.to_string()];
        if let Some(path) = self.uri.path_and_query()
            && path.as_str() != "/"
        {
            parts.push(path.as_str().to_owned());
        }
        if let Some(authority) = self.uri.authority()
            && let Some((user_info, _)) = authority.as_str().rsplit_once('@')
        {
            parts.push(user_info.to_owned());
        }
        parts
    }

    /// `message` with the URL's path, query and user info cut out. The HTTP and TLS stacks do
    /// not put them in their errors today; this keeps it so if one ever does.
    pub fn scrub(&self, message: &str) -> String {
        let mut message = message.to_owned();
        for part in self.secret_parts() {
            if !part.is_empty() {
                message = message.replace(&part, "…");
            }
        }
        message
    }
}

/// The URLs of a `--notify-file`: one per line; blank lines and lines starting with `#` are
/// skipped. A bad line is reported by its number, never by its content.
pub fn read_file(path: &Path) -> Result<Vec<ReceiverUrl>, ReceiverError> {
    let failed = |why: String| ReceiverError::File {
        path: path.to_owned(),
        why,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let metadata = file.metadata().map_err(|e| failed(e.to_string()))?;
    if !metadata.is_file() {
        return Err(failed("not a regular file".to_owned()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| failed(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_SIZE {
        return Err(failed(format!(
            "larger than {} KiB; it should hold one URL a line",
            MAX_FILE_SIZE / 1024
        )));
    }
    let text = String::from_utf8(bytes).map_err(|_| failed("not UTF-8 text".to_owned()))?;
    let mut urls = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let place = format!("--notify-file {} line {}", path.display(), index + 1);
        urls.push(ReceiverUrl::parse(line, &place)?);
    }
    if urls.is_empty() {
        return Err(failed(
            "holds no URL (one http:// or https:// URL a line; # starts a comment)".to_owned(),
        ));
    }
    Ok(urls)
}

/// Every webhook: the `--notify` URLs in order, then each `--notify-file`'s.
pub fn collect(urls: &[String], files: &[PathBuf]) -> Result<Vec<ReceiverUrl>, ReceiverError> {
    let mut receivers = urls
        .iter()
        .enumerate()
        .map(|(i, url)| ReceiverUrl::parse(url, &format!("--notify URL {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    for file in files {
        receivers.extend(read_file(file)?);
    }
    Ok(receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "T0KEN-s3cr3t";

    #[test]
    fn urls_are_named_by_scheme_and_host_and_bad_ones_never_quoted() {
        let url = ReceiverUrl::parse(
            &format!("https://bot:{TOKEN}@hooks.example.com/x/{TOKEN}?t={TOKEN}"),
            "p",
        )
        .unwrap();
        assert_eq!(url.public, "https://hooks.example.com");
        assert_eq!(url.scheme, Scheme::Https);
        assert!(!format!("{url:?}").contains(TOKEN));
        let url = ReceiverUrl::parse(&format!("http://127.0.0.1:8080/{TOKEN}"), "p").unwrap();
        assert_eq!(url.public, "http://127.0.0.1:8080");
        assert_eq!(url.scheme, Scheme::Http);
        for (text, why) in [
            (format!("ftp://h/{TOKEN}"), "only http:// and https://"),
            (format!("hooks.example.com/{TOKEN}"), "not a URL"),
            (format!("/{TOKEN}"), "no scheme"),
            (format!("https://exa mple/{TOKEN}"), "not a URL"),
        ] {
            let error = ReceiverUrl::parse(&text, "--notify URL 2")
                .unwrap_err()
                .to_string();
            assert!(error.starts_with("--notify URL 2: "), "{error}");
            assert!(error.contains(why), "{error}");
            assert!(!error.contains(TOKEN), "{error}");
        }
    }

    #[test]
    fn scrubbing_cuts_the_path_query_and_user_info_out_of_messages() {
        let url = ReceiverUrl::parse(
            &format!("https://bot:{TOKEN}@h.example/hook/{TOKEN}?k={TOKEN}"),
            "p",
        )
        .unwrap();
        let message = format!(
            "error sending to https://bot:{TOKEN}@h.example/hook/{TOKEN}?k={TOKEN}: at /hook/{TOKEN}?k={TOKEN}"
        );
        let scrubbed = url.scrub(&message);
        assert!(!scrubbed.contains(TOKEN), "{scrubbed}");
        assert!(scrubbed.starts_with("error sending to "), "{scrubbed}");
    }

    #[test]
    fn a_notify_file_has_one_url_a_line_comments_and_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hooks");
        std::fs::write(
            &path,
            format!("# team chat\n\n  https://a.example/{TOKEN}  \r\nhttp://b.example:81/x\n"),
        )
        .unwrap();
        let urls = collect(
            &[format!("https://c.example/{TOKEN}")],
            std::slice::from_ref(&path),
        )
        .unwrap();
        let public: Vec<&str> = urls.iter().map(|u| u.public.as_str()).collect();
        assert_eq!(
            public,
            [
                "https://c.example",
                "https://a.example",
                "http://b.example:81"
            ]
        );
        assert_eq!(urls[1].uri.path(), format!("/{TOKEN}"));

        std::fs::write(
            &path,
            format!("# ok\nhttps://a.example/x\nhttps//{TOKEN}\n"),
        )
        .unwrap();
        let error = read_file(&path).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("--notify-file {} line 3: ", path.display())),
            "{error}"
        );
        assert!(!error.contains(TOKEN), "{error}");

        std::fs::write(&path, "# nothing yet\n\n").unwrap();
        assert!(
            read_file(&path)
                .unwrap_err()
                .to_string()
                .contains("holds no URL")
        );
        let missing = dir.path().join("missing");
        let error = read_file(&missing).unwrap_err().to_string();
        assert!(
            error.contains("missing") && error.contains("No such file"),
            "{error}"
        );
        let error = read_file(dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a regular file"), "{error}");
        std::fs::write(&path, vec![b'#'; 70 * 1024]).unwrap();
        assert!(
            read_file(&path)
                .unwrap_err()
                .to_string()
                .contains("larger than 64 KiB")
        );
    }
}
