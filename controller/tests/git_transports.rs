//! The git source's authenticated transports against real servers started by the test: ssh
//! with a deploy key and known_hosts (sshd), and https with a token and a CA (`git
//! http-backend` behind lighttpd with TLS and basic auth). Each proves that the right
//! credentials fetch, and that a wrong host key, a wrong token or an untrusted certificate is
//! refused with a clear error that holds no secret.

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use support::git_servers::{HTTPS_TOKEN, HttpsGitServer, SshGitServer, Upstream};
use swarm_operator::git::credentials::{Auth, AuthFiles};

/// Fetches `main` of `url` into a new bare repository in `dir` with `auth`, as the operator's
/// cache does; the fetched commit, or the error's text (scrubbed).
fn fetch(dir: &Path, url: &str, auth: &Auth) -> Result<String, String> {
    let run = || -> Result<String, gix::Error> {
        let mut repo = gix::init_bare(dir.join("cache.git"))?;
        auth.configure(&mut repo)?;
        let remote = repo.remote_at(url)?.with_refspecs(
            ["+refs/heads/main:refs/remotes/origin/main"],
            gix::remote::Direction::Fetch,
        )?;
        let connection = remote.connect(gix::remote::Direction::Fetch)?;
        let connection = auth.authorize(&repo, url.into(), connection);
        connection
            .prepare_fetch(gix::progress::Discard, Default::default())?
            .receive(gix::progress::Discard, &AtomicBool::new(false))?;
        let id = repo.find_reference("refs/remotes/origin/main")?.id();
        Ok(id.to_string())
    };
    run().map_err(|e| auth.explain(&e))
}

fn spec(name: &str) -> String {
    format!(
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: {name}\n"
    )
}

#[test]
fn ssh_with_a_deploy_key_fetches_and_refuses_an_unknown_host_key() {
    let (Some(upstream), Some(server)) = (Upstream::new("git_ssh"), SshGitServer::start("git_ssh"))
    else {
        return;
    };
    let pushed = upstream.commit("app", &[("app.yaml", &spec("app"))], "app");
    let url = server.url(&upstream.bare("app"));
    let files = AuthFiles {
        ssh_key: Some(server.deploy_key()),
        known_hosts: Some(server.known_hosts()),
        ..AuthFiles::default()
    };
    let auth = Auth::load(&url, &files).expect("the deploy key and known_hosts");
    let dir = tempfile::tempdir().expect("temp dir");
    let fetched = fetch(dir.path(), &url, &auth);
    assert_eq!(
        fetched.as_deref(),
        Ok(pushed.as_str()),
        "sshd log:\n{}",
        server.log()
    );

    // Another key for the server's address: ssh refuses, nothing is fetched.
    let wrong = Auth::load(
        &url,
        &AuthFiles {
            known_hosts: Some(server.wrong_known_hosts()),
            ..files
        },
    )
    .expect("files are readable");
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = fetch(dir.path(), &url, &wrong).expect_err("an unknown host key is refused");
    eprintln!("wrong host key: {refused}");
    assert!(
        refused
            .starts_with("ssh ended the connection before git could speak: the server's host key"),
        "{refused}"
    );
    assert!(
        !dir.path()
            .join("cache.git/refs/remotes/origin/main")
            .exists(),
        "nothing was fetched"
    );
}

#[test]
fn https_with_a_token_fetches_and_refuses_a_wrong_token_and_an_untrusted_certificate() {
    let Some(upstream) = Upstream::new("git_https") else {
        return;
    };
    let Some(server) = HttpsGitServer::start("git_https", upstream.root()) else {
        return;
    };
    let pushed = upstream.commit("app", &[("app.yaml", &spec("app"))], "app");
    let url = server.url("app");
    let files = AuthFiles {
        token: Some(server.token_file("token", HTTPS_TOKEN)),
        ca: Some(server.ca()),
        ..AuthFiles::default()
    };
    let auth = Auth::load(&url, &files).expect("the token and the CA");
    let dir = tempfile::tempdir().expect("temp dir");
    assert_eq!(
        fetch(dir.path(), &url, &auth).as_deref(),
        Ok(pushed.as_str()),
        "lighttpd log:\n{}",
        server.log()
    );

    let wrong_token = "sot-wrong-token-9b2d";
    let wrong = Auth::load(
        &url,
        &AuthFiles {
            token: Some(server.token_file("wrong", wrong_token)),
            ..files.clone()
        },
    )
    .expect("files are readable");
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = fetch(dir.path(), &url, &wrong).expect_err("a wrong token is refused");
    eprintln!("wrong token: {refused}");
    assert!(
        refused.starts_with("the git server refused the token of --git-token-file"),
        "{refused}"
    );
    assert!(!refused.contains(wrong_token), "{refused}");
    // Without a token the server's demand is named, and nothing is prompted.
    let anonymous = Auth::load(
        &url,
        &AuthFiles {
            token: None,
            ..files.clone()
        },
    )
    .expect("the CA");
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = fetch(dir.path(), &url, &anonymous).expect_err("credentials are required");
    assert!(
        refused
            .starts_with("the git server asks for credentials: give a token with --git-token-file"),
        "{refused}"
    );

    let untrusted = Auth::load(&url, &AuthFiles { ca: None, ..files }).expect("the system's roots");
    let dir = tempfile::tempdir().expect("temp dir");
    let refused = fetch(dir.path(), &url, &untrusted).expect_err("the test CA is not trusted");
    eprintln!("untrusted: {refused}");
    assert!(
        refused.starts_with("the git server's TLS certificate is not accepted (UnknownIssuer)"),
        "{refused}"
    );
    assert!(!refused.contains(HTTPS_TOKEN), "{refused}");
}
