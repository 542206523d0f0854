//! `run --source git` against real repositories served by a real `git daemon` and over
//! `file://`, on the real single-node swarm: a push is applied, a force push back applies the
//! old spec again and says so, a broken commit is held, a remote that goes down keeps the last
//! good commit and recovers, a hostile commit is refused, and a restart does not clone again.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use support::git::{GitDaemon, GitRepo};
use support::{Operator, Swarm};

const CONVERGE: Duration = Duration::from_secs(90);

/// The spec directory inside the repository (`--git-path`).
const SPEC_DIR: &str = "deploy/swarm";

/// How a scenario runs `run --source git`: the one preamble every scenario shares.
struct GitRun<'a> {
    url: &'a str,
    /// `--git-poll`.
    poll: &'a str,
    /// `--git-cache`.
    cache: &'a Path,
    /// The status file (the test's by default).
    status: Option<&'a Path>,
    /// The log file's suffix.
    log_name: &'a str,
    /// More flags.
    extra: Vec<&'a str>,
    /// `RUST_LOG`, instead of the harness's `info,swarm_operator=debug`.
    rust_log: Option<&'a str>,
}

impl<'a> GitRun<'a> {
    fn new(url: &'a str, poll: &'a str, cache: &'a Path) -> Self {
        GitRun {
            url,
            poll,
            cache,
            status: None,
            log_name: "",
            extra: Vec::new(),
            rust_log: None,
        }
    }

    fn start(&self, swarm: &Swarm) -> Operator {
        let mut args = vec![
            "--source",
            "git",
            "--git-url",
            self.url,
            "--git-path",
            SPEC_DIR,
            "--git-poll",
            self.poll,
            "--git-cache",
            self.cache.to_str().unwrap(),
        ];
        args.extend_from_slice(&self.extra);
        let rust_log = self.rust_log.map(std::ffi::OsStr::new);
        let env: Vec<(&str, Option<&std::ffi::OsStr>)> = rust_log
            .map(|l| ("RUST_LOG", Some(l)))
            .into_iter()
            .collect();
        let status = self.status.unwrap_or(&swarm.status);
        swarm.operator_with_env(&args, status, self.log_name, &[], &env)
    }
}

fn start_operator(swarm: &Swarm, url: &str, cache: &Path, log_name: &str) -> Operator {
    GitRun {
        log_name,
        ..GitRun::new(url, "1s", cache)
    }
    .start(swarm)
}

/// A GitHub push event for `after` on `main`, and its `X-Hub-Signature-256` under `key`.
fn github_push(after: &str, key: &[u8]) -> (Vec<u8>, String) {
    use hmac::{Hmac, Mac as _};
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": "refs/heads/main",
        "after": after,
    }))
    .unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).unwrap();
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    (body, signature)
}

/// POSTs a push hook signed under `key` for `after` to `operator`: `(status code, answer)`.
fn post_push(operator: &Operator, after: &str, key: &[u8]) -> (u16, String) {
    let (body, signature) = github_push(after, key);
    operator
        .http_post(
            "/hooks/git",
            &[
                ("Content-Type", "application/json"),
                ("X-GitHub-Event", "push"),
                ("X-Hub-Signature-256", &signature),
            ],
            &body,
        )
        .expect("the hook answers")
}

fn spec_file(name: &str) -> String {
    format!("{SPEC_DIR}/{name}")
}

