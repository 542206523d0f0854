//! Which Docker engine to reach, resolved from flags, environment and `~/.docker` exactly as the docker CLI resolves it.
//!
//! The docker CLI's rules (docker/cli `cli/command/cli.go` `resolveContextName`, `cli/flags`
//! and `cli/context/docker`), in precedence order:
//!
//! 1. `--context NAME`;
//! 2. `DOCKER_HOST` set: the `default` context;
//! 3. `DOCKER_CONTEXT`;
//! 4. `currentContext` in `$DOCKER_CONFIG/config.json` (`DOCKER_CONFIG` defaults to
//!    `~/.docker`);
//! 5. the `default` context.
//!
//! The `default` context is `DOCKER_HOST` (or the local socket), with TLS when
//! `DOCKER_TLS_VERIFY` (verify the engine) or `DOCKER_TLS` (encrypt only) is set, the files
//! `ca.pem`, `cert.pem` and `key.pem` taken from `DOCKER_CERT_PATH` (default `~/.docker`) when
//! they exist. A named context is read from
//! `$DOCKER_CONFIG/contexts/meta/<sha256 of the name>/meta.json` (`Endpoints.docker.Host`,
//! `SkipTLSVerify`) with its TLS files in `contexts/tls/<sha256 of the name>/docker/`; it uses
//! TLS when it has TLS files or skips verification.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// The local engine's socket when nothing else is configured.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";
/// The context name that means "DOCKER_HOST or the local socket".
pub const DEFAULT_CONTEXT: &str = "default";

/// What the resolution reads: the `--context` flag and the environment. Gathered in one value
/// so that tests resolve against temp directories without touching the process environment.
#[derive(Debug, Clone, Default)]
pub struct EndpointInputs {
    /// `--context NAME`.
    pub context_flag: Option<String>,
    /// `DOCKER_HOST`.
    pub docker_host: Option<String>,
    /// `DOCKER_CONTEXT`.
    pub docker_context: Option<String>,
    /// `DOCKER_CONFIG`.
    pub docker_config: Option<PathBuf>,
    /// `DOCKER_TLS_VERIFY`.
    pub docker_tls_verify: Option<String>,
    /// `DOCKER_TLS`.
    pub docker_tls: Option<String>,
    /// `DOCKER_CERT_PATH`.
    pub docker_cert_path: Option<PathBuf>,
    /// `HOME`, for the `~/.docker` defaults.
    pub home: Option<PathBuf>,
}

impl EndpointInputs {
    /// The inputs of this process: `context_flag` plus its environment. Empty variables count
    /// as unset, as in the docker CLI.
    pub fn from_env(context_flag: Option<String>) -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EndpointInputs {
            context_flag: context_flag.filter(|c| !c.is_empty()),
            docker_host: var("DOCKER_HOST"),
            docker_context: var("DOCKER_CONTEXT"),
            docker_config: var("DOCKER_CONFIG").map(PathBuf::from),
            docker_tls_verify: var("DOCKER_TLS_VERIFY"),
            docker_tls: var("DOCKER_TLS"),
            docker_cert_path: var("DOCKER_CERT_PATH").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
        }
    }

    /// `$DOCKER_CONFIG`, else `~/.docker`.
    fn config_dir(&self) -> Result<PathBuf, EndpointError> {
        match (&self.docker_config, &self.home) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(home)) => Ok(home.join(".docker")),
            (None, None) => Err(EndpointError::NoConfigDir),
        }
    }
}

/// Where the context name came from, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextSource {
    /// `--context`.
    Flag,
    /// `DOCKER_CONTEXT`.
    Env,
    /// `currentContext` in config.json.
    ConfigFile,
}

impl fmt::Display for ContextSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ContextSource::Flag => "--context",
            ContextSource::Env => "DOCKER_CONTEXT",
            ContextSource::ConfigFile => "currentContext in config.json",
        })
    }
}

/// Where the endpoint came from, for messages (`connecting to … (context "ci")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointOrigin {
    /// Nothing configured: the local socket.
    LocalSocket,
    /// `DOCKER_HOST`.
    DockerHost,
    /// A named context.
    Context {
        /// The context's name.
        name: String,
        /// How it was chosen.
        source: ContextSource,
    },
}

