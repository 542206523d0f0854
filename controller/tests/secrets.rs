//! `apply` keeps a SwarmSecret's content out of every swarm config: it creates the swarm secret
//! itself and stores a spec that only names it; the operator (`run --source swarm`) mounts it,
//! rotates it, and collects it. On the real single-node swarm of the local Docker engine.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use base64::Engine as _;
use support::{Swarm, docker, docker_output};

const CONVERGE: Duration = Duration::from_secs(90);

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The decoded data of every config in the swarm (all of them, not only this test's: the
/// plaintext must be in none).
fn every_config_data() -> Vec<(String, Vec<u8>)> {
    let ids = docker(&["config", "ls", "-q"]);
    ids.lines()
        .filter_map(|id| {
            let out = docker_output(&[
                "config",
                "inspect",
                "--format",
                "{{.Spec.Name}} {{json .Spec.Data}}",
                id,
            ]);
            // Removed between the list and the inspect: nothing to check.
            if !out.status.success() {
                return None;
            }
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            let (name, data) = text.split_once(' ')?;
            let encoded: String = serde_json::from_str(data).unwrap();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap();
            Some((name.to_owned(), decoded))
        })
        .collect()
}

fn assert_no_config_holds(plaintext: &str) {
    for (name, data) in every_config_data() {
        let data = String::from_utf8_lossy(&data);
        assert!(
            !data.contains(plaintext),
            "config {name} holds the secret's plaintext"
        );
    }
}

/// Names of the secrets of this test's operator instance.
fn instance_secrets(swarm: &Swarm) -> Vec<String> {
    let filter = format!("label=swarm-operator.io/instance={}", swarm.prefix);
    let out = docker(&["secret", "ls", "--filter", &filter, "--format", "{{.Name}}"]);
    let mut names: Vec<String> = out.lines().map(str::to_owned).collect();
    names.sort();
    names
}

fn remove_instance_secrets(swarm: &Swarm) {
    for name in instance_secrets(swarm) {
        let _ = docker_output(&["secret", "rm", &name]);
    }
}

/// What the running task of `service` reads from `/run/secrets/db`, if a task runs.
fn mounted_content(swarm: &Swarm, service: &str) -> Option<String> {
    let filter = format!(
        "label=com.docker.swarm.service.name={}",
        swarm.name(service)
    );
    let ids = docker(&["ps", "-q", "--filter", &filter]);
    ids.lines().find_map(|id| {
        let out = docker_output(&["exec", id, "busybox", "cat", "/run/secrets/db"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
}

/// The name `apply` printed for the secret it created (`secret NAME created`).
fn created_secret(output: &std::process::Output) -> String {
    stdout(output)
        .lines()
        .find_map(|l| l.strip_prefix("secret ")?.strip_suffix(" created"))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no secret created: {output:?}"))
}

fn app_spec(swarm: &Swarm) -> String {
    format!(
        "{}  secrets: [{{name: {}, target: db}}]\n---\napiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: {}}}\nspec: {{file: db.txt}}\n",
        swarm.service_spec("app", 1, None),
        swarm.name("db"),
        swarm.name("db"),
    )
}

/// apply a SwarmSecret read from a file and a service mounting it: no config holds the
/// plaintext (nor the mirror on disk), the task reads the right content; a changed secret
/// applied again rotates the service onto a new secret, and the old ones are collected once
/// unused; deleting the spec removes the service and then the secret.
#[test]
fn apply_creates_the_secret_and_stores_no_plaintext_in_any_config() {
    let Some(swarm) = Swarm::start("secrets") else {
        return;
    };
    remove_instance_secrets(&swarm);
    let specs = swarm.specs.path().to_str().unwrap().to_owned();
    let plaintext = |n: u32| format!("pw-{}-{n}-do-not-store", swarm.prefix);
    std::fs::write(swarm.specs.path().join("db.txt"), plaintext(1)).unwrap();
    swarm.write_spec("app.yaml", &app_spec(&swarm));
    // A second file, so that deleting app.yaml leaves a stored set to prune against.
    swarm.write_spec("keep.yaml", &swarm.network_spec("net"));

    let applied = swarm.cli(&["apply", &specs]);
    assert!(applied.status.success(), "{applied:?}");
    let first = created_secret(&applied);
    assert!(
        first.starts_with(&format!("{}-", swarm.name("db"))),
        "{first}"
    );
    assert_eq!(instance_secrets(&swarm), std::slice::from_ref(&first));
    let labels = docker(&[
        "secret",
        "inspect",
        "--format",
        "{{json .Spec.Labels}}",
        &first,
    ]);
    assert!(
        labels.contains("\"swarm-operator.io/created-by\":\"apply\""),
        "{labels}"
    );
    assert!(!stdout(&applied).contains(&plaintext(1)));
    assert_no_config_holds(&plaintext(1));
    // The stored app.yaml names the secret instead.
    assert!(
        every_config_data()
            .iter()
            .any(|(_, data)| String::from_utf8_lossy(data)
                .contains(&format!("\"appliedSecret\": \"{first}\""))),
        "a stored spec names {first}"
    );

    let mirror = swarm.specs.path().with_extension("mirror");
    let operator = swarm.operator_with(
        &["--source", "swarm", "--specs", mirror.to_str().unwrap()],
        &swarm.status,
        "",
        &[],
    );
    swarm.wait("the task reads the first secret", CONVERGE, || {
        mounted_content(&swarm, "app").as_deref() == Some(plaintext(1).as_str())
    });
    for entry in std::fs::read_dir(&mirror).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        assert!(
            !text.contains(&plaintext(1)),
            "the mirror holds the plaintext"
        );
    }

    // Rotation: new content, applied again.
    std::fs::write(swarm.specs.path().join("db.txt"), plaintext(2)).unwrap();
    let applied = swarm.cli(&["apply", &specs]);
    assert!(applied.status.success(), "{applied:?}");
    let second = created_secret(&applied);
    assert_ne!(second, first);
    assert_no_config_holds(&plaintext(2));
    swarm.wait("the task reads the second secret", CONVERGE, || {
        mounted_content(&swarm, "app").as_deref() == Some(plaintext(2).as_str())
    });
    // Once more: the first secret is no longer the current nor the previous (kept for swarm's
    // rollback) version of any service, so the operator removes it.
    std::fs::write(swarm.specs.path().join("db.txt"), plaintext(3)).unwrap();
    let applied = swarm.cli(&["apply", &specs]);
    assert!(applied.status.success(), "{applied:?}");
    let third = created_secret(&applied);
    swarm.wait("the task reads the third secret", CONVERGE, || {
        mounted_content(&swarm, "app").as_deref() == Some(plaintext(3).as_str())
    });
    swarm.wait("the first secret collected", CONVERGE, || {
        !instance_secrets(&swarm).contains(&first)
    });
    let left = instance_secrets(&swarm);
    assert!(left.contains(&third), "{left:?}");
    assert_no_config_holds(&plaintext(3));

    // delete: the spec goes, the operator removes the service, and with it its secrets.
    let deleted = swarm.cli(&["delete", "app.yaml"]);
    assert!(stdout(&deleted).contains("app.yaml removed"), "{deleted:?}");
    swarm.wait("the service removed", CONVERGE, || {
        swarm.service_replicas("app").is_none()
    });
    swarm.wait("every apply-created secret removed", CONVERGE, || {
        instance_secrets(&swarm).is_empty()
    });
    drop(operator);
    let _ = std::fs::remove_dir_all(&mirror);
    remove_instance_secrets(&swarm);
}

/// Without an operator: `delete` itself removes the secrets `apply` created that no stored
/// spec names and no service mounts.
#[test]
fn delete_removes_the_secrets_apply_created() {
    let Some(swarm) = Swarm::start("secretsdel") else {
        return;
    };
    remove_instance_secrets(&swarm);
    let specs = swarm.specs.path().to_str().unwrap().to_owned();
    let plaintext = format!("inline-{}-never-in-a-config", swarm.prefix);
    swarm.write_spec(
        "token.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmSecret\nmetadata: {{name: {}}}\nspec:\n  data: {plaintext}\n",
            swarm.name("token")
        ),
    );
    swarm.write_spec("keep.yaml", &swarm.network_spec("net"));
    let applied = swarm.cli(&["apply", &specs]);
    assert!(applied.status.success(), "{applied:?}");
    let secret = created_secret(&applied);
    assert_no_config_holds(&plaintext);
    // Applying the same content again creates nothing new.
    let again = swarm.cli(&["apply", &specs]);
    assert!(again.status.success(), "{again:?}");
    assert!(!stdout(&again).contains("created"), "{again:?}");
    assert_eq!(instance_secrets(&swarm), std::slice::from_ref(&secret));

    let deleted = swarm.cli(&["delete", "token.yaml"]);
    assert!(deleted.status.success(), "{deleted:?}");
    assert!(
        stdout(&deleted).contains(&format!("secret {secret} removed")),
        "{deleted:?}"
    );
    assert!(instance_secrets(&swarm).is_empty());
}