/// `swarm_operator_docker_requests_total{op="<op>",outcome="ok"}` of a running operator.
fn requests(operator: &Operator, op: &str) -> u64 {
    let (_, metrics) = operator.http_get("/metrics").expect("metrics answer");
    let key = format!(r#"swarm_operator_docker_requests_total{{op="{op}",outcome="ok"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

fn writes(operator: &Operator) -> u64 {
    ["create_service", "update_service", "remove_service"]
        .iter()
        .map(|op| requests(operator, op))
        .sum()
}

fn source(status: &Value) -> &Value {
    &status["source"]
}

fn revision(status: &Value) -> Option<&str> {
    source(status)["revision"].as_str()
}

/// The bare cache's pack files with their sizes and modification times.
fn packs(cache: &Path) -> Vec<(String, u64, SystemTime)> {
    let mut packs: Vec<_> = std::fs::read_dir(cache.join("repo.git/objects/pack"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".pack"))
        .map(|e| {
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                meta.len(),
                meta.modified().unwrap(),
            )
        })
        .collect();
    packs.sort();
    packs
}

#[test]
fn pushes_force_pushes_broken_commits_and_an_outage_over_git_daemon() {
    let Some(swarm) = Swarm::start("git_daemon") else {
        return;
    };
    if support::require_tool("git_daemon", "git", "git").is_none() {
        return;
    }
    let repo = GitRepo::new();
    let web = swarm.name("web");
    let first = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 1, None)),
        )],
        "web, one replica",
    );
    repo.push();
    let mut daemon = GitDaemon::start(repo.dir.path());
    let url = daemon.url("specs.git");
    let cache = repo.dir.path().join("cache");
    let mut operator = start_operator(&swarm, &url, &cache, "");

    // A push is applied: the service exists, and the status names the commit.
    let status = swarm.wait_status("the first commit applied", CONVERGE, |s| {
        revision(s) == Some(first.as_str()) && s["services"][&web].is_object()
    });
    assert_eq!(source(&status)["kind"], "git");
    assert_eq!(source(&status)["url"], url.as_str());
    assert_eq!(source(&status)["ref"], "refs/heads/main");
    assert_eq!(source(&status)["path"], SPEC_DIR);
    assert!(source(&status)["error"].is_null(), "{status}");
    assert!(source(&status)["fetchedAt"].is_string(), "{status}");
    swarm.wait("one replica", CONVERGE, || {
        swarm.service_replicas("web") == Some(1)
    });
    let (_, api) = operator.http_get("/api/v1/status").unwrap();
    assert!(api.contains(&first), "the API shows the revision: {api}");

    // The next push, timed from the push to the swarm having the new spec (`--git-poll 1s`).
    let second = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "web, two replicas",
    );
    let pushed = Instant::now();
    repo.push();
    swarm.wait("the push applied", CONVERGE, || {
        swarm.service_replicas("web") == Some(2)
    });
    eprintln!("push -> applied with --git-poll 1s: {:?}", pushed.elapsed());
    swarm.wait_status("the second commit in the status", CONVERGE, |s| {
        revision(s) == Some(second.as_str())
    });

    // Unchanged ref: fetched every second, nothing written.
    let before = writes(&operator);
    let version = swarm.service_version("web");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(writes(&operator), before, "no write while the ref stays");
    assert_eq!(swarm.service_version("web"), version);

    // A broken commit is held: the status names the commit and the file; nothing changes.
    let broken = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(
                &swarm
                    .service_spec("web", 3, None)
                    .replace("replicas: 3", "replicas: many"),
            ),
        )],
        "broken",
    );
    repo.push();
    let status = swarm.wait_status("the broken commit's errors", CONVERGE, |s| {
        revision(s) == Some(broken.as_str())
            && s["errors"]
                .as_array()
                .is_some_and(|e| e.iter().any(|e| e["file"] == "web.yaml"))
    });
    assert!(source(&status)["error"].is_null(), "{status}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        swarm.service_version("web"),
        version,
        "the broken commit changed nothing"
    );
    assert_eq!(swarm.service_replicas("web"), Some(2));

    // A force push back to the first commit: followed, its spec applied again, and said.
    repo.force_push(&first);
    swarm.wait("the old spec applied again", CONVERGE, || {
        swarm.service_replicas("web") == Some(1)
    });
    let status = swarm.wait_status("the old commit in the status", CONVERGE, |s| {
        revision(s) == Some(first.as_str()) && s["errors"].as_array().is_some_and(Vec::is_empty)
    });
    assert!(source(&status)["error"].is_null(), "{status}");
    let moved = format!("moved backwards from {} to {}", &broken[..7], &first[..7]);
    assert!(operator.log().contains(&moved), "the log says {moved:?}");
    let (_, page) = operator.http_get("/api/v1/status").unwrap();
    assert!(page.contains(&moved), "the activity says {moved:?}: {page}");

    // The remote goes down: the error shows, the last good commit stays applied.
    daemon.stop();
    let third = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 3, None)),
        )],
        "web, three replicas",
    );
    repo.push();
    let status = swarm.wait_status("the fetch error shown", CONVERGE, |s| {
        source(s)["error"].is_string()
    });
    let error = source(&status)["error"].as_str().unwrap();
    assert!(error.contains(&url), "the error names the remote: {error}");
    assert_eq!(revision(&status), Some(first.as_str()));
    assert_eq!(
        swarm.service_replicas("web"),
        Some(1),
        "the last good commit stays"
    );
    let (code, _) = operator.http_get("/healthz").unwrap();
    assert_eq!(code, 200);

    // It comes back: the new commit is applied and the error clears.
    daemon.resume();
    swarm.wait_status("recovered", CONVERGE, |s| {
        revision(s) == Some(third.as_str()) && source(s)["error"].is_null()
    });
    swarm.wait("the new commit applied", CONVERGE, || {
        swarm.service_replicas("web") == Some(3)
    });

    // A restart does not clone again: the cache's packs stay as they were, nothing is
    // fetched, and the swarm is not written.
    assert!(operator.stop(), "the operator stops cleanly");
    let packs_before = packs(&cache);
    assert!(!packs_before.is_empty());
    let restarted_at =
        humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(1)).to_string();
    let operator = start_operator(&swarm, &url, &cache, "-restarted");
    swarm.wait_status("fetched after the restart", CONVERGE, |s| {
        revision(s) == Some(third.as_str())
            && source(s)["fetchedAt"]
                .as_str()
                .is_some_and(|t| t >= restarted_at.as_str())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(packs(&cache), packs_before, "a restart fetched nothing new");
    assert!(
        !operator.log().contains("fetched new objects"),
        "nothing was downloaded after the restart: {}",
        operator.log()
    );
    assert_eq!(
        writes(&operator),
        0,
        "a restart on the same commit writes nothing"
    );

    // The next push after the restart downloads only the new commit's objects.
    let fourth = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "web, two replicas again",
    );
    repo.push();
    swarm.wait_status("the push after the restart", CONVERGE, |s| {
        revision(s) == Some(fourth.as_str())
    });
    let log = operator.log();
    let objects: u64 = log
        .lines()
        .find(|l| l.contains("fetched new objects"))
        .and_then(|l| l.split("objects=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("a fetch with an object count in the log: {log}"));
    // A commit, its root tree, the two directories above the file and the file, plus the
    // bases of a thin pack the fetch completes locally: far from the whole history.
    let total: usize = support::git::git(&repo.remote, &["rev-list", "--objects", "--all"])
        .lines()
        .count();
    assert!(
        objects <= 8 && (objects as usize) < total,
        "only the new commit's objects were fetched: {objects} of {total}"
    );
    // Old checkouts are gone: only the current commit's tree is kept.
    let trees: Vec<_> = std::fs::read_dir(cache.join("trees"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(trees, vec![fourth]);
}

#[test]
fn a_hostile_commit_is_refused_whole_over_file_urls() {
    let Some(swarm) = Swarm::start("git_hostile") else {
        return;
    };
    if support::require_tool("git_hostile", "git", "git").is_none() {
        return;
    }
    let repo = GitRepo::new();
    let web = swarm.name("web");
    let good = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 1, None)),
        )],
        "web",
    );
    repo.push();
    let cache = repo.dir.path().join("cache");
    let url = repo.file_url();
    let _operator = start_operator(&swarm, &url, &cache, "");
    swarm.wait_status("the good commit applied", CONVERGE, |s| {
        revision(s) == Some(good.as_str()) && s["services"][&web].is_object()
    });

    // A symlink out of the repository next to a changed spec: the whole commit is refused.
    std::os::unix::fs::symlink("/etc/passwd", repo.work.join(SPEC_DIR).join("passwd")).unwrap();
    let hostile = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "a symlink",
    );
    repo.push();
    let status = swarm.wait_status("the hostile commit refused", CONVERGE, |s| {
        source(s)["error"].is_string()
    });
    let error = source(&status)["error"].as_str().unwrap();
    assert!(
        error.contains(&hostile)
            && error.contains(&spec_file("passwd"))
            && error.contains("symlink"),
        "the error names the commit and the entry: {error}"
    );
    assert_eq!(revision(&status), Some(good.as_str()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        swarm.service_replicas("web"),
        Some(1),
        "nothing of the hostile commit"
    );
    let current = std::fs::read_link(cache.join("current")).unwrap();
    assert!(current.ends_with(&good), "{}", current.display());
}