impl fmt::Display for EndpointOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndpointOrigin::LocalSocket => f.write_str("the local socket"),
            EndpointOrigin::DockerHost => f.write_str("DOCKER_HOST"),
            EndpointOrigin::Context { name, source } => {
                write!(f, "context {name:?} (from {source})")
            }
        }
    }
}

/// TLS for a `tcp://` endpoint. The files are read when connecting; a missing optional file is
/// simply not used, as in the docker CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the engine's certificate; without it, the system's roots.
    pub ca: Option<PathBuf>,
    /// The client certificate and its key (both or neither).
    pub client: Option<(PathBuf, PathBuf)>,
    /// Check the engine's certificate (`DOCKER_TLS_VERIFY`; a context without `SkipTLSVerify`).
    pub verify: bool,
}

impl TlsFiles {
    /// The files present in `dir` (`ca.pem`, `cert.pem`, `key.pem`).
    fn in_dir(dir: &Path, verify: bool) -> Self {
        let present = |name: &str| Some(dir.join(name)).filter(|p| p.is_file());
        TlsFiles {
            ca: present("ca.pem"),
            client: present("cert.pem").zip(present("key.pem")),
            verify,
        }
    }

    fn is_empty(&self) -> bool {
        self.ca.is_none() && self.client.is_none()
    }
}

/// An `ssh://[user@]host[:port][/socket]` endpoint, reached by running
/// `ssh [-l user] [-p port] -- host docker system dial-stdio` as the docker CLI does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshTarget {
    /// `-l user`.
    pub user: Option<String>,
    /// The host (or an ssh config `Host` alias).
    pub host: String,
    /// `-p port`.
    pub port: Option<u16>,
    /// The remote engine's socket, when the URL has a path (`docker --host unix://PATH`).
    pub socket: Option<String>,
}

impl SshTarget {
    /// The arguments after `ssh`, exactly as the docker CLI builds them
    /// (`cli/connhelper`: a connect timeout, no tty, `-l`/`-p`, `--`, host, remote command).
    pub fn ssh_args(&self) -> Vec<String> {
        let mut args = vec![
            "-o".to_owned(),
            "ConnectTimeout=30".to_owned(),
            "-T".to_owned(),
        ];
        if let Some(user) = &self.user {
            args.extend(["-l".to_owned(), user.clone()]);
        }
        if let Some(port) = self.port {
            args.extend(["-p".to_owned(), port.to_string()]);
        }
        args.extend(["--".to_owned(), self.host.clone(), "docker".to_owned()]);
        if let Some(socket) = &self.socket {
            args.push(format!("--host=unix://{socket}"));
        }
        args.extend(["system".to_owned(), "dial-stdio".to_owned()]);
        args
    }
}

/// The engine to reach and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A local socket.
    Unix {
        /// Its path.
        socket: PathBuf,
    },
    /// `tcp://host:port`, with TLS or plain HTTP.
    Tcp {
        /// The host name or address (the name the engine's certificate must hold).
        host: String,
        /// The port.
        port: u16,
        /// TLS, when the endpoint uses it.
        tls: Option<TlsFiles>,
    },
    /// Over ssh.
    Ssh(SshTarget),
}

