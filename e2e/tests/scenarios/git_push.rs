//! Scenario 14 (issue 19): the operator as a service with `--source git`, following a repository served by `git daemon` from a container on the cluster's bridge; each push is announced with a GitHub-signed webhook and waited on with `wait --revision`, and push → applied is measured over several pushes.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac as _};
use xtask::git_server::{BRANCH, GitServer};
use xtask::operator::{self, GitDeployment};
use xtask::operator_cli::{self, RevisionExit};

use super::{Env, Outcome, PROBE, ensure};

/// The operator instance of this scenario: its own lease, revision record and objects, so the
/// other scenarios' services are none of its business.
const INSTANCE: &str = "e2e-git";
/// The service the repository describes.
pub(crate) const WEB: &str = "gitops-web";
/// The node port of the operator's `/hooks/git` (host mode, on the first manager).
const HOOK_PORT: u16 = 19090;
/// Pushes whose push → applied time is measured (after the two checked one by one).
const MEASURED_PUSHES: usize = 9;
/// The revision label on every object the operator writes.
const REVISION_LABEL: &str = "swarm-operator.io/revision";
/// Long enough for a task to be replaced on this loaded machine; a push is expected in seconds.
const APPLIED_WITHIN: Duration = Duration::from_secs(120);

/// The service at push `n`: the probe serving HTTP, `PUSH=n` in its environment, so that every
/// push changes its spec and is applied by replacing its task. The probe (PID 1 of a `FROM
/// scratch` image) does not handle SIGTERM: a 1 s stop grace period and update monitor keep
/// Swarm's own waiting (10 s and 5 s by default) from dominating what is measured.
fn web_spec(n: usize) -> String {
    format!(
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {WEB}}}\nspec:\n  image: {PROBE}\n  args: [serve, --port, \"8080\"]\n  replicas: 1\n  env: {{PUSH: \"{n}\"}}\n  stopGracePeriod: 1s\n  updateConfig: {{monitor: 1s}}\n"
    )
}

/// 32 random hex digits from the kernel: the hook secret, new every run.
fn random_secret() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(hex::encode(bytes))
}

/// GitHub's push webhook for `after` on the followed branch, signed with `secret`
/// (`X-Hub-Signature-256`: HMAC-SHA256 of the body): the headers and the body.
fn github_push(secret: &[u8], after: &str) -> (Vec<(&'static str, String)>, Vec<u8>) {
    let body = serde_json::to_vec(&serde_json::json!({
        "ref": format!("refs/heads/{BRANCH}"),
        "after": after,
    }))
    .expect("a JSON object serializes");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes any key");
    mac.update(&body);
    let signature = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let headers = vec![
        ("Content-Type", "application/json".to_owned()),
        ("X-GitHub-Event", "push".to_owned()),
        ("X-Hub-Signature-256", signature),
    ];
    (headers, body)
}

/// `POST /hooks/git` to `addr` as a forge sends it: the status code and body of the answer.
/// Connecting may take 5 s, the answer 10 s.
fn post_hook(
    addr: SocketAddr,
    headers: &[(&str, String)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| e.to_string())?;
    let mut request = format!(
        "POST /hooks/git HTTP/1.0\r\nHost: {addr}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut answer = String::new();
    stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.read_to_string(&mut answer).map(drop))
        .map_err(|e| format!("POST /hooks/git to {addr}: {e}"))?;
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("POST /hooks/git to {addr}: no HTTP status in {answer:?}"))?;
    let text = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    Ok((code, text))
}

/// The operator's revision record in the swarm (the labels `wait --revision` reads): the
/// commit it loaded and the last one it applied; empty strings when unset.
fn record(e: &Env) -> Option<(String, String)> {
    let out = e
        .m
        .docker([
            "config",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"swarm-operator.io/loaded-revision\"}} {{index .Spec.Labels \"swarm-operator.io/applied-revision\"}}",
            &format!("swarm-operator-revision-{INSTANCE}"),
        ])
        .output()
        .ok()?;
    let (loaded, applied) = out.split_once(' ')?;
    Some((loaded.to_owned(), applied.to_owned()))
}

/// `swarm-operator wait --revision SHA` on the manager, as a CI job runs it after a push.
fn wait_revision(e: &Env, sha: &str) -> Outcome {
    let start = Instant::now();
    let report = operator_cli::wait_revision(&e.m, INSTANCE, sha, APPLIED_WITHIN)
        .map_err(|x| x.to_string())?;
    eprintln!(
        "    swarm-operator wait --revision {}: {:?} after {}",
        &sha[..7],
        report.exit,
        xtask::timing::fmt(start.elapsed())
    );
    ensure(report.exit == RevisionExit::Applied, || report.to_string())
}

/// The service's revision label and its `PUSH` variable.
fn web_revision_and_push(e: &Env) -> Result<(String, String), String> {
    let out = e.docker(&[
        "service",
        "inspect",
        "--format",
        &format!(
            "{{{{index .Spec.Labels \"{REVISION_LABEL}\"}}}} {{{{range .Spec.TaskTemplate.ContainerSpec.Env}}}}{{{{.}}}} {{{{end}}}}"
        ),
        WEB,
    ])?;
    let mut words = out.split_whitespace();
    let revision = words.next().unwrap_or_default().to_owned();
    let push = words
        .find_map(|w| w.strip_prefix("PUSH="))
        .unwrap_or_default()
        .to_owned();
    Ok((revision, push))
}

/// The service carries the commit it was written at and that commit's spec.
fn web_is_at(e: &Env, sha: &str, push: usize) -> Outcome {
    let (revision, pushed) = web_revision_and_push(e)?;
    ensure(revision == sha && pushed == push.to_string(), || {
        format!(
            "{WEB}: label {REVISION_LABEL}={revision:?}, PUSH={pushed:?}; expected {sha} and {push}"
        )
    })
}