/// A GitHub-signed push webhook makes `run --source git` fetch at once (the poll is an hour):
/// the pushed commit is applied; a wrong signature is refused with 401 and fetches nothing.
#[test]
fn a_signed_push_webhook_applies_the_pushed_commit_and_a_bad_signature_is_refused() {
    let Some(swarm) = Swarm::start("git_webhook") else {
        return;
    };
    if support::require_tool("git_webhook", "git", "git").is_none() {
        return;
    }
    let repo = GitRepo::new();
    let web = swarm.name("web");
    let first = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 1, None)),
        )],
        "web, one replica",
    );
    repo.push();
    let daemon = GitDaemon::start(repo.dir.path());
    let url = daemon.url("specs.git");
    let cache = repo.dir.path().join("cache");
    let secret = "a-webhook-secret-of-32-characters";
    let secret_file = repo.dir.path().join("hook-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let secret_flag = secret_file.to_str().unwrap();
    let operator = GitRun {
        extra: vec!["--git-webhook-secret-file", secret_flag],
        ..GitRun::new(&url, "1h", &cache)
    }
    .start(&swarm);
    swarm.wait_status("the first commit applied", CONVERGE, |s| {
        revision(s) == Some(first.as_str()) && s["services"][&web].is_object()
    });

    let second = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "web, two replicas",
    );
    repo.push();
    // A wrong signature: 401, and nothing is fetched (the poll is an hour away).
    let (code, answer) = post_push(&operator, &second, b"not-the-secret-not-the-secret");
    assert_eq!(code, 401, "{answer}");
    assert!(!answer.contains(secret), "{answer}");
    std::thread::sleep(Duration::from_secs(3));
    let status = swarm.status().expect("a status file");
    assert_eq!(revision(&status), Some(first.as_str()), "{status}");

    // The right one: the push is applied.
    let pushed = Instant::now();
    let (code, answer) = post_push(&operator, &second, secret.as_bytes());
    assert!((200..300).contains(&code), "{code} {answer}");
    swarm.wait("the pushed commit applied", CONVERGE, || {
        swarm.service_replicas("web") == Some(2)
    });
    eprintln!(
        "push -> applied via the signed webhook: {:?}",
        pushed.elapsed()
    );
    swarm.wait_status("the second commit in the status", CONVERGE, |s| {
        revision(s) == Some(second.as_str())
    });
    assert!(
        !operator.log().contains(secret),
        "the hook secret is never logged"
    );
}