impl Endpoint {
    /// Reconciles run at once when `run --concurrency` is not given. Swarm's manager takes
    /// concurrent writes well: 5,000 creates over the local socket took 8.2 s with 8 in flight,
    /// 5.0 s with 64 and 4.0 s with 128, and the engine spent less CPU the more were in flight
    /// (10.1, 5.7, 4.3 s: its scheduler and allocator passes cost by the time a burst lasts),
    /// measured by the arrival bench. Over ssh every connection is an ssh session of its own
    /// (a child `ssh` running `docker system dial-stdio`), and sshd lets only 10 sessions
    /// authenticate at once by default (`MaxStartups 10:30:100`, dropping others at random):
    /// there, 8.
    pub fn default_concurrency(&self) -> usize {
        match self {
            Endpoint::Unix { .. } | Endpoint::Tcp { .. } => 64,
            Endpoint::Ssh(_) => 8,
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix { socket } => write!(f, "unix://{}", socket.display()),
            Endpoint::Tcp { host, port, tls } => {
                let scheme = if tls.is_some() { "https" } else { "http" };
                if host.contains(':') {
                    write!(f, "{scheme}://[{host}]:{port}")
                } else {
                    write!(f, "{scheme}://{host}:{port}")
                }
            }
            Endpoint::Ssh(target) => {
                f.write_str("ssh://")?;
                if let Some(user) = &target.user {
                    write!(f, "{user}@")?;
                }
                if target.host.contains(':') {
                    write!(f, "[{}]", target.host)?;
                } else {
                    f.write_str(&target.host)?;
                }
                if let Some(port) = target.port {
                    write!(f, ":{port}")?;
                }
                if let Some(socket) = &target.socket {
                    f.write_str(socket)?;
                }
                Ok(())
            }
        }
    }
}

/// The resolved endpoint and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedEndpoint {
    /// The engine to reach.
    pub endpoint: Endpoint,
    /// Why this one.
    pub origin: EndpointOrigin,
}

/// Why no endpoint could be resolved. Messages name the context, variable or file and what to
/// do; they never quote a file's contents.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Neither `DOCKER_CONFIG` nor `HOME` is set.
    #[error(
        "cannot find the docker configuration directory: set DOCKER_CONFIG or HOME \
         (or DOCKER_HOST to skip contexts)"
    )]
    NoConfigDir,
    /// A file exists but could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the JSON the docker CLI writes.
    #[error("{}: not a valid docker CLI file ({message}); fix or remove it", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// The decoder's message (position and kind of error, never the file's text).
        message: String,
    },
    /// The named context does not exist.
    #[error(
        "context {name:?} (from {chosen_by}) not found: no {}; see `docker context ls`",
        meta.display()
    )]
    UnknownContext {
        /// Its name.
        name: String,
        /// How it was chosen.
        chosen_by: ContextSource,
        /// The metadata file looked for.
        meta: PathBuf,
    },
    /// The context has no docker endpoint.
    #[error("context {name:?}: {} has no Endpoints.docker.Host", meta.display())]
    NoDockerEndpoint {
        /// Its name.
        name: String,
        /// Its metadata file.
        meta: PathBuf,
    },
    /// A host that is not a docker host URL.
    #[error(
        "{origin}: {host} is not a docker host: {reason} \
         (use unix:///path, tcp://host:port or ssh://[user@]host[:port])"
    )]
    BadHost {
        /// Where it was given.
        origin: EndpointOrigin,
        /// The host, without any password it held.
        host: String,
        /// What is wrong.
        reason: String,
    },
}

/// `config.json`: only the key that matters here.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(rename = "currentContext", default)]
    current_context: Option<String>,
}

/// A context's `meta.json`: only the docker endpoint.
#[derive(Deserialize)]
struct ContextMeta {
    #[serde(rename = "Endpoints", default)]
    endpoints: ContextEndpoints,
}

#[derive(Deserialize, Default)]
struct ContextEndpoints {
    docker: Option<DockerEndpointMeta>,
}

#[derive(Deserialize)]
struct DockerEndpointMeta {
    #[serde(rename = "Host", default)]
    host: Option<String>,
    #[serde(rename = "SkipTLSVerify", default)]
    skip_tls_verify: bool,
}

/// Resolves the endpoint as the docker CLI does (see the module documentation).
pub fn resolve(inputs: &EndpointInputs) -> Result<ResolvedEndpoint, EndpointError> {
    let (name, source) = if let Some(name) = &inputs.context_flag {
        (name.clone(), ContextSource::Flag)
    } else if inputs.docker_host.is_some() {
        return default_context(inputs);
    } else if let Some(name) = &inputs.docker_context {
        (name.clone(), ContextSource::Env)
    } else {
        match current_context(inputs)? {
            Some(name) => (name, ContextSource::ConfigFile),
            None => return default_context(inputs),
        }
    };
    if name == DEFAULT_CONTEXT {
        return default_context(inputs);
    }
    named_context(inputs, name, source)
}

