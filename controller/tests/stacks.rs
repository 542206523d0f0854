//! Real stacks on the real swarm: `docker stack deploy` and `import-compose` + the operator
//! must produce the same services, and a config edit must roll exactly the services that
//! mount it.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Swarm, docker, docker_output};

const CONVERGE: Duration = Duration::from_secs(90);

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/stacks")
}

/// Labels that say who deployed an object, not what it is.
fn deployer_label(key: &str) -> bool {
    key.starts_with("com.docker.stack.") || key.starts_with("swarm-operator.io/")
}

/// Object ids are per deployment: networks are compared by name, configs and secrets by
/// name without the version suffix (their contents are compared separately).
fn normalize(spec: &mut Value, network_names: &BTreeMap<String, String>) {
    for pointer in ["/Labels", "/TaskTemplate/ContainerSpec/Labels"] {
        if let Some(map) = spec.pointer_mut(pointer).and_then(Value::as_object_mut) {
            map.retain(|k, _| !deployer_label(k));
        }
    }
    if let Some(networks) = spec
        .pointer_mut("/TaskTemplate/Networks")
        .and_then(Value::as_array_mut)
    {
        for n in networks {
            let id = n["Target"].as_str().unwrap_or_default().to_owned();
            n["Target"] = network_names.get(&id).cloned().unwrap_or(id).into();
        }
    }
    // A credential spec names its config by id: compared by the name of the reference that
    // has that id.
    let credential_config = spec
        .pointer("/TaskTemplate/ContainerSpec/Privileges/CredentialSpec/Config")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    if let Some(id) = credential_config {
        let name = spec
            .pointer("/TaskTemplate/ContainerSpec/Configs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|r| r["ConfigID"] == id.as_str())
            .and_then(|r| r["ConfigName"].as_str())
            .map_or_else(
                || format!("no reference has id {id}"),
                |n| unversioned(n).to_owned(),
            );
        spec["TaskTemplate"]["ContainerSpec"]["Privileges"]["CredentialSpec"]["Config"] =
            name.into();
    }
    for (list, id, name) in [
        ("Configs", "ConfigID", "ConfigName"),
        ("Secrets", "SecretID", "SecretName"),
    ] {
        let pointer = format!("/TaskTemplate/ContainerSpec/{list}");
        for r in spec
            .pointer_mut(&pointer)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            r.as_object_mut().unwrap().remove(id);
            let versioned = r[name].as_str().unwrap_or_default().to_owned();
            r[name] = unversioned(&versioned).into();
        }
    }
}

/// `shop_proxy_conf-0123456789` → `shop_proxy_conf`.
fn unversioned(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, hash)) if hash.len() == 10 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            base
        }
        _ => name,
    }
}

/// Every leaf of `value` as `path = json`.
fn leaves(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                leaves(&format!("{prefix}[{i}]"), v, out);
            }
        }
        other => {
            out.insert(prefix.to_owned(), other.to_string());
        }
    }
}

/// The stack's services as `docker service inspect` shows them, normalized, by name; and the
/// contents of the configs they mount, by unversioned name.
struct Deployed {
    services: BTreeMap<String, Value>,
    configs: BTreeMap<String, String>,
}

impl Deployed {
    /// The same deployment as if made under stack name `to` instead of `from`.
    fn renamed(self, from: &str, to: &str) -> Deployed {
        let rename = |value: &Value| -> Value {
            serde_json::from_str(&value.to_string().replace(from, to)).unwrap()
        };
        Deployed {
            services: self
                .services
                .iter()
                .map(|(name, spec)| (name.replace(from, to), rename(spec)))
                .collect(),
            configs: self
                .configs
                .into_iter()
                .map(|(name, data)| (name.replace(from, to), data))
                .collect(),
        }
    }
}