/// The `q`-quantile (nearest rank) of sorted durations.
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn summary(label: &str, mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "{label}: p50 {}, p90 {}, max {} over {} pushes",
        xtask::timing::fmt(quantile(&times, 0.5)),
        xtask::timing::fmt(quantile(&times, 0.9)),
        xtask::timing::fmt(*times.last().unwrap_or(&Duration::ZERO)),
        times.len()
    )
}

pub fn push_to_applied(e: &Env) -> Outcome {
    let server = GitServer::start(&e.cluster, "specs.git").map_err(|x| x.to_string())?;
    let secret = random_secret()?;
    let node = e.cluster.manager().clone();
    let hook: SocketAddr = format!("{}:{HOOK_PORT}", node.ip)
        .parse()
        .map_err(|x| format!("hook address: {x}"))?;
    let first = server
        .commit(&[("web.yaml", Some(&web_spec(1)))], "web, push 1")
        .map_err(|x| x.to_string())?;
    operator::deploy_git(
        &e.m,
        GitDeployment {
            url: &server.url(),
            instance: INSTANCE,
            node: &node.name,
            hook_port: HOOK_PORT,
        },
        secret.as_bytes(),
    )
    .map_err(|x| x.to_string())?;
    let result = (|| {
        e.m.wait_converged(&[operator::SERVICE], 1, Duration::from_secs(120))
            .map_err(|x| x.to_string())?;
        // The first commit: the hook once the operator answers it, then `wait --revision`.
        let (headers, body) = github_push(secret.as_bytes(), &first);
        let mut answer = Err(String::from("not sent"));
        e.wait(
            "the operator answers its push hook",
            Duration::from_secs(90),
            || {
                answer = post_hook(hook, &headers, &body);
                answer.is_ok()
            },
        )?;
        let (code, text) = answer?;
        ensure(code == 202, || format!("hook for {first}: {code} {text}"))?;
        wait_revision(e, &first)?;
        web_is_at(e, &first, 1)?;

        // A hook signed with another secret is refused.
        let (headers, body) = github_push(b"not-the-secret-not-the-secret", &first);
        let (code, text) = post_hook(hook, &headers, &body)?;
        ensure(code == 401, || {
            format!("a wrongly signed hook got {code} {text}")
        })?;

        // A push changing the spec: hook, `wait --revision`, the service written at it.
        let second = server
            .commit(&[("web.yaml", Some(&web_spec(2)))], "web, push 2")
            .map_err(|x| x.to_string())?;
        let (headers, body) = github_push(secret.as_bytes(), &second);
        let (code, text) = post_hook(hook, &headers, &body)?;
        ensure(code == 202, || format!("hook for {second}: {code} {text}"))?;
        wait_revision(e, &second)?;
        web_is_at(e, &second, 2)?;

        // Push → applied, measured from the hook's POST: to the record naming the commit
        // loaded (fetched and read), to the service written at it (its revision label), and to
        // the record naming it applied (the service Ready on the new spec: what `wait
        // --revision` waits for). Read from the swarm by polling, each read a docker exec of
        // ~0.1-0.3 s here, so each figure is late by up to a round of reads.
        let mut loaded_after = Vec::new();
        let mut written_after = Vec::new();
        let mut applied_after = Vec::new();
        let mut last = second;
        for n in 3..3 + MEASURED_PUSHES {
            let sha = server
                .commit(
                    &[("web.yaml", Some(&web_spec(n)))],
                    &format!("web, push {n}"),
                )
                .map_err(|x| x.to_string())?;
            let (headers, body) = github_push(secret.as_bytes(), &sha);
            let posted = Instant::now();
            let (code, text) = post_hook(hook, &headers, &body)?;
            ensure(code == 202, || format!("hook for {sha}: {code} {text}"))?;
            let mut loaded = None;
            let mut written = None;
            loop {
                let (now_loaded, now_applied) = record(e).unwrap_or_default();
                if loaded.is_none() && (now_loaded == sha || now_applied == sha) {
                    loaded = Some(posted.elapsed());
                }
                if written.is_none()
                    && web_revision_and_push(e).is_ok_and(|(revision, _)| revision == sha)
                {
                    written = Some(posted.elapsed());
                }
                if now_applied == sha {
                    applied_after.push(posted.elapsed());
                    break;
                }
                if posted.elapsed() > APPLIED_WITHIN {
                    return Err(format!(
                        "push {n} ({sha}) not applied after {APPLIED_WITHIN:?}: loaded {now_loaded:?}, applied {now_applied:?}"
                    ));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            loaded_after.extend(loaded);
            written_after.extend(written);
            web_is_at(e, &sha, n)?;
            last = sha;
        }
        wait_revision(e, &last)?;
        for line in [
            summary("push -> service written at it", written_after),
            summary("push -> commit recorded as loaded", loaded_after),
            summary("push -> applied (every object Ready at it)", applied_after),
        ] {
            println!("    {line}");
        }

        // The hook secret shows in none of the operator's logs.
        let (_, out, err) =
            e.m.docker(["service", "logs", "--raw", operator::SERVICE])
                .output_any()
                .map_err(|x| x.to_string())?;
        ensure(!out.contains(&secret) && !err.contains(&secret), || {
            "the hook secret appears in the operator's log".into()
        })
    })();
    // Leave no operator that would recreate the service from its cached commit.
    let _ = e.m.docker(["service", "rm", operator::SERVICE]).output();
    let _ = e.m.docker(["service", "rm", WEB]).output();
    drop(server);
    result
}