/// The `swarm-operator.io/fetch-requested` label of the instance's revision record (`None`
/// while there is no record or no request).
fn fetch_requested(swarm: &Swarm) -> Option<String> {
    let out = support::docker_output(&[
        "config",
        "inspect",
        "--format",
        r#"{{index .Spec.Labels "swarm-operator.io/fetch-requested"}}"#,
        &format!("swarm-operator-revision-{}", swarm.prefix),
    ]);
    let value = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !value.is_empty() && value != "<no value>").then_some(value)
}

/// Two replicas with `--leader-election` and an hour's poll: a signed push hook sent to the
/// follower is passed on, and the leader applies the pushed commit; a badly signed one sent to
/// the follower changes nothing and asks the leader for nothing.
#[test]
fn a_push_hook_sent_to_a_follower_is_applied_by_the_leader() {
    let Some(swarm) = Swarm::start("git_hook_ha") else {
        return;
    };
    if support::require_tool("git_hook_ha", "git", "git").is_none() {
        return;
    }
    let repo = GitRepo::new();
    let web = swarm.name("web");
    let first = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 1, None)),
        )],
        "web, one replica",
    );
    repo.push();
    let url = repo.file_url();
    let secret = "a-webhook-secret-of-32-characters";
    let secret_file = repo.dir.path().join("hook-secret");
    std::fs::write(&secret_file, secret).unwrap();
    let replica = |id: &str, status: &Path| {
        let cache = repo.dir.path().join(format!("cache-{id}"));
        GitRun {
            status: Some(status),
            log_name: id,
            extra: vec![
                "--git-webhook-secret-file",
                secret_file.to_str().unwrap(),
                "--leader-election",
                "--identity",
                id,
            ],
            ..GitRun::new(&url, "1h", &cache)
        }
        .start(&swarm)
    };
    let leads = |operator: &Operator| operator.metric("swarm_operator_leader") == Some(1.0);
    let leader = replica("leader", &swarm.status);
    swarm.wait("the first replica leads", CONVERGE, || leads(&leader));
    let follower_status = repo.dir.path().join("follower-status.json");
    let follower = replica("follower", &follower_status);
    swarm.wait_status("the first commit applied", CONVERGE, |s| {
        revision(s) == Some(first.as_str()) && s["services"][&web].is_object()
    });
    // The follower is up (it serves metrics) and fetched the first commit too.
    swarm.wait("the follower's first fetch", CONVERGE, || {
        std::fs::read_to_string(&follower_status)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .is_some_and(|s| revision(&s) == Some(first.as_str()))
    });
    assert!(!leads(&follower), "one leader");

    let second = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "web, two replicas",
    );
    repo.push();

    // A wrong signature to the follower: 401, no request for the leader, nothing applied.
    let (code, answer) = post_push(&follower, &second, b"not-the-secret-not-the-secret");
    assert_eq!(code, 401, "{answer}");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(fetch_requested(&swarm), None, "nothing passed on");
    let status = swarm.status().unwrap();
    assert_eq!(revision(&status), Some(first.as_str()), "{status}");
    assert_eq!(swarm.service_replicas("web"), Some(1));

    // The right one: the follower passes it on, the leader fetches and applies it.
    let pushed = Instant::now();
    let (code, answer) = post_push(&follower, &second, secret.as_bytes());
    assert_eq!(code, 202, "{answer}");
    assert!(answer.contains("passed on to the leader"), "{answer}");
    swarm.wait("the pushed commit applied by the leader", CONVERGE, || {
        swarm.service_replicas("web") == Some(2)
    });
    eprintln!(
        "push to the follower -> applied by the leader: {:?}",
        pushed.elapsed()
    );
    swarm.wait_status("the leader's status at the second commit", CONVERGE, |s| {
        revision(s) == Some(second.as_str())
    });
    assert_eq!(fetch_requested(&swarm).as_deref(), Some(second.as_str()));
    assert!(
        leader.log().contains("a follower passed on a push"),
        "{}",
        leader.log()
    );
    assert!(leads(&leader) && !leads(&follower), "still one leader");
    for operator in [&leader, &follower] {
        assert!(
            !operator.log().contains(secret),
            "the hook secret is never logged"
        );
    }
}

