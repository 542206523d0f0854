//! The remote's URL: parsed once, shown everywhere without credentials.

use std::fmt;

use super::error::GitError;

/// `--git-url`, with what may be shown kept apart from what may not. A password is never
/// shown; neither is the user name of an http(s) URL (`https://TOKEN@host/…` is how several
/// forges take a token). The user of an ssh URL (`git@host:repo`) is an account name and
/// stays.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteUrl {
    /// The URL gix connects to, credentials included.
    url: gix::Url,
    /// What is shown: the URL without credentials.
    shown: String,
    /// The credentials' text, scrubbed from any message that might quote them.
    secrets: Vec<String>,
}

impl RemoteUrl {
    /// Parses `--git-url`: `https://`, `http://`, `ssh://`, `user@host:path`, `git://`,
    /// `file://` or a local path.
    pub fn parse(input: &str) -> Result<RemoteUrl, GitError> {
        // The parser's message may quote the input (and so a password): only the fact is kept.
        let url = gix::url::parse(input).map_err(|_| GitError::InvalidUrl {
            reason: "not a git URL (https://, ssh://, user@host:path, git://, file://, or an \
                     absolute path)"
                .to_owned(),
        })?;
        // Remote helpers (`ext::…` runs a command) are not transports an operator should use.
        if !matches!(
            url.scheme,
            gix::url::Scheme::File
                | gix::url::Scheme::Git
                | gix::url::Scheme::Ssh
                | gix::url::Scheme::Http
                | gix::url::Scheme::Https
        ) {
            return Err(GitError::InvalidUrl {
                reason: "only https://, http://, ssh://, git:// and file:// remotes are supported"
                    .to_owned(),
            });
        }
        let mut secrets = Vec::new();
        let mut public = url.clone();
        if let Some(password) = public.set_password(None) {
            secrets.push(password);
        }
        let user_is_secret = matches!(
            public.scheme,
            gix::url::Scheme::Http | gix::url::Scheme::Https
        );
        if user_is_secret && let Some(user) = public.set_user(None) {
            secrets.push(user);
        }
        // Longest first, so that a secret containing another is replaced whole.
        secrets.retain(|s| !s.is_empty());
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        let shown = public.to_bstring().to_string();
        Ok(RemoteUrl {
            url,
            shown,
            secrets,
        })
    }

    /// The URL to connect to (credentials included: never show it).
    pub(crate) fn connect_url(&self) -> &gix::Url {
        &self.url
    }

    /// `text` with the credentials replaced by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "***");
            // gix may print the URL percent-encoded.
            let encoded = percent_encode(secret);
            if encoded != *secret {
                text = text.replace(&encoded, "***");
            }
        }
        text
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RemoteUrl({})", self.shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show() {
        let url =
            RemoteUrl::parse("https://oauth2:s3cr%2Ft@git.example.com/team/specs.git").unwrap();
        assert_eq!(url.to_string(), "https://git.example.com/team/specs.git");
        assert_eq!(
            format!("{url:?}"),
            "RemoteUrl(https://git.example.com/team/specs.git)"
        );
        let message = "could not reach https://oauth2:s3cr%2Ft@git.example.com (s3cr/t)";
        let scrubbed = url.scrub(message);
        assert!(!scrubbed.contains("s3cr"), "{scrubbed}");
        assert!(!scrubbed.contains("oauth2"), "{scrubbed}");

        let token_as_user = RemoteUrl::parse("https://ghp_token123@github.example/o/r").unwrap();
        assert_eq!(token_as_user.to_string(), "https://github.example/o/r");
        assert_eq!(token_as_user.scrub("ghp_token123 refused"), "*** refused");
    }

    #[test]
    fn an_ssh_user_is_an_account_and_stays() {
        let url = RemoteUrl::parse("git@forge.example:team/specs.git").unwrap();
        assert_eq!(url.to_string(), "git@forge.example:team/specs.git");
        let url = RemoteUrl::parse("ssh://deploy@forge.example:2222/specs.git").unwrap();
        assert_eq!(url.to_string(), "ssh://deploy@forge.example:2222/specs.git");
    }

    #[test]
    fn remote_helpers_are_refused() {
        assert!(RemoteUrl::parse("ext::sh -c touch% /tmp/pwned").is_err());
        assert!(RemoteUrl::parse("fd::17").is_err());
    }

    #[test]
    fn local_and_daemon_urls_parse() {
        assert_eq!(
            RemoteUrl::parse("file:///srv/git/specs.git")
                .unwrap()
                .to_string(),
            "file:///srv/git/specs.git"
        );
        assert_eq!(
            RemoteUrl::parse("git://127.0.0.1:9418/specs.git")
                .unwrap()
                .to_string(),
            "git://127.0.0.1:9418/specs.git"
        );
    }
}
