//! sshd on a loopback port for root, started by a test: its own host key, client keys made
//! here and authorized, a known_hosts file with the host key, no password logins.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::process::{Running, free_port, require_root, run_ok, wait_for_port};
use super::require_tool;

/// A running sshd and the directory of its keys.
pub struct Sshd {
    dir: tempfile::TempDir,
    _sshd: Running,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Sshd {
    /// Starts sshd accepting the keys `client_keys` (made here, named so in [`Sshd::dir`]),
    /// plus `extra_keys` made but not authorized; or `None` (skipped, with a printed reason)
    /// without sshd, ssh, ssh-keygen or root.
    pub fn start(test: &str, client_keys: &[&str], extra_keys: &[&str]) -> Option<Sshd> {
        let sshd = Some(PathBuf::from("/usr/sbin/sshd"))
            .filter(|p| p.is_file())
            .or_else(|| require_tool(test, "sshd", "openssh-server"))?;
        require_tool(test, "ssh", "openssh-client")?;
        require_tool(test, "ssh-keygen", "openssh-client")?;
        if !require_root(test) {
            return None;
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path();
        let keys = ["host_key"]
            .iter()
            .chain(client_keys)
            .chain(extra_keys)
            .copied();
        for key in keys {
            run_ok(
                "ssh-keygen",
                &["-q", "-t", "ed25519", "-N", "", "-C", key, "-f", key],
                path,
            );
        }
        let authorized: String = client_keys
            .iter()
            .map(|key| std::fs::read_to_string(path.join(format!("{key}.pub"))).expect("key"))
            .collect();
        std::fs::write(path.join("authorized_keys"), authorized).expect("authorized_keys");
        let port = free_port();
        std::fs::write(
            path.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {dir}/host_key\n\
                 AuthorizedKeysFile {dir}/authorized_keys\nPidFile {dir}/sshd.pid\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
                dir = path.display()
            ),
        )
        .expect("write sshd_config");
        // sshd's privilege separation directory (the Debian service creates it at boot).
        std::fs::create_dir_all("/run/sshd").expect("creating /run/sshd");
        let log = std::fs::File::create(path.join("sshd.log")).expect("sshd log");
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(path.join("sshd_config"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting sshd");
        let sshd = Running(child);
        wait_for_port(port);
        let server = Sshd {
            dir,
            _sshd: sshd,
            port,
        };
        server.write_known_hosts("known_hosts", "host_key.pub");
        Some(server)
    }

    /// The directory of the keys and files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `file`: a known_hosts line for this server's address with the public key
    /// `public_key` (a file of [`Sshd::dir`]).
    pub fn write_known_hosts(&self, file: &str, public_key: &str) -> PathBuf {
        let key = std::fs::read_to_string(self.dir().join(public_key)).expect("host key");
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let path = self.dir().join(file);
        std::fs::write(
            &path,
            format!("[127.0.0.1]:{} {}\n", self.port, key.join(" ")),
        )
        .expect("write known_hosts");
        path
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sshd.log")).unwrap_or_default()
    }
}
