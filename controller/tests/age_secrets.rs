//! Encrypted secrets in the spec directory (issue 19, item 5), on the real swarm: a secret from
//! `db.txt.age` and a service's `envFile: app.env.age`, encrypted by Debian's `age` CLI and
//! decrypted by the operator with `--age-identity`. The secret is named by the plaintext's
//! hash (so re-encrypting writes nothing), a broken `.age` file is a located error that keeps
//! the objects, and the plaintext shows up nowhere: not on disk, not in the status, not in the
//! log at `RUST_LOG=trace`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Swarm, TEST_IMAGE, condition, docker, docker_output, require_tool};

/// Generous: the machine is shared and loaded.
const CONVERGE: Duration = Duration::from_secs(120);

/// Removes this test's services (so their secrets are free), then the secrets its operator
/// instance created; `Swarm`'s own cleanup leaves secrets alone.
struct SecretCleanup<'a>(&'a Swarm);

impl Drop for SecretCleanup<'_> {
    fn drop(&mut self) {
        self.0.cleanup();
        let filter = format!("label=swarm-operator.io/instance={}", self.0.prefix);
        for id in docker(&["secret", "ls", "-q", "--filter", &filter]).lines() {
            let _ = docker_output(&["secret", "rm", id]);
        }
    }
}

/// The operator at `RUST_LOG=trace`, stdout and stderr into one log file.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn start(swarm: &Swarm, identity: &Path) -> Operator {
        let log = swarm.specs.path().with_extension("operator-age.log");
        let out = std::fs::File::create(&log).expect("operator log");
        let err = out.try_clone().expect("operator log");
        let child = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .arg("run")
            .arg("--specs")
            .arg(swarm.specs.path())
            .arg("--status")
            .arg(&swarm.status)
            .args(["--resync", "2s"])
            .arg("--age-identity")
            .arg(identity)
            .env("RUST_LOG", "trace")
            .env("SWARM_OPERATOR_INSTANCE", &swarm.prefix)
            .env("NO_COLOR", "1")
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("starting swarm-operator");
        Operator { child, log }
    }

    /// SIGTERM, then the whole log.
    fn stop(&mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// A value no output may hold: unique per run, so a stale file cannot match.
fn plaintext_value(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("pl41n-{what}-{:x}{nanos:x}", std::process::id())
}

/// Makes an identity file `dir/name` with age-keygen: its path and its recipient.
fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let path = dir.join(name);
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .expect("running age-keygen");
    assert!(out.status.success(), "{out:?}");
    let out = Command::new("age-keygen")
        .arg("-y")
        .arg(&path)
        .output()
        .expect("running age-keygen");
    assert!(out.status.success(), "{out:?}");
    (
        path,
        String::from_utf8(out.stdout)
            .expect("a recipient")
            .trim()
            .to_owned(),
    )
}

/// `age -r RECIPIENT [-a]`, writing `dir/name`; the plaintext goes through stdin, never a file.
fn seal(dir: &Path, name: &str, plaintext: &str, recipient: &str, armor: bool) {
    use std::io::Write as _;
    let mut cmd = Command::new("age");
    cmd.arg("-r").arg(recipient).arg("-o").arg(dir.join(name));
    if armor {
        cmd.arg("-a");
    }
    let mut child = cmd.stdin(Stdio::piped()).spawn().expect("running age");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(plaintext.as_bytes())
        .expect("writing to age");
    assert!(child.wait().expect("age").success(), "age -r failed");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `name id` of the secrets of this test's instance whose name starts with `base-`.
fn secrets(swarm: &Swarm, base: &str) -> Vec<String> {
    let filter = format!("label=swarm-operator.io/instance={}", swarm.prefix);
    let mut lines: Vec<String> = docker(&[
        "secret",
        "ls",
        "--filter",
        &filter,
        "--format",
        "{{.Name}} {{.ID}}",
    ])
    .lines()
    .filter(|l| l.starts_with(&format!("{base}-")))
    .map(str::to_owned)
    .collect();
    lines.sort();
    lines
}

fn network_exists(name: &str) -> bool {
    docker_output(&["network", "inspect", name])
        .status
        .success()
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_containing(&path, needle, found);
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
        {
            found.push(path);
        }
    }
}