/// `currentContext` from config.json, if the file exists and names one.
fn current_context(inputs: &EndpointInputs) -> Result<Option<String>, EndpointError> {
    let path = inputs.config_dir()?.join("config.json");
    let Some(text) = read_if_exists(&path)? else {
        return Ok(None);
    };
    let config: ConfigFile = parse_json(&path, &text)?;
    Ok(config.current_context.filter(|c| !c.is_empty()))
}

/// `DOCKER_HOST` (or the local socket) with the `DOCKER_TLS*` settings.
fn default_context(inputs: &EndpointInputs) -> Result<ResolvedEndpoint, EndpointError> {
    let verify = inputs.docker_tls_verify.is_some();
    let tls = if verify || inputs.docker_tls.is_some() {
        let dir = match &inputs.docker_cert_path {
            Some(dir) => dir.clone(),
            None => inputs.config_dir()?,
        };
        Some(TlsFiles::in_dir(&dir, verify))
    } else {
        None
    };
    let Some(host) = &inputs.docker_host else {
        return Ok(ResolvedEndpoint {
            endpoint: Endpoint::Unix {
                socket: PathBuf::from(DEFAULT_SOCKET),
            },
            origin: EndpointOrigin::LocalSocket,
        });
    };
    let origin = EndpointOrigin::DockerHost;
    let endpoint = parse_host(host, tls, &origin)?;
    Ok(ResolvedEndpoint { endpoint, origin })
}

/// A named context from the CLI's context store.
fn named_context(
    inputs: &EndpointInputs,
    name: String,
    source: ContextSource,
) -> Result<ResolvedEndpoint, EndpointError> {
    let contexts = inputs.config_dir()?.join("contexts");
    let id = hex_sha256(&name);
    let meta_path = contexts.join("meta").join(&id).join("meta.json");
    let Some(text) = read_if_exists(&meta_path)? else {
        return Err(EndpointError::UnknownContext {
            name,
            chosen_by: source,
            meta: meta_path,
        });
    };
    let meta: ContextMeta = parse_json(&meta_path, &text)?;
    let Some(docker) = meta.endpoints.docker.filter(|d| d.host.is_some()) else {
        return Err(EndpointError::NoDockerEndpoint {
            name,
            meta: meta_path,
        });
    };
    let host = docker.host.unwrap_or_default();
    let files = TlsFiles::in_dir(
        &contexts.join("tls").join(&id).join("docker"),
        !docker.skip_tls_verify,
    );
    // As cli/context/docker: TLS when the context holds TLS material or skips verification.
    let tls = (!files.is_empty() || docker.skip_tls_verify).then_some(files);
    let origin = EndpointOrigin::Context { name, source };
    let endpoint = parse_host(&host, tls, &origin)?;
    Ok(ResolvedEndpoint { endpoint, origin })
}