/// The `swarm-operator.io/revision` label of a service as the engine holds it.
fn revision_label(swarm: &Swarm, name: &str) -> String {
    support::docker(&[
        "service",
        "inspect",
        "--format",
        r#"{{index .Spec.Labels "swarm-operator.io/revision"}}"#,
        &swarm.name(name),
    ])
}

/// A commit that changes one of two services writes that one only (counted by the operator's
/// own request metrics), and only its revision label moves to the new commit.
#[test]
fn a_commit_writes_only_the_objects_whose_spec_changed() {
    let Some(swarm) = Swarm::start("git_one_write") else {
        return;
    };
    if support::require_tool("git_one_write", "git", "git").is_none() {
        return;
    }
    let repo = GitRepo::new();
    let first = repo.commit(
        &[
            (
                &spec_file("web.yaml"),
                Some(&swarm.service_spec("web", 1, None)),
            ),
            (
                &spec_file("api.yaml"),
                Some(&swarm.service_spec("api", 1, None)),
            ),
        ],
        "web and api",
    );
    repo.push();
    let cache = repo.dir.path().join("cache");
    let operator = start_operator(&swarm, &repo.file_url(), &cache, "");
    let (web, api) = (swarm.name("web"), swarm.name("api"));
    swarm.wait_status("both services at the first commit", CONVERGE, |s| {
        revision(s) == Some(first.as_str())
            && s["services"][&web].is_object()
            && s["services"][&api].is_object()
    });
    swarm.wait("both services written", CONVERGE, || {
        requests(&operator, "create_service") == 2
    });
    assert_eq!(revision_label(&swarm, "web"), first);
    assert_eq!(revision_label(&swarm, "api"), first);
    let api_version = swarm.service_version("api");
    let updates_before = requests(&operator, "update_service");

    let second = repo.commit(
        &[(
            &spec_file("web.yaml"),
            Some(&swarm.service_spec("web", 2, None)),
        )],
        "web, two replicas",
    );
    repo.push();
    swarm.wait("the changed service written", CONVERGE, || {
        swarm.service_replicas("web") == Some(2)
    });
    swarm.wait_status("the second commit in the status", CONVERGE, |s| {
        revision(s) == Some(second.as_str())
    });
    // Resyncs (every 2 s) and fetches (every second) in which nothing else may be written.
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        requests(&operator, "update_service") - updates_before,
        1,
        "one update: the changed service"
    );
    assert_eq!(requests(&operator, "create_service"), 2, "nothing created");
    assert_eq!(requests(&operator, "remove_service"), 0, "nothing removed");
    assert_eq!(
        revision_label(&swarm, "web"),
        second,
        "the written one moved"
    );
    assert_eq!(
        revision_label(&swarm, "api"),
        first,
        "the unchanged one stayed"
    );
    assert_eq!(swarm.service_version("api"), api_version, "api not written");
}