#[test]
fn age_encrypted_secret_and_env_file_reach_the_swarm_and_nothing_else() {
    let test = "age_encrypted_secret_and_env_file_reach_the_swarm_and_nothing_else";
    let Some(swarm) = Swarm::start(test) else {
        return;
    };
    if require_tool(test, "age", "age").is_none()
        || require_tool(test, "age-keygen", "age").is_none()
    {
        return;
    }
    let _secrets = SecretCleanup(&swarm);
    // The identity lives outside the spec directory, as a docker secret would.
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(keys.path(), "identity.txt");

    let db_password = plaintext_value("db");
    let env_password = plaintext_value("env");
    let dir = swarm.specs.path();
    seal(dir, "db.txt.age", &db_password, &recipient, false);
    seal(
        dir,
        "app.env.age",
        &format!("APP_PASSWORD={env_password}\n"),
        &recipient,
        true,
    );
    let (service, secret) = (swarm.name("app"), swarm.name("db"));
    let head = "apiVersion: swarm-operator.io/v1alpha1";
    swarm.write_spec(
        "app.yaml",
        &format!(
            "{head}\nkind: SwarmService\nmetadata:\n  name: {service}\nspec:\n  image: {TEST_IMAGE}\n  replicas: 1\n  args: [sleep, \"3600\"]\n  endpointMode: dnsrr\n  stopGracePeriod: 1s\n  envFile: [app.env.age]\n  secrets: [{{name: {secret}}}]\n\
             ---\n{head}\nkind: SwarmSecret\nmetadata:\n  name: {secret}\nspec:\n  file: db.txt.age\n"
        ),
    );
    let mut operator = Operator::start(&swarm, &identity);

    // 1. Created: the secret's name is the hash of the plaintext, the service has the env.
    swarm.wait_status("the service is ready", CONVERGE, |s| {
        condition(s, &service, "Ready")["status"] == "True"
    });
    let expected = format!("{secret}-{}", &sha256_hex(db_password.as_bytes())[..10]);
    let first = secrets(&swarm, &secret);
    assert_eq!(first.len(), 1, "{first:?}");
    assert!(
        first[0].starts_with(&format!("{expected} ")),
        "{first:?} is not named by the plaintext's hash {expected}"
    );
    let env = docker(&[
        "service",
        "inspect",
        "--format",
        "{{json .Spec.TaskTemplate.ContainerSpec.Env}}",
        &service,
    ]);
    assert!(
        env.contains(&format!("APP_PASSWORD={env_password}")),
        "the decrypted env file is not in the service's env (keys: {})",
        env.split(',')
            .map(|kv| kv.split('=').next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join(",")
    );
    let version = swarm.service_version("app").expect("the service exists");

    // 2. The same plaintext encrypted again (age output differs every time): no new secret
    // version, no service write. `diff` (with the identity) exits 0 once the swarm matches the
    // files: had the new ciphertext changed the desired secret, that would only be after the
    // operator wrote a new version, which the asserts below would see.
    let before = std::fs::read(dir.join("db.txt.age")).unwrap();
    seal(dir, "db.txt.age", &db_password, &recipient, true);
    assert_ne!(before, std::fs::read(dir.join("db.txt.age")).unwrap());
    let (dir_arg, identity_arg) = (dir.to_str().unwrap(), identity.to_str().unwrap());
    let diff_output = std::cell::RefCell::new(String::new());
    swarm.wait("diff --age-identity says in sync", CONVERGE, || {
        let out = swarm.cli(&["diff", dir_arg, "--age-identity", identity_arg]);
        *diff_output.borrow_mut() = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out.status.code() == Some(0)
    });
    assert_eq!(
        secrets(&swarm, &secret),
        first,
        "re-encrypting wrote a secret"
    );
    assert_eq!(
        swarm.service_version("app"),
        Some(version),
        "re-encrypting wrote the service"
    );

    // 3. A broken `.age` file: a located error naming it; the objects stay as they were.
    std::fs::write(
        dir.join("app.env.age"),
        b"age-encryption.org/v1\n-> X25519 broken\n",
    )
    .unwrap();
    swarm.write_spec(
        "app.yaml",
        &std::fs::read_to_string(dir.join("app.yaml")).unwrap(),
    );
    let status = swarm.wait_status("the broken file is reported", CONVERGE, |s| {
        s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let error = &status["errors"][0];
    assert_eq!(error["file"], "app.yaml", "{error}");
    assert_eq!(error["field"], "spec.envFile[0]", "{error}");
    assert_eq!(
        (error["line"].as_u64(), error["column"].as_u64()),
        (Some(11), Some(13)),
        "{error}"
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("`app.env.age`") && message.contains("not a valid age file"),
        "{message}"
    );
    // A few resyncs later nothing was removed or changed.
    swarm.write_spec("marker.yaml", &swarm.network_spec("marker2"));
    swarm.wait("the second marker network is created", CONVERGE, || {
        network_exists(&swarm.name("marker2"))
    });
    assert_eq!(
        swarm.service_version("app"),
        Some(version),
        "a broken file changed the service"
    );
    assert_eq!(
        secrets(&swarm, &secret),
        first,
        "a broken file changed the secret"
    );

    // 4. The plaintext is nowhere: not in the log at trace, not in the status, not on disk.
    let log = operator.stop();
    assert!(
        log.contains("TRACE") || log.contains("trace"),
        "the log is at trace level"
    );
    let status = std::fs::read_to_string(&swarm.status).unwrap();
    let log = format!("{log}\n{}", diff_output.borrow());
    // The secret's data goes to the engine base64-encoded: that form must not show either.
    let db_base64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&db_password)
    };
    for value in [&db_password, &env_password, &db_base64] {
        assert!(
            !log.contains(value.as_str()),
            "the plaintext is in the operator's log or diff's output"
        );
        assert!(
            !status.contains(value.as_str()),
            "the plaintext is in the status file"
        );
        // The spec directory (the status file and the log, its siblings, are checked above).
        let mut found = Vec::new();
        files_containing(dir, value, &mut found);
        assert!(found.is_empty(), "the plaintext is on disk in {found:?}");
    }
}

/// `validate` decrypts with `--age-identity` too, and without it (or with the wrong key) says
/// where the `.age` file is used and what to do; no Docker needed with `--offline`.
#[test]
fn validate_uses_age_identities_and_locates_what_it_cannot_decrypt() {
    let test = "validate_uses_age_identities_and_locates_what_it_cannot_decrypt";
    if require_tool(test, "age", "age").is_none()
        || require_tool(test, "age-keygen", "age").is_none()
    {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let specs = tempfile::tempdir().unwrap();
    let keygen = |name: &str| keygen(keys.path(), name);
    let (key, recipient) = keygen("key.txt");
    let (stranger, _) = keygen("stranger.txt");
    let plaintext = plaintext_value("validate");
    seal(specs.path(), "db.txt.age", &plaintext, &recipient, false);
    std::fs::write(
        specs.path().join("stack.yaml"),
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata:\n  name: db\nspec:\n  file: db.txt.age\n",
    )
    .unwrap();
    let validate = |identity: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
        cmd.arg("validate").arg(specs.path()).arg("--offline");
        if let Some(identity) = identity {
            cmd.arg("--age-identity").arg(identity);
        }
        let out = cmd.env("NO_COLOR", "1").output().expect("running validate");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(&plaintext), "validate printed the plaintext");
        assert!(!text.contains("AGE-SECRET-KEY"), "validate printed a key");
        (out.status.code(), text)
    };

    let (code, text) = validate(Some(&key));
    assert_eq!(code, Some(0), "{text}");

    let located = format!(
        "{}:6:9: spec.file: cannot decrypt `db.txt.age`: ",
        specs.path().join("stack.yaml").display()
    );
    let (code, text) = validate(None);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&located), "{text}");
    assert!(text.contains("pass --age-identity FILE"), "{text}");

    let (code, text) = validate(Some(&stranger));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!("{located}no identity matches")),
        "{text}"
    );

    let (code, text) = validate(Some(&keys.path().join("missing.txt")));
    assert_ne!(code, Some(0), "{text}");
    assert!(text.contains("cannot read age identity file"), "{text}");

    // Every command that reads specs (or, for apply, secret files) takes the flag and reads the identities first (before
    // any Docker connection): a broken identity file names its line, never the key.
    let broken = keys.path().join("broken.txt");
    std::fs::write(
        &broken,
        "# a comment
AGE-SECRET-KEY-1BROKENKEY
",
    )
    .unwrap();
    let dir = specs.path().to_str().unwrap();
    let status = specs.path().join("status.json");
    let status = status.to_str().unwrap();
    for args in [
        vec!["run", "--specs", dir, "--status", status],
        vec!["validate", dir, "--offline"],
        vec!["apply", dir],
        vec!["diff", dir],
        vec!["get", "--specs", dir],
        vec!["wait", "--all", "--for", "ready", "--specs", dir],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
            .args(&args)
            .arg("--age-identity")
            .arg(&broken)
            .env("NO_COLOR", "1")
            .output()
            .expect("running swarm-operator");
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {text}");
        assert!(
            text.contains(&format!("age identity file {} line 2:", broken.display())),
            "{args:?}: {text}"
        );
        assert!(!text.contains("BROKENKEY"), "{args:?}: {text}");
    }
}