fn capture(stack: &str) -> Deployed {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let ids = docker(&["service", "ls", "-q", "--filter", &filter]);
    let ids: Vec<&str> = ids.lines().collect();
    let mut args = vec!["service", "inspect"];
    args.extend(&ids);
    let inspected: Value = serde_json::from_str(&docker(&args)).expect("inspect JSON");
    let networks: BTreeMap<String, String> = docker(&[
        "network",
        "ls",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Name}}",
    ])
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(id, name)| (id.to_owned(), name.to_owned()))
    .collect();
    let mut services = BTreeMap::new();
    let mut configs = BTreeMap::new();
    for service in inspected.as_array().unwrap() {
        let mut spec = service["Spec"].clone();
        for c in spec
            .pointer("/TaskTemplate/ContainerSpec/Configs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = c["ConfigName"].as_str().unwrap();
            let data = docker(&["config", "inspect", "--format", "{{json .Spec.Data}}", name]);
            configs.insert(unversioned(name).to_owned(), data);
        }
        normalize(&mut spec, &networks);
        let name = spec["Name"].as_str().unwrap().to_owned();
        // Besides the spec: what swarm made of the endpoint (published ports) and that there is
        // no previous spec. Ids, versions, dates and virtual IPs are per deployment.
        // A port the spec leaves unpublished gets one from swarm's range: per deployment.
        let mut ports = service["Endpoint"]["Ports"].clone();
        for (sent, port) in spec
            .pointer("/EndpointSpec/Ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .zip(ports.as_array_mut().into_iter().flatten())
        {
            if sent.get("PublishedPort").is_none() {
                port["PublishedPort"] = "assigned by swarm".into();
            }
        }
        let compared = serde_json::json!({
            "Spec": spec,
            "Endpoint.Spec": service["Endpoint"]["Spec"],
            "Endpoint.Ports": ports,
            "PreviousSpec": service["PreviousSpec"],
        });
        services.insert(name, compared);
    }
    Deployed { services, configs }
}