/// Everything a running operator shows: its status file, `/api/v1/status` and its log.
fn shown(swarm: &Swarm, operator: &Operator) -> String {
    let status = std::fs::read_to_string(&swarm.status).unwrap_or_default();
    let (_, api) = operator.http_get("/api/v1/status").unwrap_or_default();
    format!("{status}\n{api}\n{}", operator.log())
}

/// `run --source git` over https (git http-backend behind TLS with basic auth) with
/// `--git-token-file` and `--git-ca-file`: a wrong token is refused with an error that says
/// what to do, the right one applies the spec; no token ever shows, at `RUST_LOG=debug`.
#[test]
fn https_with_a_token_through_the_running_operator() {
    use support::git_servers::{HTTPS_TOKEN, HttpsGitServer, Upstream};
    let Some(swarm) = Swarm::start("git_op_https") else {
        return;
    };
    let Some(upstream) = Upstream::new("git_op_https") else {
        return;
    };
    let Some(server) = HttpsGitServer::start("git_op_https", upstream.root()) else {
        return;
    };
    let pushed = upstream.commit(
        "specs",
        &[(&spec_file("web.yaml"), &swarm.service_spec("web", 1, None))],
        "web",
    );
    let url = server.url("specs");
    let ca = server.ca();
    let cache = upstream.root().join("cache");
    let wrong_token = "sot-wrong-token-9b2d";
    let wrong_file = server.token_file("wrong", wrong_token);
    let token_file = server.token_file("token", HTTPS_TOKEN);
    let run = |token: &Path, log_name: &str| {
        GitRun {
            log_name,
            extra: vec![
                "--git-token-file",
                token.to_str().unwrap(),
                "--git-ca-file",
                ca.to_str().unwrap(),
            ],
            rust_log: Some("debug"),
            ..GitRun::new(&url, "1s", &cache)
        }
        .start(&swarm)
    };

    let mut operator = run(&wrong_file, "-wrong");
    let status = swarm.wait_status("the refused token in the status", CONVERGE, |s| {
        source(s)["error"].is_string()
    });
    let error = source(&status)["error"].as_str().unwrap();
    assert!(
        error.contains("the git server refused the token of --git-token-file")
            && error.contains(&url),
        "the error says what to do and names the remote: {error}"
    );
    assert!(revision(&status).is_none(), "{status}");
    assert!(
        operator.log().contains(" DEBUG "),
        "the log is at debug level"
    );
    let everything = shown(&swarm, &operator);
    assert!(!everything.contains(wrong_token), "{everything}");
    assert!(operator.stop());

    let operator = run(&token_file, "");
    swarm.wait_status("the commit applied over https", CONVERGE, |s| {
        revision(s) == Some(pushed.as_str()) && source(s)["error"].is_null()
    });
    swarm.wait("the service from https", CONVERGE, || {
        swarm.service_replicas("web") == Some(1)
    });
    let everything = shown(&swarm, &operator);
    assert!(
        everything.contains(&pushed),
        "the shown things are read: {everything}"
    );
    assert!(
        !everything.contains(HTTPS_TOKEN),
        "the token never shows: {everything}"
    );
    let status = swarm.status().unwrap();
    assert_eq!(
        source(&status)["url"],
        url.as_str(),
        "the URL as given, no credentials"
    );
}