/// Parses a docker host URL (`unix://`, `tcp://`, `http://`, `ssh://`). A `tcp://` host
/// without a port gets 2376 with TLS and 2375 without, as in the docker CLI.
pub fn parse_host(
    host: &str,
    tls: Option<TlsFiles>,
    origin: &EndpointOrigin,
) -> Result<Endpoint, EndpointError> {
    let bad = |reason: &str| EndpointError::BadHost {
        origin: origin.clone(),
        host: without_password(host),
        reason: reason.to_owned(),
    };
    let Some((scheme, rest)) = host.split_once("://") else {
        return Err(bad("no scheme"));
    };
    match scheme {
        "unix" => {
            let socket = if rest.is_empty() {
                DEFAULT_SOCKET
            } else {
                rest
            };
            Ok(Endpoint::Unix {
                socket: PathBuf::from(socket),
            })
        }
        "tcp" | "http" => {
            let url = url::Url::parse(&format!("tcp://{rest}")).map_err(|e| bad(&e.to_string()))?;
            if !matches!(url.path(), "" | "/") || url.query().is_some() {
                return Err(bad("a tcp:// host takes no path"));
            }
            let Some(host_name) = url.host_str().filter(|h| !h.is_empty()) else {
                return Err(bad("no host name"));
            };
            let default_port = if tls.is_some() { 2376 } else { 2375 };
            Ok(Endpoint::Tcp {
                host: host_name.trim_matches(['[', ']']).to_owned(),
                port: url.port().unwrap_or(default_port),
                tls,
            })
        }
        "ssh" => {
            let url = url::Url::parse(host).map_err(|e| bad(&e.to_string()))?;
            if url.password().is_some() {
                return Err(bad(
                    "a password in the URL is not supported; use an ssh key or agent",
                ));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(bad("an ssh:// host takes no query or fragment"));
            }
            let Some(host_name) = url.host_str().filter(|h| !h.is_empty()) else {
                return Err(bad("no host name"));
            };
            let user = Some(url.username()).filter(|u| !u.is_empty());
            let socket = Some(url.path()).filter(|p| !matches!(*p, "" | "/"));
            Ok(Endpoint::Ssh(SshTarget {
                user: user.map(str::to_owned),
                // ssh takes an IPv6 address bare, not in URL brackets.
                host: host_name.trim_matches(['[', ']']).to_owned(),
                port: url.port(),
                socket: socket.map(str::to_owned),
            }))
        }
        _ => Err(bad(&format!("unsupported scheme {scheme:?}"))),
    }
}

/// The host for a message: `user:password@` becomes `user:…@`.
fn without_password(host: &str) -> String {
    let Some((scheme, rest)) = host.split_once("://") else {
        return host.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, after)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:…@{after}")
        }
        _ => host.to_owned(),
    }
}