/// Removes everything of `stack` (the operator's objects carry the stack label too) and waits
/// until it is gone, so the next deployment can take the same names and ports.
fn remove_stack(stack: &str) {
    let _ = docker_output(&["stack", "rm", stack]);
    let filter = format!("label=com.docker.stack.namespace={stack}");
    let start = Instant::now();
    loop {
        let left: usize = ["service", "network", "config", "secret"]
            .iter()
            .map(|kind| {
                let ids = docker(&[kind, "ls", "-q", "--filter", &filter]);
                ids.lines()
                    .filter(|id| *kind != "network" || swarm_has_network(id))
                    .count()
            })
            .sum();
        if left == 0 {
            return;
        }
        if start.elapsed() > Duration::from_secs(60) {
            panic!("stack {stack} still has {left} objects after 60s");
        }
        // Configs and secrets go once the tasks that held them are gone.
        let _ = docker_output(&["stack", "rm", stack]);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Whether the swarm still has network `id`. Docker 20.10 goes on listing an overlay network
/// that the swarm removed while the exited containers of a finished job still sat on it
/// (`docker network rm` then answers "not found"): that one is gone.
fn swarm_has_network(id: &str) -> bool {
    let out = docker_output(&["network", "rm", id]);
    !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("not found")
}

fn wait_for(what: &str, timeout: Duration, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn service_count(stack: &str) -> usize {
    let filter = format!("label=com.docker.stack.namespace={stack}");
    docker(&["service", "ls", "-q", "--filter", &filter])
        .lines()
        .count()
}

/// Deploys `files` once with `docker stack deploy` and once with `import-compose` and the
/// operator, and returns the differences between the two, one line each.
fn differences(swarm: &Swarm, stack: &str, files: &[&str], env: &[(&str, &str)]) -> Vec<String> {
    // Leftovers of an interrupted run would hold the names and ports.
    remove_stack(stack);
    let dir = fixtures().join(files[0]).parent().unwrap().to_owned();
    let mut deploy = Command::new("docker");
    deploy
        .current_dir(&dir)
        .args(["stack", "deploy", "-d", "--resolve-image", "never"]);
    for f in files {
        deploy.arg("-c").arg(fixtures().join(f));
    }
    // Under its own stack name: Docker 20.10 may go on listing a network of the removed stack
    // (see `swarm_has_network`), which must not pass for the operator's.
    let cli_stack = format!("{stack}cli");
    remove_stack(&cli_stack);
    let out = deploy
        .arg(&cli_stack)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let expected = files_service_count(files);
    wait_for("stack deploy", CONVERGE, || {
        service_count(&cli_stack) == expected
    });
    let by_cli = capture(&cli_stack).renamed(&cli_stack, stack);
    remove_stack(&cli_stack);

    let mut import = Command::new(env!("CARGO_BIN_EXE_swarm-operator"));
    import.arg("import-compose");
    for f in files {
        import.arg(fixtures().join(f));
    }
    let out = import
        .args(["--stack", stack, "--out"])
        .arg(swarm.specs.path())
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "import-compose: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut operator = swarm.operator();
    wait_for("operator deploy", CONVERGE, || {
        service_count(stack) == expected
    });
    // Settled: the status file lists every service (written after the creates).
    let names: Vec<String> = by_cli.services.keys().cloned().collect();
    wait_for("status", CONVERGE, || {
        swarm
            .status()
            .is_some_and(|s| names.iter().all(|n| !s["services"][n].is_null()))
    });
    let by_operator = capture(stack);
    // What it created reads back as what it wants: no update follows (a field that read back
    // differently would be rewritten on every look).
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        requests(&operator, "update_service"),
        0,
        "{stack}: services updated after their creation: {}",
        operator.log()
    );
    assert!(
        operator.stop(),
        "operator exits cleanly: {}",
        operator.log()
    );
    for line in operator.log().lines() {
        assert!(
            !line.contains("token-for-tests-only"),
            "secret in log: {line}"
        );
        assert!(!line.contains("not-a-real-key"), "secret in log: {line}");
    }
    remove_stack(stack);
    for entry in std::fs::read_dir(swarm.specs.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    let mut diffs = Vec::new();
    assert_eq!(
        by_cli.services.keys().collect::<Vec<_>>(),
        by_operator.services.keys().collect::<Vec<_>>()
    );
    for (name, spec) in &by_cli.services {
        let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
        leaves("", spec, &mut a);
        leaves("", &by_operator.services[name], &mut b);
        for key in a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if a.get(key) != b.get(key) {
                diffs.push(format!(
                    "{name}{key}: stack deploy {:?}, operator {:?}",
                    a.get(key),
                    b.get(key)
                ));
            }
        }
    }
    if by_cli.configs != by_operator.configs {
        diffs.push(format!(
            "config contents: stack deploy {:?}, operator {:?}",
            by_cli.configs, by_operator.configs
        ));
    }
    diffs
}

/// How many services the compose files declare (top-level `services:` keys).
fn files_service_count(files: &[&str]) -> usize {
    let mut names = std::collections::BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(fixtures().join(f)).unwrap();
        let mut in_services = false;
        for line in text.lines() {
            if line.starts_with("services:") {
                in_services = true;
            } else if !line.starts_with(' ') && !line.starts_with('#') && !line.is_empty() {
                in_services = false;
            } else if in_services
                && line.starts_with("  ")
                && !line.starts_with("   ")
                && line.trim_end().ends_with(':')
            {
                names.insert(line.trim().trim_end_matches(':').to_owned());
            }
        }
    }
    names.len()
}

/// A stack: name suffix, compose files, environment for interpolation.
type Case = (
    &'static str,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

/// The acceptance test of issue 8: three realistic stacks (global mode, placement constraints
/// and preferences, resources, restart/update/rollback policies, configs from files, an
/// external secret, named volumes and bind mounts, several networks incl. an encrypted one,
/// env interpolation with defaults, ports in both syntaxes, two files merged) deploy to the
/// same services either way: zero differences in `docker service inspect`'s `Spec`, endpoint
/// and previous spec,
/// ignoring only the deployers' labels and config/secret ids and version suffixes (their
/// contents are compared).
#[test]
fn import_compose_and_the_operator_deploy_what_stack_deploy_deploys() {
    let Some(swarm) = Swarm::start("stackequiv") else {
        return;
    };
    // The shop's external secret; created here unless someone's already has it.
    let created_secret = !docker_output(&["secret", "inspect", "shop_db_password"])
        .status
        .success();
    if created_secret {
        let out = Command::new("sh")
            .args(["-c", "printf pw | docker secret create shop_db_password -"])
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let cases: [Case; 3] = [
        ("s", &["shop/stack.yml"], &[]),
        ("m", &["metrics/stack.yml"], &[]),
        (
            "l",
            &["ledger/stack.yml", "ledger/stack.prod.yml"],
            // docker stack deploy reads no `.env`: its variables are passed explicitly.
            &[("REGION", "eu-1"), ("LEDGER_MODE", "clustered")],
        ),
    ];
    let mut all = Vec::new();
    for (tag, files, env) in cases {
        let stack = format!("{}{tag}", swarm.prefix);
        let diffs = differences(&swarm, &stack, files, env);
        eprintln!(
            "{stack} ({}): {} difference(s)",
            files.join(" + "),
            diffs.len()
        );
        all.extend(diffs);
    }
    if created_secret {
        let _ = docker_output(&["secret", "rm", "shop_db_password"]);
    }
    assert!(all.is_empty(), "differences:\n{}", all.join("\n"));
}

/// Issue 18: one compose file with every key `docker stack deploy` converts into a service
/// spec that an Engine API 1.41 engine stores (`fixtures/stacks/every`: capabilities, ulimits,
/// sysctls, init, read-only root, stop signal, isolation, credential specs (a registry value
/// and a swarm config, which gets a runtime reference), generic
/// resources, a pids limit, max replicas per node, update and rollback policies, every mount
/// form with its options, ports and configs/secrets in both forms, logging, DNS, hosts, all
/// four modes) deploys to the same services either way, field by field.
#[test]
fn every_key_stack_deploy_maps_deploys_the_same_either_way() {
    let Some(swarm) = Swarm::start("everykey") else {
        return;
    };
    let stack = format!("{}e", swarm.prefix);
    let diffs = differences(&swarm, &stack, &["every/stack.yml"], &[]);
    assert!(
        diffs.is_empty(),
        "{} difference(s):\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Issue 18: a native `updateConfig`/`rollbackConfig` without `parallelism` sends what the
/// docker CLI sends (1), so the same service made by `docker stack deploy` and by a native
/// spec has the same policies and a service moved between the tools needs no update.
#[test]
fn native_update_and_rollback_policies_get_the_clis_defaults() {
    let Some(swarm) = Swarm::start("nativedefaults") else {
        return;
    };
    let cli_stack = format!("{}cli", swarm.prefix);
    remove_stack(&cli_stack);
    let compose = tempfile::tempdir().unwrap();
    let file = compose.path().join("stack.yml");
    std::fs::write(
        &file,
        format!(
            "services:\n  web:\n    image: {}\n    deploy:\n      replicas: 0\n      update_config: {{delay: 5s, order: start-first}}\n      rollback_config: {{monitor: 5s}}\n",
            support::TEST_IMAGE
        ),
    )
    .unwrap();
    let out = docker_output(&[
        "stack",
        "deploy",
        "-d",
        "--resolve-image",
        "never",
        "-c",
        file.to_str().unwrap(),
        &cli_stack,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let native = swarm.name("web");
    swarm.write_spec(
        "web.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {native}}}\nspec:\n  image: {}\n  replicas: 0\n  updateConfig: {{delay: 5s, order: start-first}}\n  rollbackConfig: {{monitor: 5s}}\n",
            support::TEST_IMAGE
        ),
    );
    let mut operator = swarm.operator();
    wait_for("native service", CONVERGE, || {
        docker_output(&["service", "inspect", &native])
            .status
            .success()
    });
    let policies = |service: &str| -> Vec<Value> {
        ["UpdateConfig", "RollbackConfig"]
            .iter()
            .map(|field| {
                let format = format!("{{{{json .Spec.{field}}}}}");
                serde_json::from_str(&docker(&[
                    "service", "inspect", "--format", &format, service,
                ]))
                .unwrap()
            })
            .collect()
    };
    let by_cli = policies(&format!("{cli_stack}_web"));
    let by_operator = policies(&native);
    remove_stack(&cli_stack);
    assert!(operator.stop(), "{}", operator.log());
    assert_eq!(by_cli[0]["Parallelism"], 1, "{by_cli:?}");
    assert_eq!(by_cli[1]["Parallelism"], 1, "{by_cli:?}");
    assert_eq!(by_operator, by_cli);
}

/// `validate` asks the engine for its API version: a field the engine would drop without a
/// word is an error at its location, naming the version it needs and the engine's.
#[test]
fn validate_refuses_fields_the_engine_does_not_know() {
    let Some(swarm) = Swarm::start("apigate") else {
        return;
    };
    let engine = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    let minor: u32 = engine
        .split_once('.')
        .and_then(|(_, m)| m.parse().ok())
        .unwrap();
    let spec = format!(
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {}web}}\nspec:\n  image: {}\n  oomScoreAdj: 100\n",
        swarm.prefix,
        support::TEST_IMAGE
    );
    std::fs::write(swarm.specs.path().join("web.yaml"), spec).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
        .arg("validate")
        .arg(swarm.specs.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if minor >= 46 {
        assert!(out.status.success(), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        let expected = format!(
            "web.yaml:6:16: spec.oomScoreAdj: needs Docker Engine API 1.46 or later; the engine speaks {engine}"
        );
        assert!(stdout.contains(&expected), "{stdout}");
    }
    // In a SwarmStack, the error is at the key in the compose file, not at the SwarmStack.
    std::fs::remove_file(swarm.specs.path().join("web.yaml")).unwrap();
    std::fs::write(
        swarm.specs.path().join("docker-stack.yml"),
        format!(
            "services:\n  web:\n    image: {}\n    oom_score_adj: 100\n",
            support::TEST_IMAGE
        ),
    )
    .unwrap();
    std::fs::write(
        swarm.specs.path().join("stack.yaml"),
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {{name: {}st}}\nspec:\n  composeFiles: [docker-stack.yml]\n",
            swarm.prefix
        ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_swarm-operator"))
        .arg("validate")
        .arg(swarm.specs.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if minor >= 46 {
        assert!(out.status.success(), "{stdout}");
    } else {
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        let expected = format!(
            "docker-stack.yml:4:5: services.web.oom_score_adj: needs Docker Engine API 1.46 or later; the engine speaks {engine}"
        );
        assert!(stdout.contains(&expected), "{stdout}");
        assert!(
            !stdout.contains("stack.yaml:"),
            "not at the SwarmStack: {stdout}"
        );
    }
}

/// Removes this test's services, then its configs and secrets, also when the test fails
/// (the harness cleans up services and networks only).
struct DataCleanup(String);

impl Drop for DataCleanup {
    fn drop(&mut self) {
        let filter = format!("name={}", self.0);
        let services = docker(&["service", "ls", "-q", "--filter", &filter]);
        for id in services.lines() {
            let _ = docker_output(&["service", "rm", id]);
        }
        let owned = format!("label=swarm-operator.io/instance={}", self.0);
        for _ in 0..60 {
            let mut left = 0;
            for kind in ["config", "secret"] {
                for id in docker(&[kind, "ls", "-q", "--filter", &owned]).lines() {
                    left += usize::from(!docker_output(&[kind, "rm", id]).status.success());
                }
            }
            if left == 0 {
                return;
            }
            // Still mounted by a service that is going away.
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// `swarm_operator_docker_requests_total{op="<op>",outcome="ok"}` of a running operator.
fn requests(operator: &support::Operator, op: &str) -> u64 {
    let (_, metrics) = operator.http_get("/metrics").expect("metrics answer");
    let key = format!(r#"swarm_operator_docker_requests_total{{op="{op}",outcome="ok"}} "#);
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// The versioned config and secret names a service mounts.
fn mounted(service: &str) -> Vec<String> {
    let format = "{{range .Spec.TaskTemplate.ContainerSpec.Configs}}{{.ConfigName}} {{end}}{{range .Spec.TaskTemplate.ContainerSpec.Secrets}}{{.SecretName}} {{end}}";
    docker(&["service", "inspect", "--format", format, service])
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// The operator's versions of logical config/secret `name` on the swarm.
fn versions(kind: &str, name: &str) -> Vec<String> {
    let filter = format!("label=swarm-operator.io/logical-name={name}");
    let mut names: Vec<String> =
        docker(&[kind, "ls", "--filter", &filter, "--format", "{{.Name}}"])
            .lines()
            .map(str::to_owned)
            .collect();
    names.sort();
    names
}

/// Config rotation: an edited config rolls exactly the services that mount it (one update
/// each), the others keep their version; a resync writes nothing; old versions go, the
/// previous one stays and `docker service rollback` finds it; a secret's content is in no status, log or diff.
#[test]
fn a_config_edit_rolls_exactly_its_services_and_old_versions_go() {
    let Some(swarm) = Swarm::start("rotation") else {
        return;
    };
    let _data_cleanup = DataCleanup(swarm.prefix.clone());
    let (conf, token) = (swarm.name("conf"), swarm.name("token"));
    let data = |kind: &str, name: &str, body: &str| {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\nspec:\n  data: {body}\n"
        )
    };
    let service = |name: &str, mounts: &str| {
        format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata: {{name: {}}}\nspec:\n  image: {}\n  args: [sleep, \"3600\"]\n  stopGracePeriod: 1s\n{mounts}",
            swarm.name(name),
            support::TEST_IMAGE
        )
    };
    // The config's content is a file in a subdirectory, edited like a user would.
    let conf_file = swarm.specs.path().join("files/app.conf");
    std::fs::create_dir_all(conf_file.parent().unwrap()).unwrap();
    // Written by rename, as editors save: a resync never reads a half-written file.
    let save = |text: &str| {
        let tmp = conf_file.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &conf_file).unwrap();
    };
    save("listen-1");
    swarm.write_spec(
        "conf.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmConfig\nmetadata: {{name: {conf}}}\nspec:\n  file: ./files/app.conf\n"
        ),
    );
    swarm.write_spec("token.yaml", &data("SwarmSecret", &token, "hunter2-first"));
    swarm.write_spec(
        "a.yaml",
        &service(
            "a",
            &format!("  configs: [{{name: {conf}, target: /etc/app.conf}}]\n  secrets: [{{name: {token}}}]\n"),
        ),
    );
    swarm.write_spec(
        "b.yaml",
        &service(
            "b",
            &format!("  configs: [{{name: {conf}, target: /etc/b.conf, mode: \"0400\"}}]\n"),
        ),
    );
    swarm.write_spec("c.yaml", &service("c", ""));
    let mut operator = swarm.operator();
    let (a, b, c) = (swarm.name("a"), swarm.name("b"), swarm.name("c"));
    let running = |name: &str| {
        swarm
            .status()
            .is_some_and(|s| s["services"][name]["runningReplicas"] == 1)
    };
    wait_for("three services running", CONVERGE, || {
        running(&a) && running(&b) && running(&c)
    });
    let v1 = versions("config", &conf);
    assert_eq!(v1.len(), 1, "{v1:?}");
    assert!(mounted(&a).contains(&v1[0]) && mounted(&b).contains(&v1[0]));
    // The task really has the file, with the content.
    let task = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={a}"),
    ]);
    let task = task.lines().next().expect("a task of a");
    assert_eq!(
        docker(&["exec", task, "/bin/busybox", "cat", "/etc/app.conf"]),
        "listen-1"
    );
    assert_eq!(
        docker(&[
            "exec",
            task,
            "/bin/busybox",
            "cat",
            &format!("/run/secrets/{token}")
        ]),
        "hunter2-first"
    );

    // A few resyncs (every 2 s) write nothing.
    let (va, vb, vc) = (
        swarm.service_version("a"),
        swarm.service_version("b"),
        swarm.service_version("c"),
    );
    let updates = requests(&operator, "update_service");
    let config_creates = requests(&operator, "create_config");
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        requests(&operator, "update_service"),
        updates,
        "no-op resyncs"
    );
    assert_eq!(swarm.service_version("a"), va);

    // Edit the config: a and b roll once each, c is untouched.
    save("listen-2");
    wait_for("a and b on the new version", CONVERGE, || {
        let v = versions("config", &conf);
        v.len() == 2
            && v.iter()
                .any(|n| !v1.contains(n) && mounted(&a).contains(n) && mounted(&b).contains(n))
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        requests(&operator, "update_service"),
        updates + 2,
        "one update per service"
    );
    assert_eq!(
        requests(&operator, "create_config"),
        config_creates + 1,
        "one new version for both services"
    );
    assert_eq!(
        swarm.service_version("c"),
        vc,
        "c mounts nothing: untouched"
    );
    assert_ne!(swarm.service_version("a"), va);
    assert_ne!(swarm.service_version("b"), vb);
    assert_eq!(
        versions("config", &conf).len(),
        2,
        "the previous version stays"
    );

    // Again: now the first version goes, current and previous stay.
    save("listen-3");
    wait_for("the oldest version removed", CONVERGE, || {
        let v = versions("config", &conf);
        v.len() == 2 && !v.contains(&v1[0])
    });

    // A rollback to the previous spec still finds its config (the operator is stopped so that
    // it does not re-apply the spec right away).
    assert!(operator.stop());
    docker(&["service", "rollback", "--detach", &a]);
    wait_for("a rolled back to the previous config", CONVERGE, || {
        let tasks = docker(&[
            "ps",
            "-q",
            "--filter",
            &format!("label=com.docker.swarm.service.name={a}"),
        ]);
        tasks.lines().count() == 1
            && docker_output(&["exec", tasks.trim(), "/bin/busybox", "cat", "/etc/app.conf"]).stdout
                == b"listen-2"
    });
    let mut operator = swarm.operator();
    // A rollback is respected: the operator marks the rolled-back spec and holds it, rather
    // than writing it again (which, after an automatic rollback, would fail and roll back
    // for ever). Removing the mark is how a user asks for the same spec again.
    wait_for("the rolled-back spec held", CONVERGE, || {
        let label = docker(&[
            "service",
            "inspect",
            "--format",
            "{{index .Spec.Labels \"swarm-operator.io/rolled-back-spec\"}}",
            &a,
        ]);
        !label.trim().is_empty()
    });
    docker(&[
        "service",
        "update",
        "--detach",
        "--label-rm",
        "swarm-operator.io/rolled-back-spec",
        &a,
    ]);
    // b was not rolled back: it mounts the current version, which a gets again.
    let current = mounted(&b);
    wait_for("the operator re-applies the spec", CONVERGE, || {
        mounted(&a).contains(&current[0])
    });

    // A secret change, seen by `diff` while the operator is stopped: names, never content.
    let first_secret = versions("secret", &token);
    assert!(operator.stop());
    swarm.write_spec("token.yaml", &data("SwarmSecret", &token, "hunter2-second"));
    let diff = swarm.command("diff");
    let shown = format!(
        "{}{}",
        String::from_utf8_lossy(&diff.stdout),
        String::from_utf8_lossy(&diff.stderr)
    );
    assert_eq!(diff.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!("secrets: {token}: <secret changed: sha256 ")),
        "{shown}"
    );
    let mut operator = swarm.operator();
    wait_for("a on the new secret", CONVERGE, || {
        mounted(&a)
            .iter()
            .any(|n| n.starts_with(&token) && !first_secret.contains(n))
    });
    let status = std::fs::read_to_string(&swarm.status).unwrap();

    // Specs removed: the services go, and with the last one that mounted them every version
    // of the config and the secret (b first, so a's removal sees b gone).
    swarm.remove_spec("conf.yaml");
    swarm.remove_spec("token.yaml");
    swarm.remove_spec("b.yaml");
    wait_for("b removed", CONVERGE, || {
        swarm.service_version("b").is_none()
    });
    swarm.remove_spec("a.yaml");
    wait_for("a removed", CONVERGE, || {
        swarm.service_version("a").is_none()
    });
    wait_for("every version removed", CONVERGE, || {
        versions("config", &conf).is_empty() && versions("secret", &token).is_empty()
    });
    assert!(swarm.service_version("c").is_some(), "c stays");
    assert!(operator.stop());
    for (what, text) in [("diff", shown), ("status", status), ("log", operator.log())] {
        assert!(
            !text.contains("hunter2"),
            "secret content in {what}: {text}"
        );
    }
}

/// The service names `docker stack services STACK` lists.
fn stack_services(stack: &str) -> Vec<String> {
    let mut names: Vec<String> = docker(&["stack", "services", "--format", "{{.Name}}", stack])
        .lines()
        .map(str::to_owned)
        .collect();
    names.sort();
    names
}

/// The service's environment, as `K=V` lines.
fn service_env(service: &str) -> String {
    docker(&[
        "service",
        "inspect",
        "--format",
        "{{range .Spec.TaskTemplate.ContainerSpec.Env}}{{println .}}{{end}}",
        service,
    ])
}

/// A SwarmStack: the compose files (two, merged; a `.env`; a config file) are the source of
/// truth. The operator deploys them named as stack deploy names them (`docker stack services`
/// and `docker stack ps` list them), writes nothing at steady state, rolls the one service an
/// edit changes, prunes a service removed from the compose file, and the whole stack when the
/// SwarmStack goes.
#[test]
fn a_swarm_stack_deploys_its_compose_files_and_prunes_with_them() {
    let Some(swarm) = Swarm::start("swarmstack") else {
        return;
    };
    let _data_cleanup = DataCleanup(swarm.prefix.clone());
    let stack = swarm.prefix.clone();
    let dir = swarm.specs.path();
    // The compose files in a folder of their own: deleting the SwarmStack then leaves no
    // file in the spec directory that is not a spec.
    let shop = dir.join("shop");
    std::fs::create_dir(&shop).unwrap();
    let save = |file: &str, text: &str| {
        let tmp = shop.join(format!(".{file}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, shop.join(file)).unwrap();
    };
    let service = |name: &str| {
        format!(
            "  {name}:\n    image: ${{IMAGE}}\n    command: [sleep, \"3600\"]\n    stop_grace_period: 1s\n    deploy: {{endpoint_mode: dnsrr}}\n"
        )
    };
    let base = |services: &[&str]| {
        let mut text = String::from("services:\n");
        for s in services {
            text.push_str(&service(s));
        }
        text.push_str("    configs: [{source: site, target: /etc/site.conf}]\nconfigs:\n  site: {file: ./site.conf}\n");
        text
    };
    // `web` last, so the configs line above is web's.
    save("docker-stack.yml", &base(&["worker", "web"]));
    save(
        "docker-stack.prod.yml",
        "services:\n  web:\n    environment: {MODE: prod}\n",
    );
    save(".env", &format!("IMAGE={}\n", support::TEST_IMAGE));
    save("site.conf", "listen 80\n");
    swarm.write_spec(
        "shop.yaml",
        &format!(
            "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmStack\nmetadata: {{name: {stack}}}\nspec:\n  composeFiles: [shop/docker-stack.yml, shop/docker-stack.prod.yml]\n"
        ),
    );
    let validate = swarm.command("validate");
    assert!(
        validate.status.success(),
        "validate: {}",
        String::from_utf8_lossy(&validate.stderr)
    );

    let operator = swarm.operator_with(
        &["--specs", dir.to_str().unwrap(), "--allow-empty-prune"],
        &swarm.status,
        "",
        &[],
    );
    let (web, worker) = (format!("{stack}_web"), format!("{stack}_worker"));
    let running = |name: &str| {
        swarm
            .status()
            .is_some_and(|s| s["services"][name]["runningReplicas"] == 1)
    };
    wait_for("web and worker running", CONVERGE, || {
        running(&web) && running(&worker)
    });
    assert_eq!(stack_services(&stack), [web.clone(), worker.clone()]);
    let ps = docker(&["stack", "ps", "--format", "{{.Name}}", &stack]);
    assert!(
        ps.contains(&format!("{web}.1")) && ps.contains(&format!("{worker}.1")),
        "docker stack ps: {ps}"
    );
    assert!(
        service_env(&web).contains("MODE=prod"),
        "the override file merged"
    );
    let task = docker(&[
        "ps",
        "-q",
        "--filter",
        &format!("label=com.docker.swarm.service.name={web}"),
    ]);
    let task = task.lines().next().expect("a task of web");
    assert_eq!(
        docker(&["exec", task, "/bin/busybox", "cat", "/etc/site.conf"]),
        "listen 80"
    );
    let networks = docker(&[
        "network",
        "ls",
        "--filter",
        &format!("label=com.docker.stack.namespace={stack}"),
        "--format",
        "{{.Name}}",
    ]);
    assert_eq!(networks.trim(), format!("{stack}_default"));

    // Steady state: resyncs every 2 s write nothing.
    let writes = |operator: &support::Operator| -> u64 {
        [
            "create_service",
            "update_service",
            "remove_service",
            "create_network",
            "remove_network",
            "create_config",
            "remove_config",
        ]
        .iter()
        .map(|op| requests(operator, op))
        .sum()
    };
    let updates = requests(&operator, "update_service");
    let before = writes(&operator);
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(writes(&operator), before, "no writes at steady state");

    // An edit of the override file: one update, of web only.
    let version =
        |name: &str| docker(&["service", "inspect", "--format", "{{.Version.Index}}", name]);
    let worker_version = version(&worker);
    save(
        "docker-stack.prod.yml",
        "services:\n  web:\n    environment: {MODE: canary}\n",
    );
    wait_for("web updated", CONVERGE, || {
        service_env(&web).contains("MODE=canary")
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(requests(&operator, "update_service"), updates + 1);
    assert_eq!(version(&worker), worker_version, "worker untouched");

    // A service removed from the compose file is pruned.
    save("docker-stack.yml", &base(&["web"]));
    wait_for("worker pruned", CONVERGE, || {
        stack_services(&stack) == [web.clone()]
    });

    // `docker stack rm` removes the stack like any other; the operator puts it back.
    let id = |name: &str| {
        let out = docker_output(&["service", "inspect", "--format", "{{.ID}}", name]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let web_id = id(&web);
    let removed = docker_output(&["stack", "rm", &stack]);
    assert!(removed.status.success(), "docker stack rm");
    wait_for("web recreated after docker stack rm", CONVERGE, || {
        let now = id(&web);
        !now.is_empty() && now != web_id && stack_services(&stack) == [web.clone()]
    });

    // The SwarmStack removed: everything of the stack goes.
    swarm.remove_spec("shop.yaml");
    wait_for("the stack pruned", CONVERGE, || {
        stack_services(&stack).is_empty()
            && docker(&[
                "network",
                "ls",
                "-q",
                "--filter",
                &format!("label=com.docker.stack.namespace={stack}"),
            ])
            .trim()
            .is_empty()
    });
    drop(operator);
}