/// `apply --age-identity` decrypts a SwarmSecret's `.age` file into the swarm secret it
/// creates (named by the plaintext's hash, so applying a re-encrypted file creates nothing);
/// without the identity it stores nothing and says where the file is used.
#[test]
fn apply_decrypts_a_secret_file_into_the_secret_it_creates() {
    let test = "apply_decrypts_a_secret_file_into_the_secret_it_creates";
    let Some(swarm) = Swarm::start("ageapply") else {
        return;
    };
    if require_tool(test, "age", "age").is_none()
        || require_tool(test, "age-keygen", "age").is_none()
    {
        return;
    }
    let _secrets = SecretCleanup(&swarm);
    let keys = tempfile::tempdir().unwrap();
    let (identity, recipient) = keygen(keys.path(), "identity.txt");
    let plaintext = plaintext_value("apply");
    let dir = swarm.specs.path();
    seal(dir, "db.txt.age", &plaintext, &recipient, false);
    let secret = swarm.name("db");
    swarm.write_spec(
        "db.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata:\n  name: {secret}\nspec:\n  file: db.txt.age\n"
        ),
    );
    let (dir_arg, identity_arg) = (dir.to_str().unwrap(), identity.to_str().unwrap());
    let text = |out: &std::process::Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(&plaintext), "apply printed the plaintext");
        text
    };

    let refused = swarm.cli(&["apply", dir_arg]);
    let shown = text(&refused);
    assert_eq!(refused.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains("db.yaml:6:9: spec.file: cannot decrypt `db.txt.age`")
            && shown.contains("pass --age-identity"),
        "{shown}"
    );
    assert!(
        secrets(&swarm, &secret).is_empty(),
        "a refused apply created a secret"
    );

    let applied = swarm.cli(&["apply", dir_arg, "--age-identity", identity_arg]);
    let shown = text(&applied);
    assert!(applied.status.success(), "{shown}");
    let expected = format!("{secret}-{}", &sha256_hex(plaintext.as_bytes())[..10]);
    assert!(
        shown.contains(&format!("secret {expected} created")),
        "{shown}"
    );
    let first = secrets(&swarm, &secret);
    assert_eq!(first.len(), 1, "{first:?}");

    // Re-encrypted (armored this time): the same plaintext, so nothing new.
    seal(dir, "db.txt.age", &plaintext, &recipient, true);
    let again = swarm.cli(&["apply", dir_arg, "--age-identity", identity_arg]);
    let shown = text(&again);
    assert!(again.status.success(), "{shown}");
    assert!(!shown.contains("created"), "{shown}");
    assert_eq!(secrets(&swarm, &secret), first);
}