/// The context store's directory name for a context: the hex SHA-256 of its name.
pub fn hex_sha256(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_if_exists(path: &Path) -> Result<Option<String>, EndpointError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(EndpointError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, EndpointError> {
    serde_json::from_str(text).map_err(|e| EndpointError::Malformed {
        path: path.to_owned(),
        // serde_json's Display can quote a piece of the input (`invalid type: string "…"`);
        // the category and position say enough.
        message: format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temp HOME with an empty `.docker`.
    struct Home {
        dir: tempfile::TempDir,
    }

    impl Home {
        fn new() -> Self {
            let dir = tempfile::tempdir().expect("temp dir");
            std::fs::create_dir_all(dir.path().join(".docker")).expect("mkdir");
            Home { dir }
        }

        fn docker_dir(&self) -> PathBuf {
            self.dir.path().join(".docker")
        }

        fn inputs(&self) -> EndpointInputs {
            EndpointInputs {
                home: Some(self.dir.path().to_owned()),
                ..EndpointInputs::default()
            }
        }

        fn set_current(&self, name: &str) {
            std::fs::write(
                self.docker_dir().join("config.json"),
                format!(r#"{{"auths": {{}}, "currentContext": "{name}"}}"#),
            )
            .expect("write config");
        }

        /// Writes a context the way `docker context create` lays it out.
        fn add_context(&self, config_dir: &Path, name: &str, host: &str, tls: &[&str], skip: bool) {
            let id = hex_sha256(name);
            let meta = config_dir.join("contexts/meta").join(&id);
            std::fs::create_dir_all(&meta).expect("mkdir");
            std::fs::write(
                meta.join("meta.json"),
                format!(
                    r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
                ),
            )
            .expect("write meta");
            if !tls.is_empty() {
                let dir = config_dir.join("contexts/tls").join(&id).join("docker");
                std::fs::create_dir_all(&dir).expect("mkdir");
                for file in tls {
                    std::fs::write(dir.join(file), "pem").expect("write pem");
                }
            }
        }
    }

    fn tcp(host: &str, port: u16, tls: Option<TlsFiles>) -> Endpoint {
        Endpoint::Tcp {
            host: host.to_owned(),
            port,
            tls,
        }
    }

    #[test]
    fn nothing_configured_is_the_local_socket() {
        let home = Home::new();
        let resolved = resolve(&home.inputs()).expect("resolves");
        assert_eq!(
            resolved.endpoint,
            Endpoint::Unix {
                socket: PathBuf::from(DEFAULT_SOCKET)
            }
        );
        assert_eq!(resolved.origin, EndpointOrigin::LocalSocket);
    }

    #[test]
    fn docker_host_plain_tcp_and_unix() {
        let home = Home::new();
        let mut inputs = home.inputs();
        inputs.docker_host = Some("tcp://10.0.0.5:2375".into());
        assert_eq!(
            resolve(&inputs).expect("tcp").endpoint,
            tcp("10.0.0.5", 2375, None)
        );
        inputs.docker_host = Some("tcp://manager".into());
        assert_eq!(
            resolve(&inputs).expect("no port").endpoint,
            tcp("manager", 2375, None)
        );
        inputs.docker_host = Some("unix:///run/user/1000/docker.sock".into());
        assert_eq!(
            resolve(&inputs).expect("unix").endpoint,
            Endpoint::Unix {
                socket: "/run/user/1000/docker.sock".into()
            }
        );
    }

    #[test]
    fn tls_verify_uses_the_cert_path_files_and_port_2376() {
        let home = Home::new();
        let certs = tempfile::tempdir().expect("temp dir");
        for file in ["ca.pem", "cert.pem", "key.pem"] {
            std::fs::write(certs.path().join(file), "pem").expect("write");
        }
        let mut inputs = home.inputs();
        inputs.docker_host = Some("tcp://10.0.0.5".into());
        inputs.docker_tls_verify = Some("1".into());
        inputs.docker_cert_path = Some(certs.path().to_owned());
        let expected = TlsFiles {
            ca: Some(certs.path().join("ca.pem")),
            client: Some((certs.path().join("cert.pem"), certs.path().join("key.pem"))),
            verify: true,
        };
        let resolved = resolve(&inputs).expect("resolves");
        assert_eq!(resolved.endpoint, tcp("10.0.0.5", 2376, Some(expected)));
        assert_eq!(resolved.endpoint.to_string(), "https://10.0.0.5:2376");
    }

    #[test]
    fn tls_cert_path_defaults_to_dot_docker_and_missing_files_are_skipped() {
        let home = Home::new();
        std::fs::write(home.docker_dir().join("ca.pem"), "pem").expect("write");
        // A certificate without its key is not a client identity.
        std::fs::write(home.docker_dir().join("cert.pem"), "pem").expect("write");
        let mut inputs = home.inputs();
        inputs.docker_host = Some("tcp://10.0.0.5:2376".into());
        inputs.docker_tls_verify = Some("1".into());
        let Endpoint::Tcp { tls: Some(tls), .. } = resolve(&inputs).expect("resolves").endpoint
        else {
            panic!("expected TLS");
        };
        assert_eq!(tls.ca, Some(home.docker_dir().join("ca.pem")));
        assert_eq!(tls.client, None);
        assert!(tls.verify);
    }

    #[test]
    fn docker_tls_alone_encrypts_without_verifying() {
        let home = Home::new();
        let mut inputs = home.inputs();
        inputs.docker_host = Some("tcp://10.0.0.5:2376".into());
        inputs.docker_tls = Some("1".into());
        let Endpoint::Tcp { tls: Some(tls), .. } = resolve(&inputs).expect("resolves").endpoint
        else {
            panic!("expected TLS");
        };
        assert!(!tls.verify);
    }

    #[test]
    fn fewer_reconciles_run_at_once_over_ssh() {
        let home = Home::new();
        let mut inputs = home.inputs();
        let mut default_for = |host: &str| {
            inputs.docker_host = Some(host.into());
            resolve(&inputs)
                .expect("resolves")
                .endpoint
                .default_concurrency()
        };
        assert_eq!(default_for("unix:///var/run/docker.sock"), 64);
        assert_eq!(default_for("tcp://10.0.0.5:2376"), 64);
        // Each connection is an ssh session; sshd admits 10 at once by default.
        assert_eq!(default_for("ssh://deploy@manager.example"), 8);
    }

    #[test]
    fn ssh_host_is_split_as_the_cli_does() {
        let home = Home::new();
        let mut inputs = home.inputs();
        inputs.docker_host = Some("ssh://deploy@manager.example:2222".into());
        let Endpoint::Ssh(target) = resolve(&inputs).expect("resolves").endpoint else {
            panic!("expected ssh");
        };
        assert_eq!(
            target.ssh_args(),
            [
                "-o",
                "ConnectTimeout=30",
                "-T",
                "-l",
                "deploy",
                "-p",
                "2222",
                "--",
                "manager.example",
                "docker",
                "system",
                "dial-stdio"
            ]
        );
        inputs.docker_host = Some("ssh://[fd00::7]:2200".into());
        assert_eq!(
            resolve(&inputs).expect("ipv6").endpoint,
            Endpoint::Ssh(SshTarget {
                user: None,
                host: "fd00::7".into(),
                port: Some(2200),
                socket: None,
            })
        );
        inputs.docker_host = Some("ssh://manager/run/docker.sock".into());
        let Endpoint::Ssh(target) = resolve(&inputs).expect("resolves").endpoint else {
            panic!("expected ssh");
        };
        assert_eq!(
            target.ssh_args(),
            [
                "-o",
                "ConnectTimeout=30",
                "-T",
                "--",
                "manager",
                "docker",
                "--host=unix:///run/docker.sock",
                "system",
                "dial-stdio"
            ]
        );
    }

    #[test]
    fn bad_hosts_are_refused_without_echoing_a_password() {
        let home = Home::new();
        let mut inputs = home.inputs();
        inputs.docker_host = Some("ssh://deploy:hunter2secret@manager".into());
        let message = resolve(&inputs).expect_err("password").to_string();
        assert!(message.contains("password"), "{message}");
        assert!(message.contains("DOCKER_HOST"), "{message}");
        assert!(!message.contains("hunter2secret"), "{message}");
        for host in ["manager:2375", "fd://", "tcp://", "ssh://host?x=1"] {
            inputs.docker_host = Some(host.into());
            let error = resolve(&inputs).expect_err(host);
            assert!(
                matches!(error, EndpointError::BadHost { .. }),
                "{host}: {error}"
            );
        }
    }

    #[test]
    fn context_flag_wins_over_docker_host() {
        let home = Home::new();
        home.add_context(&home.docker_dir(), "ci", "tcp://10.0.0.9:2376", &[], false);
        let mut inputs = home.inputs();
        inputs.docker_host = Some("tcp://10.0.0.5:2375".into());
        inputs.context_flag = Some("ci".into());
        let resolved = resolve(&inputs).expect("resolves");
        assert_eq!(resolved.endpoint, tcp("10.0.0.9", 2376, None));
        assert_eq!(
            resolved.origin,
            EndpointOrigin::Context {
                name: "ci".into(),
                source: ContextSource::Flag
            }
        );
    }

    #[test]
    fn docker_host_wins_over_docker_context_and_current_context() {
        let home = Home::new();
        home.add_context(&home.docker_dir(), "ci", "tcp://10.0.0.9:2376", &[], false);
        home.set_current("ci");
        let mut inputs = home.inputs();
        inputs.docker_context = Some("ci".into());
        inputs.docker_host = Some("tcp://10.0.0.5:2375".into());
        let resolved = resolve(&inputs).expect("resolves");
        assert_eq!(resolved.endpoint, tcp("10.0.0.5", 2375, None));
        assert_eq!(resolved.origin, EndpointOrigin::DockerHost);
    }

    #[test]
    fn docker_context_wins_over_current_context() {
        let home = Home::new();
        home.add_context(&home.docker_dir(), "ci", "tcp://10.0.0.9:2376", &[], false);
        home.add_context(
            &home.docker_dir(),
            "prod",
            "ssh://root@10.0.0.7",
            &[],
            false,
        );
        home.set_current("prod");
        let mut inputs = home.inputs();
        assert!(matches!(
            resolve(&inputs).expect("current").endpoint,
            Endpoint::Ssh(SshTarget { ref host, .. }) if host == "10.0.0.7"
        ));
        inputs.docker_context = Some("ci".into());
        let resolved = resolve(&inputs).expect("env");
        assert_eq!(resolved.endpoint, tcp("10.0.0.9", 2376, None));
        assert!(matches!(
            resolved.origin,
            EndpointOrigin::Context {
                source: ContextSource::Env,
                ..
            }
        ));
    }

    #[test]
    fn the_default_context_by_name_is_docker_host_or_the_socket() {
        let home = Home::new();
        home.set_current("default");
        let mut inputs = home.inputs();
        assert_eq!(
            resolve(&inputs).expect("socket").origin,
            EndpointOrigin::LocalSocket
        );
        inputs.context_flag = Some("default".into());
        inputs.docker_host = Some("tcp://10.0.0.5:2375".into());
        assert_eq!(
            resolve(&inputs).expect("host").endpoint,
            tcp("10.0.0.5", 2375, None)
        );
    }

    #[test]
    fn docker_config_replaces_dot_docker() {
        let home = Home::new();
        let config = tempfile::tempdir().expect("temp dir");
        home.add_context(config.path(), "ci", "tcp://10.0.0.9:2376", &[], false);
        std::fs::write(
            config.path().join("config.json"),
            r#"{"currentContext":"ci"}"#,
        )
        .expect("write");
        let mut inputs = home.inputs();
        // Without DOCKER_CONFIG, ~/.docker has no config.json: the socket.
        assert_eq!(
            resolve(&inputs).expect("home").origin,
            EndpointOrigin::LocalSocket
        );
        inputs.docker_config = Some(config.path().to_owned());
        assert_eq!(
            resolve(&inputs).expect("config dir").endpoint,
            tcp("10.0.0.9", 2376, None)
        );
    }

    #[test]
    fn context_tls_files_turn_tls_on() {
        let home = Home::new();
        let dir = home.docker_dir();
        home.add_context(
            &dir,
            "tls",
            "tcp://10.0.0.9:2376",
            &["ca.pem", "cert.pem", "key.pem"],
            false,
        );
        home.add_context(&dir, "skip", "tcp://10.0.0.9:2376", &[], true);
        let mut inputs = home.inputs();
        inputs.context_flag = Some("tls".into());
        let tls_dir = dir
            .join("contexts/tls")
            .join(hex_sha256("tls"))
            .join("docker");
        assert_eq!(
            resolve(&inputs).expect("tls").endpoint,
            tcp(
                "10.0.0.9",
                2376,
                Some(TlsFiles {
                    ca: Some(tls_dir.join("ca.pem")),
                    client: Some((tls_dir.join("cert.pem"), tls_dir.join("key.pem"))),
                    verify: true,
                })
            )
        );
        inputs.context_flag = Some("skip".into());
        assert_eq!(
            resolve(&inputs).expect("skip").endpoint,
            tcp(
                "10.0.0.9",
                2376,
                Some(TlsFiles {
                    ca: None,
                    client: None,
                    verify: false,
                })
            )
        );
    }

    #[test]
    fn context_errors_name_the_context_and_file() {
        let home = Home::new();
        let mut inputs = home.inputs();
        inputs.context_flag = Some("nope".into());
        let message = resolve(&inputs).expect_err("unknown").to_string();
        assert!(message.contains("\"nope\""), "{message}");
        assert!(message.contains("--context"), "{message}");
        assert!(message.contains(&hex_sha256("nope")), "{message}");
        assert!(message.contains("docker context ls"), "{message}");

        home.set_current("gone");
        inputs.context_flag = None;
        let message = resolve(&inputs).expect_err("current").to_string();
        assert!(message.contains("currentContext"), "{message}");

        std::fs::write(
            home.docker_dir().join("config.json"),
            "{\"currentContext\": 4",
        )
        .expect("write");
        let error = resolve(&inputs).expect_err("malformed");
        assert!(matches!(error, EndpointError::Malformed { .. }), "{error}");
        assert!(error.to_string().contains("config.json"), "{error}");
    }

    #[test]
    fn context_names_hash_as_the_cli_stores_them() {
        // `docker context create ci` writes contexts/meta/<this>/meta.json.
        assert_eq!(
            hex_sha256("ci"),
            "1b158839f8aa339e89bb50b1603e90ec68e0fd5565fe10a7cb32729fddf7070a"
        );
    }
}
