//! `import-compose` on hostile compose files (`tests/fixtures/hostile-compose/<case>/`), run as
//! the real binary: each case ends with exit 2, an error that says where and what, no secret
//! value in the output, and nothing written anywhere: not outside `--out`, and not inside it.

// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Held by the fixtures' `.env` files; must never be printed.
const SECRET: &str = "Hostile-Value-7731";

/// What the test does before running a case, in the sandbox (`repo/` holds the case's files,
/// `out/` is `--out`, `victim/` holds `authorized_keys`): special files are made here rather
/// than committed.
#[derive(Clone, Copy)]
enum Setup {
    None,
    /// `repo/<name>` → `target`.
    RepoSymlink(&'static str, &'static str),
    /// `repo/<name>` → a file outside the repository (`victim/authorized_keys`).
    RepoSymlinkOut(&'static str),
    /// `repo/<name>`: a FIFO nobody writes to.
    Fifo(&'static str),
    /// `repo/<name>`: a file of this many bytes.
    Big(&'static str, usize),
    /// 10,000 nested flow sequences appended to the compose file.
    DeepNesting,
    /// `out` → `victim`.
    OutIsSymlink,
    /// `out/<name>` → `victim/<target>`.
    OutSymlink(&'static str, &'static str),
}

struct Case {
    /// Directory under `tests/fixtures/hostile-compose/`.
    name: &'static str,
    setup: Setup,
    /// The compose file to give instead of the case's own (`/dev/zero`).
    compose: Option<&'static str>,
    /// The stack name.
    stack: &'static str,
    /// Where the error must point (after the sandbox path): `file:line:column`, or a path.
    location: &'static str,
    /// What the error must say.
    says: &'static str,
}

const fn case(
    name: &'static str,
    setup: Setup,
    location: &'static str,
    says: &'static str,
) -> Case {
    Case {
        name,
        setup,
        compose: None,
        stack: "s",
        location,
        says,
    }
}

fn cases() -> Vec<Case> {
    use Setup::*;
    let mut cases = vec![
        case(
            "service-key-traversal",
            None,
            "docker-compose.yml:3:3: services.../../../victim/authorized_keys",
            "invalid key: the name starts with `.`",
        ),
        case(
            "config-key-traversal",
            None,
            "docker-compose.yml:6:3: configs.../../../victim/pwned",
            "invalid key: the name starts with `.`",
        ),
        case(
            "config-name-traversal",
            None,
            "docker-compose.yml:8:11: configs.app.name",
            "invalid name: the name starts with `.`",
        ),
        case(
            "secret-name-traversal",
            None,
            "docker-compose.yml:7:11: secrets.key.name",
            "invalid name: the name starts with `.`",
        ),
        case(
            "secret-name-absolute",
            None,
            "docker-compose.yml:7:11: secrets.key.name",
            "invalid name: the name starts with `/`",
        ),
        case(
            "network-name-traversal",
            None,
            "docker-compose.yml:7:11: networks.back.name",
            "invalid name: the name starts with `.`",
        ),
        case(
            "volume-name-traversal",
            None,
            "docker-compose.yml:7:11: volumes.data.name",
            "invalid name: the name starts with `.`",
        ),
        case(
            "config-file-traversal",
            None,
            "docker-compose.yml:8:11: configs.stolen.file",
            "the path leads outside the compose file's directory",
        ),
        case(
            "secret-file-absolute",
            None,
            "docker-compose.yml:7:11: secrets.shadow.file",
            "an absolute path is not read",
        ),
        case(
            "env-file-traversal",
            None,
            "docker-compose.yml:4:15: services.web.env_file",
            "the path leads outside the compose file's directory",
        ),
        case(
            "symlink-out-of-repo",
            RepoSymlinkOut("linked.conf"),
            "docker-compose.yml:8:11: configs.linked.file",
            "the path leads outside the compose file's directory",
        ),
        case(
            "dev-zero-config",
            RepoSymlink("zero.conf", "/dev/zero"),
            "docker-compose.yml:8:11: configs.zero.file",
            "the path leads outside the compose file's directory",
        ),
        case(
            "fifo-secret",
            Fifo("key.fifo"),
            "docker-compose.yml:8:11: secrets.key.file",
            "not a regular file (a FIFO)",
        ),
        case(
            "oversize-config",
            Big("big.conf", 600 * 1024),
            "docker-compose.yml:8:11: configs.big.file",
            "larger than 512000 bytes, the limit for a config or secret",
        ),
        case(
            "oversize-env-file",
            Big("big.env", 2 * 1024 * 1024),
            "docker-compose.yml:5:15: services.web.env_file",
            "larger than 1048576 bytes, the limit for an env file",
        ),
        case(
            "out-is-symlink",
            OutIsSymlink,
            "out is a symlink",
            "the import writes only into real directories",
        ),
        case(
            "symlink-inside-out",
            OutSymlink("service.s_web.yaml", "authorized_keys"),
            "out/service.s_web.yaml is a symlink",
            "the import writes only into real directories",
        ),
        case(
            "symlink-dir-inside-out",
            OutSymlink("files", "."),
            "out/files is a symlink",
            "the import writes only into real directories",
        ),
        case(
            "alias-bomb",
            None,
            "docker-compose.yml:6:38",
            "over the parser's limits",
        ),
        case(
            "deep-nesting",
            DeepNesting,
            "docker-compose.yml:5:41",
            "recursion limit exceeded",
        ),
        case(
            "nested-interpolation",
            None,
            "docker-compose.yml:5:13",
            "`${…}` nested more than 10 deep",
        ),
        case(
            "required-message-hides-value",
            None,
            "docker-compose.yml:6:12",
            "required variable MISSING is missing a value",
        ),
        case(
            "typed-value-hides-value",
            None,
            "docker-compose.yml:7:17: services.web.healthcheck.interval",
            "not a duration",
        ),
        case(
            "interpolated-name-hides-value",
            None,
            "docker-compose.yml:8:11: configs.app.name",
            "invalid name: the name contains `/`",
        ),
        case(
            "control-characters-in-key",
            None,
            "docker-compose.yml:3:3: services.web\\u{1b}[2J\\u{1b}[H: invalid key",
            "the name contains `\\u{1b}`",
        ),
        case(
            "dot-env-syntax-hides-value",
            None,
            "repo/.env:2",
            "not `NAME=value` or a `#` comment",
        ),
        case(
            "env-file-syntax-hides-value",
            None,
            "docker-compose.yml:5:16: services.web.env_file[0]",
            "line 2 of the env file is not `NAME=value`",
        ),
        case(
            "dot-env-symlink-out",
            RepoSymlinkOut(".env"),
            "repo/.env",
            "the path leads outside the compose file's directory",
        ),
    ];
    cases.push(Case {
        compose: Some("/dev/zero"),
        ..case(
            "out-is-symlink",
            None,
            "/dev/zero",
            "not a regular file (a device)",
        )
    });
    cases.push(Case {
        stack: "../../victim",
        ..case("out-is-symlink", None, "", "invalid stack name")
    });
    cases
}

/// Runs `command` with its output in files; `None` (and the child killed) after `timeout`.
fn run_within(command: &mut Command, timeout: Duration) -> Option<std::process::Output> {
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let mut child = command
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Some(std::process::Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    })
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hostile-compose")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Every entry under `dir` (symlinks not followed): type, mode and content or link target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let mode = meta.permissions().mode();
            let what = if meta.file_type().is_symlink() {
                format!("link {:?}", std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                format!("dir {mode:o}")
            } else if meta.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                format!("file {mode:o} {} {:x}", bytes.len(), fnv(&bytes))
            } else {
                format!("special {mode:o}")
            };
            out.insert(path.strip_prefix(dir).unwrap().to_owned(), what);
        }
    }
    out
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn set_up(sandbox: &Path, repo: &Path, setup: Setup) {
    let victim = sandbox.join("victim");
    match setup {
        Setup::None => {}
        Setup::RepoSymlink(name, target) => {
            std::os::unix::fs::symlink(target, repo.join(name)).unwrap();
        }
        Setup::RepoSymlinkOut(name) => {
            std::os::unix::fs::symlink(victim.join("authorized_keys"), repo.join(name)).unwrap();
        }
        Setup::Fifo(name) => {
            let status = Command::new("mkfifo")
                .arg(repo.join(name))
                .status()
                .unwrap();
            assert!(status.success(), "mkfifo");
        }
        Setup::Big(name, size) => std::fs::write(repo.join(name), vec![b'x'; size]).unwrap(),
        Setup::DeepNesting => {
            let mut text = std::fs::read_to_string(repo.join("docker-compose.yml")).unwrap();
            text.push_str("x-deep: ");
            text.push_str(&"[".repeat(10_000));
            text.push_str(&"]".repeat(10_000));
            text.push('\n');
            std::fs::write(repo.join("docker-compose.yml"), text).unwrap();
        }
        Setup::OutIsSymlink => std::os::unix::fs::symlink(&victim, sandbox.join("out")).unwrap(),
        Setup::OutSymlink(name, target) => {
            std::fs::create_dir(sandbox.join("out")).unwrap();
            std::os::unix::fs::symlink(victim.join(target), sandbox.join("out").join(name))
                .unwrap();
        }
    }
}

#[test]
fn hostile_compose_files_get_a_located_error_and_write_nothing() {
    let mut failures = Vec::new();
    for case in cases() {
        let sandbox = tempfile::tempdir().unwrap();
        let sandbox = sandbox.path();
        let repo = sandbox.join("repo");
        copy_dir(&fixtures().join(case.name), &repo);
        std::fs::create_dir(sandbox.join("victim")).unwrap();
        std::fs::write(
            sandbox.join("victim/authorized_keys"),
            "ssh-ed25519 AAAAowner\n",
        )
        .unwrap();
        set_up(sandbox, &repo, case.setup);
        let before = snapshot(sandbox);
        let compose = case
            .compose
            .map_or_else(|| repo.join("docker-compose.yml"), PathBuf::from);
        let mut import = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
        import
            .arg("import-compose")
            .arg(&compose)
            .args(["--stack", case.stack, "--out"])
            .arg(sandbox.join("out"))
            // Only the fixtures' `.env` provides variables.
            .env_clear();
        // A FIFO or /dev/zero read naively would never end: the deadline fails the case.
        let Some(output) = run_within(&mut import, Duration::from_secs(60)) else {
            failures.push(format!("{}: did not finish within 60 s", case.name));
            continue;
        };
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let label = format!(
            "{} (--stack {}{})",
            case.name,
            case.stack,
            case.compose
                .map(|c| format!(", compose {c}"))
                .unwrap_or_default()
        );
        eprintln!("{label}: {}", stderr.trim_end());
        let mut fail = |what: String| failures.push(format!("{label}: {what}\n{stderr}"));
        if output.status.code() != Some(2) {
            fail(format!("exit {:?}, expected 2", output.status.code()));
        }
        let location = if case.location.starts_with('/') || case.location.is_empty() {
            case.location.to_owned()
        } else if case.location.starts_with("out") || case.location.starts_with("repo") {
            format!("{}", sandbox.join(case.location).display())
        } else {
            format!("{}/{}", repo.display(), case.location)
        };
        if !stderr.contains(&location) {
            fail(format!("no location `{location}`"));
        }
        if !stderr.contains(case.says) {
            fail(format!("does not say `{}`", case.says));
        }
        if stderr.contains(SECRET) || stdout.contains(SECRET) {
            fail("shows the secret value".to_owned());
        }
        if stderr.contains(|c: char| c.is_control() && c != '\n') {
            fail("prints control characters".to_owned());
        }
        if stderr.contains("panicked") {
            fail("panicked".to_owned());
        }
        let after = snapshot(sandbox);
        if after != before {
            let changed: Vec<_> = after
                .iter()
                .filter(|(k, v)| before.get(*k) != Some(v))
                .map(|(k, _)| k)
                .chain(before.keys().filter(|k| !after.contains_key(*k)))
                .collect();
            fail(format!("the sandbox changed: {changed:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