/// `run --source git` over ssh with `--git-ssh-key` and `--git-known-hosts`: a known_hosts
/// without the server's key is refused with an error that says what to do, the right one
/// applies the spec; the private key never shows.
#[test]
fn ssh_with_a_deploy_key_through_the_running_operator() {
    use support::git_servers::{SshGitServer, Upstream};
    let Some(swarm) = Swarm::start("git_op_ssh") else {
        return;
    };
    let Some(upstream) = Upstream::new("git_op_ssh") else {
        return;
    };
    let Some(server) = SshGitServer::start("git_op_ssh") else {
        return;
    };
    let pushed = upstream.commit(
        "specs",
        &[(&spec_file("web.yaml"), &swarm.service_spec("web", 1, None))],
        "web",
    );
    let url = server.url(&upstream.bare("specs"));
    let key = server.deploy_key();
    let cache = upstream.root().join("cache");
    let run = |known_hosts: &Path, log_name: &str| {
        GitRun {
            log_name,
            extra: vec![
                "--git-ssh-key",
                key.to_str().unwrap(),
                "--git-known-hosts",
                known_hosts.to_str().unwrap(),
            ],
            rust_log: Some("debug"),
            ..GitRun::new(&url, "1s", &cache)
        }
        .start(&swarm)
    };
    let private_key = std::fs::read_to_string(&key).unwrap();
    // The last line of the base64 body holds private key material (the first ones are a
    // header every OpenSSH key shares).
    let key_body = private_key
        .lines()
        .rfind(|l| !l.starts_with("-----"))
        .unwrap()
        .to_owned();

    let wrong_hosts = server.wrong_known_hosts();
    let mut operator = run(&wrong_hosts, "-wrong");
    let status = swarm.wait_status("the unknown host key in the status", CONVERGE, |s| {
        source(s)["error"].is_string()
    });
    let error = source(&status)["error"].as_str().unwrap();
    assert!(
        error.contains("the server's host key is not in the known hosts (--git-known-hosts)"),
        "the error says what to do: {error}"
    );
    assert!(revision(&status).is_none(), "{status}");
    assert!(!shown(&swarm, &operator).contains(&key_body));
    assert!(operator.stop());

    let known_hosts = server.known_hosts();
    let operator = run(&known_hosts, "");
    swarm.wait_status("the commit applied over ssh", CONVERGE, |s| {
        revision(s) == Some(pushed.as_str()) && source(s)["error"].is_null()
    });
    swarm.wait("the service from ssh", CONVERGE, || {
        swarm.service_replicas("web") == Some(1)
    });
    let everything = shown(&swarm, &operator);
    assert!(!everything.contains(&key_body), "the key never shows");
}
