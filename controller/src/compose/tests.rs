//! Importing the realistic stacks of `tests/fixtures/stacks` (also deployed by the equivalence
//! test) and small cases for the rules of the docker CLI.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::*;
use crate::spec::kept::KeptObject;
use crate::spec::{FileLoad, Object, load_dir};

fn fixture(stack: &str, file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/stacks")
        .join(stack)
        .join(file)
}

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| vars.get(k).cloned()
}

/// Imports into a fresh directory and loads the result back.
fn import_fixture(
    files: &[PathBuf],
    stack: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> (tempfile::TempDir, ImportReport, Vec<Object>) {
    let out = tempfile::tempdir().unwrap();
    let request = ImportRequest {
        files: files.to_vec(),
        stack: stack.to_owned(),
        out: out.path().to_owned(),
        strict: false,
        api_version: None,
    };
    let report = import(&request, lookup).expect("imports");
    let loaded = load_dir(out.path()).unwrap();
    for (path, load) in &loaded.files {
        assert!(
            matches!(load, FileLoad::Ok(_)),
            "{}: {load:?}",
            path.display()
        );
    }
    let objects: Vec<Object> = loaded.objects().into_iter().map(|o| o.value).collect();
    // Every field stack deploy maps survives the spec store's JSON: a service that did not
    // would be kept typed (correct, but 1.2 kB instead of 300-400 bytes).
    for object in objects.iter().filter(|o| o.as_service().is_some()) {
        assert!(
            matches!(KeptObject::keep(object), KeptObject::Service(_)),
            "{} is kept typed: its JSON does not decode to itself",
            object.name()
        );
    }
    (out, report, objects)
}

fn service<'a>(objects: &'a [Object], name: &str) -> &'a crate::spec::ServiceSpec {
    &objects
        .iter()
        .find_map(|o| o.as_service().filter(|s| s.metadata.name == name))
        .unwrap_or_else(|| panic!("no service {name}"))
        .spec
}

fn meta<'a>(objects: &'a [Object], kind: &str, name: &str) -> &'a Object {
    objects
        .iter()
        .find(|o| o.kind() == kind && o.name() == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn shop_stack_is_named_and_labelled_like_stack_deploy() {
    let lookup = env(&[("PROXY_PORT", "28080")]);
    let (out, report, objects) = import_fixture(&[fixture("shop", "stack.yml")], "shop", &lookup);
    let mut names: Vec<(String, String)> = objects
        .iter()
        .map(|o| (o.kind().to_owned(), o.name().to_owned()))
        .collect();
    names.sort();
    let expect = [
        ("SwarmConfig", "shop_api_settings"),
        ("SwarmConfig", "shop_proxy_conf"),
        ("SwarmNetwork", "shop_back"),
        ("SwarmNetwork", "shop_front"),
        ("SwarmSecret", "shop_api_key"),
        ("SwarmService", "shop_api"),
        ("SwarmService", "shop_proxy"),
    ];
    let expect: Vec<(String, String)> = expect
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
    assert_eq!(names, expect, "the external secret gets no spec");
    assert!(report.dropped.is_empty(), "{:#?}", report.dropped);

    let proxy = service(&objects, "shop_proxy");
    assert_eq!(
        proxy.image, "swarm-operator-test/busybox:dev",
        "default applied"
    );
    assert_eq!(proxy.replicas, Some(2));
    assert_eq!(proxy.ports.len(), 2);
    assert_eq!(proxy.ports[0].published, Some(28080), "environment wins");
    assert_eq!(proxy.ports[1].mode, crate::spec::PublishMode::Host);
    assert_eq!(
        proxy.networks,
        ["shop_back", "shop_front"],
        "sorted like stack deploy"
    );
    assert_eq!(proxy.network_aliases["shop_front"], ["proxy"]);
    assert_eq!(proxy.configs[0].name, "shop_proxy_conf");
    assert_eq!(proxy.configs[0].mode, Some(crate::spec::FileMode(0o440)));
    let limits = proxy.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(
        limits.memory.unwrap().bytes(),
        64 << 20,
        "docker's M is MiB"
    );
    assert_eq!(limits.cpus, Some(0.5));
    assert_eq!(proxy.rollback_config.as_ref().unwrap().parallelism, Some(2));
    assert_eq!(proxy.logging.as_ref().unwrap().options["max-size"], "10m");

    let Object::Service(proxy_object) = meta(&objects, "SwarmService", "shop_proxy") else {
        unreachable!()
    };
    let labels = &proxy_object.metadata.labels;
    assert_eq!(labels.get(NAMESPACE_LABEL).unwrap(), "shop");
    assert_eq!(
        labels.get(IMAGE_LABEL).unwrap(),
        "swarm-operator-test/busybox:dev"
    );
    assert_eq!(labels.get("tier").unwrap(), "edge");
    assert_eq!(proxy.container_labels[NAMESPACE_LABEL], "shop");

    let api = service(&objects, "shop_api");
    assert_eq!(
        api.args.as_deref(),
        Some(&["sleep".to_owned(), "3600".to_owned()][..])
    );
    assert_eq!(api.env["DB_HOST"], "db.internal");
    assert_eq!(api.network_aliases["shop_back"], ["shop-api", "api"]);
    let secrets: Vec<(&str, bool, Option<&str>)> = api
        .secrets
        .iter()
        .map(|s| (s.name.as_str(), s.external, s.target.as_deref()))
        .collect();
    assert_eq!(
        secrets,
        [
            ("shop_api_key", false, Some("api.key")),
            ("shop_db_password", true, Some("shop_db_password")),
        ]
    );
    assert_eq!(api.update_config.as_ref().unwrap().parallelism, Some(0));

    let Object::Network(back) = meta(&objects, "SwarmNetwork", "shop_back") else {
        unreachable!()
    };
    assert_eq!(back.spec.options["encrypted"], "");
    assert_eq!(back.metadata.labels.get("purpose").unwrap(), "backend");
    // Config and secret files were copied next to the specs; the secret is private.
    let copied = out.path().join("files/secrets/shop_api_key/api.key");
    assert_eq!(
        std::fs::read_to_string(&copied).unwrap(),
        "not-a-real-key-0123456789\n"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&copied).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(out.path().join("service.shop_proxy.yaml")).unwrap();
    assert!(
        text.starts_with("# yaml-language-server: $schema=https://swarm-operator.io/schemas/v1alpha1/swarmservice.schema.json\n"),
        "{text}"
    );
}

#[test]
fn metrics_stack_reports_what_swarm_ignores() {
    let (_out, report, objects) =
        import_fixture(&[fixture("metrics", "stack.yml")], "metrics", &env(&[]));
    let dropped: Vec<(usize, &str)> = report
        .dropped
        .iter()
        .map(|d| (d.origin.line, d.path.as_str()))
        .collect();
    assert_eq!(dropped, [(35, "services.agent.build")]);
    assert!(
        report.dropped[0]
            .to_string()
            .contains("stack.yml:35:5: services.agent.build: ignored by docker stack deploy")
    );

    let agent = service(&objects, "metrics_agent");
    assert_eq!(agent.mode, crate::spec::ServiceMode::Global);
    assert_eq!(agent.replicas, None);
    assert_eq!(
        agent.networks,
        ["metrics_default"],
        "the implicit default network"
    );
    assert_eq!(agent.mounts[0].source.as_deref(), Some("/proc"));
    assert!(agent.mounts[0].read_only);
    assert_eq!(
        agent.mounts[1].bind_propagation,
        Some(crate::spec::BindPropagation::Rslave)
    );
    let spool = &agent.mounts[2];
    assert_eq!(spool.source.as_deref(), Some("metrics_spool"));
    assert_eq!(
        spool.volume.as_ref().unwrap().labels[NAMESPACE_LABEL],
        "metrics"
    );
    assert_eq!(agent.read_only, Some(true));
    assert_eq!(agent.init, Some(true));

    let collector = service(&objects, "metrics_collector");
    assert_eq!(collector.env["RETENTION"], "15d");
    let tsdb = collector.mounts[0].volume.as_ref().unwrap();
    assert!(tsdb.no_copy);
    assert_eq!(tsdb.driver.as_deref(), Some("local"));
    assert_eq!(tsdb.driver_options["o"], "size=64m");
    assert_eq!(collector.mounts[1].tmpfs_size.unwrap().bytes(), 8 << 20);
    let ports: Vec<(u16, Option<u16>)> = collector
        .ports
        .iter()
        .map(|p| (p.target, p.published))
        .collect();
    assert_eq!(
        ports,
        [
            (9090, Some(19090)),
            (9091, Some(19091)),
            (9092, Some(19092))
        ]
    );
    let placement = collector.placement.as_ref().unwrap();
    assert_eq!(placement.max_replicas, Some(1));
    assert_eq!(placement.preferences[0].spread, "node.labels.rack");
    assert!(objects.iter().any(|o| o.name() == "metrics_default"));

    // --strict turns the report into an error and writes nothing.
    let out = tempfile::tempdir().unwrap();
    let request = ImportRequest {
        files: vec![fixture("metrics", "stack.yml")],
        stack: "metrics".into(),
        out: out.path().to_owned(),
        strict: true,
        api_version: None,
    };
    let err = import(&request, &env(&[])).unwrap_err();
    assert!(
        matches!(err, ImportError::Strict(ref d) if d.len() == 1),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn ledger_merges_files_in_order_and_reads_dot_env() {
    let files = [
        fixture("ledger", "stack.yml"),
        fixture("ledger", "stack.prod.yml"),
    ];
    let process = env(&[("REGION", "eu-1")]);
    let lookup = environment(&files, process).unwrap();
    let (out, report, objects) = import_fixture(&files, "ledger", &lookup);
    assert!(report.dropped.is_empty(), "{:#?}", report.dropped);
    let ledger = service(&objects, "ledger_ledger");
    assert_eq!(ledger.replicas, Some(2), "the override wins");
    assert_eq!(ledger.env["LEDGER_MODE"], "clustered", "from .env");
    assert_eq!(ledger.env["REGION"], "eu-1");
    assert_eq!(
        ledger.env["LOG_LEVEL"], "warn",
        "environment wins over env_file"
    );
    assert_eq!(
        ledger.env["LEDGER_DB"], "ledger",
        "the env file was read back"
    );
    assert_eq!(ledger.env_file, ["./files/env/ledger_ledger/ledger.env"]);
    assert!(
        out.path()
            .join("files/env/ledger_ledger/ledger.env")
            .is_file()
    );
    assert_eq!(ledger.cap_add, ["CAP_NET_ADMIN"]);
    assert_eq!(ledger.cap_drop, ["ALL"]);
    assert_eq!(
        ledger.ulimits["nproc"],
        crate::spec::UlimitSpec {
            soft: 512,
            hard: 512
        }
    );
    assert_eq!(ledger.extra_hosts, ["ledger-db.local:10.11.12.13"]);
    assert_eq!(ledger.dns.as_ref().unwrap().search, ["ledger.internal"]);
    assert_eq!(
        ledger.stop_grace_period.unwrap().as_duration().as_millis(),
        1500
    );
    assert_eq!(ledger.endpoint_mode, crate::spec::EndpointMode::Dnsrr);
    assert_eq!(ledger.placement.as_ref().unwrap().max_replicas, Some(2));
    assert_eq!(
        ledger.secrets[0].target.as_deref(),
        Some("/run/secrets/token")
    );
    let Object::Service(s) = meta(&objects, "SwarmService", "ledger_ledger") else {
        unreachable!()
    };
    assert_eq!(s.metadata.labels.get("env").unwrap(), "production");
    let worker = service(&objects, "ledger_worker");
    let restart = worker.restart_policy.as_ref().unwrap();
    assert_eq!(
        restart.condition,
        Some(crate::spec::RestartCondition::OnFailure)
    );
    assert_eq!(restart.max_attempts, Some(3));
    assert_eq!((worker.tty, worker.stdin_open), (Some(true), Some(true)));
    let Object::Network(net) = meta(&objects, "SwarmNetwork", "ledger_ledger") else {
        unreachable!()
    };
    assert_eq!(
        net.spec.ipam.as_ref().unwrap().subnet.as_deref(),
        Some("10.231.0.0/24")
    );
}

#[test]
fn a_required_variable_stops_the_import_with_its_message() {
    let files = [fixture("ledger", "stack.yml")];
    let err = convert(&files, "ledger", &env(&[])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("stack.yml:10:15: required variable REGION is missing a value: set REGION to the deployment region"), "{text}");
}

#[test]
fn undefined_references_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: x\n    networks: [nope]\n    secrets: [missing]\n    volumes: [data:/d]\n",
    )
    .unwrap();
    let (stack, _) = convert(&[file], "s", &env(&[])).unwrap();
    let messages: Vec<String> = stack.invalid.iter().map(|i| i.to_string()).collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages[0].contains("undefined network `nope`"),
        "{messages:#?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("undefined volume `data`"))
    );
    assert!(
        messages
            .iter()
            .any(|m| m.contains("undefined secret `missing`"))
    );
}

#[test]
fn bad_stack_names_are_refused() {
    let err = convert(&[], "-x", &env(&[])).unwrap_err();
    assert!(matches!(err, ImportError::StackName(_)));
}

#[test]
fn explicit_and_external_names_are_kept_as_stack_deploy_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c.txt"), "c").unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: x\n    networks: [pub, own]\n    volumes: [shared:/s, named:/n]\n    configs: [cfg]\n    secrets: [old]\nnetworks:\n  pub: {external: true, name: public_net}\n  own: {name: my_own_net}\nvolumes:\n  shared: {external: true}\n  named: {name: fixed_volume}\nconfigs:\n  cfg: {file: ./c.txt, name: fixed_cfg}\nsecrets:\n  old: {external: {name: legacy_secret}}\n",
    )
    .unwrap();
    let (stack, _) = convert(&[file], "st", &env(&[])).unwrap();
    assert!(stack.invalid.is_empty(), "{:#?}", stack.invalid);
    let a = &stack.services[0].spec;
    assert_eq!(a.networks, ["my_own_net", "public_net"]);
    let sources: Vec<&str> = a
        .mounts
        .iter()
        .filter_map(|m| m.source.as_deref())
        .collect();
    assert_eq!(sources, ["shared", "fixed_volume"]);
    assert!(
        a.mounts[0].volume.as_ref().unwrap().labels.is_empty(),
        "external volumes get no stack label"
    );
    assert_eq!(a.configs[0].name, "fixed_cfg");
    assert_eq!(
        (a.secrets[0].name.as_str(), a.secrets[0].external),
        ("legacy_secret", true)
    );
    let networks: Vec<(&str, bool)> = stack
        .networks
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.spec.external))
        .collect();
    assert_eq!(networks, [("my_own_net", false), ("public_net", true)]);
    assert_eq!(stack.configs[0].metadata.name, "fixed_cfg");
}

#[test]
fn a_re_import_removes_the_specs_it_no_longer_writes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    let out = dir.path().join("out");
    let request = ImportRequest {
        files: vec![file.clone()],
        stack: "st".into(),
        out: out.clone(),
        strict: false,
        api_version: None,
    };
    std::fs::write(&file, "services:\n  a: {image: x}\n  b: {image: x}\n").unwrap();
    import(&request, &env(&[])).unwrap();
    std::fs::write(out.join("service.other_c.yaml"), "# another stack's\n").unwrap();
    // Named like ours but of stack `st_x`: its label tells.
    let foreign = std::fs::read_to_string(out.join("service.st_b.yaml"))
        .unwrap()
        .replace("namespace: st", "namespace: st_x");
    std::fs::write(out.join("service.st_x_web.yaml"), foreign).unwrap();
    std::fs::write(&file, "services:\n  a: {image: x}\n").unwrap();
    let report = import(&request, &env(&[])).unwrap();
    assert_eq!(report.removed, ["service.st_b.yaml"]);
    assert!(
        out.join("service.st_x_web.yaml").is_file(),
        "stack st_x's file stays"
    );
    assert!(out.join("service.st_a.yaml").is_file());
    assert!(
        out.join("service.other_c.yaml").is_file(),
        "other stacks' files stay"
    );
}

#[test]
fn depends_on_becomes_depends_on_by_swarm_name_and_what_cannot_be_honoured_is_reported() {
    let files = [
        fixture("ordered", "stack.yml"),
        fixture("ordered", "stack.override.yml"),
    ];
    let (_out, report, objects) = import_fixture(&files, "ordered", &env(&[]));
    let depends_on = |name: &str| service(&objects, name).depends_on.clone();
    assert_eq!(
        depends_on("ordered_migrate"),
        ["ordered_db"],
        "the list form"
    );
    assert_eq!(
        depends_on("ordered_api"),
        ["ordered_db", "ordered_cache"],
        "service_healthy and service_started kept, in the order written"
    );
    assert_eq!(
        depends_on("ordered_web"),
        ["ordered_api", "ordered_cache"],
        "merged by service name across files"
    );
    assert!(depends_on("ordered_db").is_empty());
    let dropped: Vec<(usize, &str)> = report
        .dropped
        .iter()
        .map(|d| (d.origin.line, d.path.as_str()))
        .collect();
    assert_eq!(
        dropped,
        [
            (31, "services.api.depends_on.cache.restart"),
            (27, "services.api.depends_on.migrate"),
            (39, "services.web.depends_on.search"),
        ]
    );
    let reasons: Vec<String> = report.dropped.iter().map(ToString::to_string).collect();
    assert!(
        reasons[1].contains(
            "condition service_completed_successfully: swarm has no run-to-completion ordering"
        ),
        "{reasons:#?}"
    );
    assert!(
        reasons[2].contains("`search` is not a service of the stack"),
        "{reasons:#?}"
    );
}

#[test]
fn depends_on_cycles_and_unknown_conditions_are_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on:\n      a: {condition: service_ready}\n  c:\n    image: x\n    depends_on: [c]\n",
    )
    .unwrap();
    let (stack, _) = convert(&[file], "s", &env(&[])).unwrap();
    let messages: Vec<String> = stack.invalid.iter().map(|i| i.to_string()).collect();
    assert_eq!(messages.len(), 2, "{messages:#?}");
    assert!(
        messages[0].contains("s.yml:8:22: services.b.depends_on.a.condition: unknown condition"),
        "{messages:#?}"
    );
    assert!(
        messages[1].contains("services.a.depends_on: dependency cycle: a → b → a"),
        "{messages:#?}"
    );
}

#[test]
fn reported_keys_cannot_drive_the_terminal() {
    let dropped = Dropped {
        origin: crate::yaml::Origin {
            file: std::sync::Arc::new(PathBuf::from("s.yml")),
            line: 4,
            column: 5,
        },
        path: "services.web.\u{1b}[2Jx".to_owned(),
        reason: "not supported".to_owned(),
    };
    assert_eq!(
        dropped.to_string(),
        "s.yml:4:5: services.web.\\u{1b}[2Jx: not supported"
    );
    let invalid = Invalid {
        origin: dropped.origin,
        path: dropped.path,
        message: "bad".to_owned(),
    };
    assert!(!invalid.to_string().contains('\u{1b}'), "{invalid}");
}

#[test]
fn a_dot_env_directory_is_not_an_env_file() {
    // Python virtualenvs are often called `.env`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".env")).unwrap();
    let file = dir.path().join("stack.yml");
    std::fs::write(&file, "services:\n  a:\n    image: x\n").unwrap();
    let lookup = environment(std::slice::from_ref(&file), |_| None).unwrap();
    assert_eq!(lookup("A"), None);
    std::fs::remove_dir(dir.path().join(".env")).unwrap();
    std::fs::write(dir.path().join(".env"), "A=1\n").unwrap();
    let lookup = environment(&[file], |_| None).unwrap();
    assert_eq!(lookup("A").as_deref(), Some("1"));
}

/// `docker stack deploy` sends an absolute bind source verbatim (compose-go joins only relative
/// ones with the file's directory, which cleans them): a trailing slash stays.
#[test]
fn bind_sources_are_kept_verbatim_when_absolute_and_cleaned_when_relative() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: x\n    volumes: ['/var/lib/docker/:/d:ro', '/srv//x/../y:/y', './data/:/data']\n",
    )
    .unwrap();
    let (stack, _) = convert(&[file], "st", &env(&[])).unwrap();
    assert!(stack.invalid.is_empty(), "{:#?}", stack.invalid);
    let sources: Vec<&str> = stack.services[0]
        .spec
        .mounts
        .iter()
        .filter_map(|m| m.source.as_deref())
        .collect();
    let relative = dir.path().join("data").display().to_string();
    assert_eq!(
        sources,
        ["/var/lib/docker/", "/srv//x/../y", relative.as_str()]
    );
}

/// docker/cli's convertDeployMode: `replicated-job` takes `replicas` (its MaxConcurrent and
/// TotalCompletions), `global-job` refuses it.
#[test]
fn job_modes_convert_as_stack_deploy_maps_them() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  once:\n    image: x\n    deploy: {mode: replicated-job, replicas: 3}\n  each:\n    image: x\n    deploy: {mode: global-job}\n  bad:\n    image: x\n    deploy: {mode: global-job, replicas: 2}\n",
    )
    .unwrap();
    let (stack, _) = convert(&[file], "st", &env(&[])).unwrap();
    let by_name = |n: &str| {
        stack
            .services
            .iter()
            .find(|s| s.metadata.name == n)
            .map(|s| (s.spec.mode, s.spec.replicas))
    };
    assert_eq!(
        by_name("st_once"),
        Some((crate::spec::ServiceMode::ReplicatedJob, Some(3)))
    );
    assert_eq!(
        by_name("st_each"),
        Some((crate::spec::ServiceMode::GlobalJob, None))
    );
    let invalid = format!("{:?}", stack.invalid);
    assert!(
        invalid.contains("replicas can only be used with replicated or replicated-job mode"),
        "{invalid}"
    );
}

/// The equivalence fixture imports with nothing left out, and what only it sets (Windows
/// settings, generic resources) arrives in the specs.
#[test]
fn every_key_fixture_imports_without_a_drop() {
    let (_out, report, objects) = import_fixture(&[fixture("every", "stack.yml")], "ev", &env(&[]));
    assert!(report.dropped.is_empty(), "{:#?}", report.dropped);
    let windows = service(&objects, "ev_windows");
    assert_eq!(windows.isolation, Some(crate::spec::Isolation::Process));
    assert_eq!(
        windows
            .credential_spec
            .as_ref()
            .and_then(|c| c.registry.as_deref()),
        Some("gmsa-web")
    );
    let reservations = windows
        .resources
        .as_ref()
        .and_then(|r| r.reservations.as_ref());
    assert_eq!(
        reservations.map(|r| r.generic_resources.clone()),
        Some(vec![crate::spec::GenericResourceSpec {
            kind: "gpu".into(),
            value: 2
        }])
    );
    // `credential_spec.config` names the compose config: the spec names its swarm name.
    let gmsa = service(&objects, "ev_gmsa");
    assert_eq!(
        gmsa.credential_spec.as_deref(),
        Some(&crate::spec::CredentialSpecSpec {
            config: Some("ev_credspec".into()),
            ..Default::default()
        })
    );
    let app = service(&objects, "ev_app");
    assert_eq!(app.cap_add, ["CAP_CHOWN", "CAP_NET_ADMIN", "CAP_SYS_TIME"]);
    assert_eq!(app.cap_drop, ["ALL"]);
}

/// Keys an older engine would drop without a word are refused at the engine's API version,
/// located in the compose file; without a version they are imported (the operator checks its
/// engine's version when it loads the specs).
#[test]
fn keys_newer_than_the_engine_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: x\n    oom_score_adj: 100\n    healthcheck:\n      test: [CMD, 'true']\n      start_interval: 2s\n",
    )
    .unwrap();
    let request = |api_version| ImportRequest {
        files: vec![file.clone()],
        stack: "st".into(),
        out: dir.path().join("out"),
        strict: false,
        api_version,
    };
    let engine = "1.41".parse().unwrap();
    let Err(ImportError::Invalid(invalid)) = import(&request(Some(engine)), &env(&[])) else {
        panic!("keys newer than 1.41 must fail the import");
    };
    let lines: Vec<String> = invalid.iter().map(ToString::to_string).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].ends_with("s.yml:4:5: services.a.oom_score_adj: needs Docker Engine API 1.46 or later; the engine speaks 1.41 and would drop it without a word, so the service would never be what its spec says: upgrade the engine or remove the field"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "s.yml:7:7: services.a.healthcheck.start_interval: needs Docker Engine API 1.44"
        ),
        "{}",
        lines[1]
    );
    assert!(!dir.path().join("out").exists(), "nothing is written");
    let report = import(&request(Some("1.46".parse().unwrap())), &env(&[])).expect("imports");
    assert!(report.dropped.is_empty(), "{:#?}", report.dropped);
    import(&request(None), &env(&[])).expect("imports without a version");
}

/// A stack scheduled by swarm-cronjob imports as scheduled jobs that validate, with what does
/// not map reported at its line.
#[test]
fn a_swarm_cronjob_stack_imports_as_scheduled_jobs() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cronjob/stack.yml");
    let (_out, report, objects) = import_fixture(&[file], "cron", &env(&[]));
    let dropped: Vec<String> = report
        .dropped
        .iter()
        .map(|d| format!("{}:{}", d.origin.line, d.path))
        .collect();
    assert_eq!(
        dropped,
        [
            "21:services.date.deploy.replicas",
            "33:services.dump.deploy.replicas",
            "38:services.dump.deploy.labels.swarm.cronjob.registry-auth",
            "4:services.swarm-cronjob.image",
        ]
    );
    let date = service(&objects, "cron_date");
    assert_eq!(date.mode, crate::spec::ServiceMode::ReplicatedJob);
    assert_eq!(date.replicas, Some(1));
    assert_eq!(date.schedule.as_deref(), Some("*/10 * * * * *"));
    assert_eq!(
        date.concurrency_policy,
        Some(crate::spec::ConcurrencyPolicy::Replace)
    );
    let dump = service(&objects, "cron_dump");
    assert_eq!(dump.schedule.as_deref(), Some("0 0 3 * * *"));
    assert_eq!(dump.time_zone.as_deref(), Some("Europe/Paris"));
    assert_eq!(
        dump.concurrency_policy,
        Some(crate::spec::ConcurrencyPolicy::Forbid)
    );
    let prune = service(&objects, "cron_prune");
    assert_eq!(prune.mode, crate::spec::ServiceMode::GlobalJob);
    assert_eq!(prune.schedule.as_deref(), Some("0 0 */6 * * *"));
    for name in ["cron_date", "cron_dump", "cron_prune"] {
        let labels = &objects
            .iter()
            .find_map(|o| o.as_service().filter(|s| s.metadata.name == name))
            .unwrap()
            .metadata
            .labels;
        assert!(
            !labels.keys().any(|k| k.starts_with("swarm.cronjob.")),
            "{name}: {labels:?}"
        );
    }
}

/// The dropped keys as (line, column, path, reason), in the order reported.
fn dropped_at(dropped: &[model::Dropped]) -> Vec<(usize, usize, &str, &str)> {
    dropped
        .iter()
        .map(|d| {
            (
                d.origin.line,
                d.origin.column,
                d.path.as_str(),
                d.reason.as_str(),
            )
        })
        .collect()
}

/// Writes `text` as `s.yml` (with an `app.conf` beside it) and converts it.
fn convert_text(text: &str, vars: &[(&str, &str)]) -> (tempfile::TempDir, stack::Stack) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.yml");
    std::fs::write(&file, text).unwrap();
    std::fs::write(dir.path().join("app.conf"), "x").unwrap();
    let (stack, _warnings) = convert(&[file], "st", &env(vars)).unwrap();
    (dir, stack)
}

/// Keys the derived sections do not declare are reported where they were written, with the
/// reason the hand-written reader gave for each section (and nested level); what the sections
/// do declare is read.
#[test]
fn keys_the_derived_sections_leave_out_are_located_with_their_reason() {
    let text = "\
services:
  a:
    image: x
    logging:
      driver: json-file
      mode: non-blocking
    healthcheck:
      test: curl -f localhost
      start_intervall: 2s
    deploy:
      restart_policy:
        condition: on-failure
        backoff: 3
      update_config:
        parallelism: 2
        speed: fast
      resources:
        limits:
          cpus: '0.5'
          generic_resources: []
        reservations:
          devices: []
          generic_resources:
            - named_resource_spec: {kind: ssd, value: one}
            - discrete_resource_spec: {kind: gpu, value: 1, extra: 1}
        shares: 1
      placement:
        constraints: node.role == manager
        preferences:
          - spread: node.labels.zone
            weight: 2
        affinity: x
networks:
  back:
    driver: overlay
    enable_ipv6: true
    ipam:
      config:
        - subnet: 10.9.0.0/24
          ip_range: 10.9.0.0/25
volumes:
  data:
    external: {name: shared-data}
    scope: global
configs:
  app:
    file: ./app.conf
    template_driver: golang
";
    let (_dir, stack) = convert_text(text, &[]);
    assert!(stack.invalid.is_empty(), "{:#?}", stack.invalid);
    let dropped = dropped_at(&stack.dropped);
    let spec_kinds = "not supported by the spec kinds";
    let stack_deploy = "not supported by docker stack deploy";
    assert_eq!(
        dropped,
        [
            (6, 7, "services.a.logging.mode", "not a logging option"),
            (9, 7, "services.a.healthcheck.start_intervall", spec_kinds),
            (
                13,
                9,
                "services.a.deploy.restart_policy.backoff",
                "not a restart policy option"
            ),
            (
                16,
                9,
                "services.a.deploy.update_config.speed",
                "not an update policy option"
            ),
            (
                20,
                11,
                "services.a.deploy.resources.limits.generic_resources",
                spec_kinds
            ),
            (
                22,
                11,
                "services.a.deploy.resources.reservations.devices",
                spec_kinds
            ),
            (
                24,
                15,
                "services.a.deploy.resources.reservations.generic_resources[0].named_resource_spec",
                "not converted by docker stack deploy"
            ),
            (
                25,
                61,
                "services.a.deploy.resources.reservations.generic_resources[1].discrete_resource_spec.extra",
                "not a discrete resource option"
            ),
            (
                26,
                9,
                "services.a.deploy.resources.shares",
                "not a resources option"
            ),
            (
                31,
                13,
                "services.a.deploy.placement.preferences[0].weight",
                "not a placement preference option"
            ),
            (
                32,
                9,
                "services.a.deploy.placement.affinity",
                "not a placement option"
            ),
            (36, 5, "networks.back.enable_ipv6", stack_deploy),
            (
                40,
                11,
                "networks.back.ipam.config[0].ip_range",
                "ignored by docker stack deploy"
            ),
            (44, 5, "volumes.data.scope", stack_deploy),
            (
                48,
                5,
                "configs.app.template_driver",
                "not supported by the spec kinds (content is always the file)"
            ),
        ]
    );
    let a = &stack.services[0].spec;
    assert_eq!(
        a.healthcheck.as_ref().unwrap().test,
        ["CMD-SHELL", "curl -f localhost"]
    );
    let limits = a.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits.cpus, Some(0.5));
    let reservations = a.resources.as_ref().unwrap().reservations.as_ref().unwrap();
    assert_eq!(reservations.generic_resources.len(), 1);
    let placement = a.placement.as_ref().unwrap();
    assert_eq!(placement.constraints, ["node.role == manager"]);
    assert_eq!(placement.preferences[0].spread, "node.labels.zone");
}

/// A bad value in one derived section does not hide one in another: each is reported where it
/// was written, without the value; within a section, the first one stops it (serde).
#[test]
fn bad_values_in_several_derived_sections_are_each_located_and_never_shown() {
    let text = "\
services:
  a:
    image: x
    logging:
      options:
        max-size: [\"${SECRET}\"]
    healthcheck:
      interval: ${SECRET}
    deploy:
      restart_policy:
        condition: ${SECRET}
      update_config:
        order: ${SECRET}
        parallelism: ${SECRET}
networks:
  back:
    attachable: ${SECRET}
";
    let secret = "Hostile-Value-7731";
    let (_dir, stack) = convert_text(text, &[("SECRET", secret)]);
    let lines: Vec<String> = stack.invalid.iter().map(ToString::to_string).collect();
    let expected = [
        "s.yml:6:19: services.a.logging.options.max-size: expected a string, found a list",
        "s.yml:8:17: services.a.healthcheck.interval: not a duration like `10s`, `1m30s`, `1.5s`",
        "s.yml:11:20: services.a.deploy.restart_policy.condition: unknown condition: none, on-failure or any",
        "s.yml:13:16: services.a.deploy.update_config.order: unknown order: stop-first or start-first",
        "s.yml:17:17: networks.back.attachable: not a boolean: write true or false",
    ];
    assert_eq!(lines.len(), expected.len(), "{lines:#?}");
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.contains(expected), "{line}\nexpected {expected}");
        assert!(!line.contains(secret), "{line}");
    }
}

/// The legacy `external: {name: x}` names the external object; `external: 'yes'` (a string
/// after interpolation) is cast like the docker CLI casts it.
#[test]
fn external_declarations_keep_their_legacy_name_and_cast_interpolated_booleans() {
    let text = "\
services:
  a:
    image: x
    networks: [back, front]
networks:
  back:
    name: ignored
    external: {name: shared-back}
  front:
    external: ${EXTERNAL}
";
    let (_dir, stack) = convert_text(text, &[("EXTERNAL", "yes")]);
    assert!(stack.invalid.is_empty(), "{:#?}", stack.invalid);
    let mut external: Vec<(&str, bool)> = stack
        .networks
        .iter()
        .map(|n| (n.metadata.name.as_str(), n.spec.external))
        .collect();
    external.sort_unstable();
    assert_eq!(external, [("front", true), ("shared-back", true)]);
}

/// `ulimits` (one number, an interpolated one, or soft and hard) and `credential_spec`
/// (exactly one source) are derived too: their unknown keys are dropped where written, and
/// two sources are refused at the section.
#[test]
fn ulimits_and_credential_specs_are_read_and_their_unknown_keys_dropped() {
    let text = "\
services:
  a:
    image: x
    ulimits:
      nproc: '65535'
      nofile: {soft: 20000, hard: 40000, max: 1}
    credential_spec:
      registry: r
      user: me
  b:
    image: x
    credential_spec: {file: f, registry: r}
";
    let (_dir, stack) = convert_text(text, &[]);
    let dropped = dropped_at(&stack.dropped);
    assert_eq!(
        dropped,
        [
            (
                6,
                42,
                "services.a.ulimits.nofile.max",
                "not a ulimit option"
            ),
            (
                9,
                7,
                "services.a.credential_spec.user",
                "not a credential_spec option"
            ),
        ]
    );
    let invalid: Vec<String> = stack.invalid.iter().map(ToString::to_string).collect();
    assert_eq!(invalid.len(), 1, "{invalid:#?}");
    assert!(
        invalid[0].ends_with(
            "s.yml:12:22: services.b.credential_spec: give exactly one of `file`, `registry` or `config`"
        ),
        "{}",
        invalid[0]
    );
    let a = &stack
        .services
        .iter()
        .find(|s| s.metadata.name == "st_a")
        .unwrap()
        .spec;
    let limits: Vec<(&str, i64, i64)> = a
        .ulimits
        .iter()
        .map(|(name, u)| (name.as_str(), u.soft, u.hard))
        .collect();
    assert_eq!(limits, [("nofile", 20000, 40000), ("nproc", 65535, 65535)]);
    assert_eq!(
        a.credential_spec.as_ref().unwrap().registry.as_deref(),
        Some("r")
    );
}

/// A service's `networks` (aliases) and `configs`/`secrets` references (long syntax, an octal
/// mode) are derived: unknown keys are dropped where written, and a mode that is not octal is
/// refused at the mode.
#[test]
fn service_networks_and_file_references_are_read_and_their_unknown_keys_dropped() {
    let text = "\
services:
  a:
    image: x
    networks:
      back:
        aliases: [db]
        ipv4_address: 10.0.0.5
      front:
    configs:
      - source: app
        target: /etc/app.conf
        mode: 0440
        x-note: 1
    secrets: [{source: key, mode: rw}]
networks:
  back:
  front:
configs:
  app:
    file: ./app.conf
secrets:
  key:
    file: ./app.conf
";
    let (_dir, stack) = convert_text(text, &[]);
    let dropped = dropped_at(&stack.dropped);
    assert_eq!(
        dropped,
        [
            (
                7,
                9,
                "services.a.networks.back.ipv4_address",
                "not supported by swarm services"
            ),
            (
                13,
                9,
                "services.a.configs[0].x-note",
                "not a config/secret reference option"
            ),
        ]
    );
    let invalid: Vec<String> = stack.invalid.iter().map(ToString::to_string).collect();
    assert_eq!(invalid.len(), 1, "{invalid:#?}");
    assert!(
        invalid[0]
            .ends_with("s.yml:14:35: services.a.secrets[0].mode: not an octal file mode like 0440"),
        "{}",
        invalid[0]
    );
    let a = &stack
        .services
        .iter()
        .find(|s| s.metadata.name == "st_a")
        .unwrap()
        .spec;
    assert_eq!(a.networks, ["st_back", "st_front"]);
    assert_eq!(a.network_aliases["st_back"], ["db", "a"]);
    let config = &a.configs[0];
    assert_eq!(config.target.as_deref(), Some("/etc/app.conf"));
    assert_eq!(config.mode.map(|m| m.0), Some(0o440));
}

/// The long syntax of a port and of a volume is derived, one item at a time: unknown keys are
/// dropped where written with the reasons they had, a bad word is refused at its value, a
/// port without `target` at the port, and the next items are still read.
#[test]
fn long_ports_and_volumes_are_read_item_by_item_and_their_unknown_keys_dropped() {
    let text = "\
services:
  a:
    image: x
    ports:
      - target: 80
        published: 8080
        protocol: udp
        host_ip: 127.0.0.1
        x-extra: 1
      - {target: 81, mode: sideways}
      - published: 9000
    volumes:
      - type: tmpfs
        target: /cache
        tmpfs: {size: 64m, mode: 1777}
      - type: bind
        source: ./data
        target: /data
        consistency: cached
        bind: {propagation: rshared, create_host_path: true}
";
    let (_dir, stack) = convert_text(text, &[]);
    let dropped = dropped_at(&stack.dropped);
    let stack_deploy = "not supported by docker stack deploy";
    assert_eq!(
        dropped,
        [
            (
                8,
                9,
                "services.a.ports[0].host_ip",
                "ignored by docker stack deploy"
            ),
            (9, 9, "services.a.ports[0].x-extra", "not a port option"),
            (15, 28, "services.a.volumes[0].tmpfs.mode", stack_deploy),
            (
                19,
                9,
                "services.a.volumes[1].consistency",
                "only meaningful on Docker Desktop for Mac"
            ),
            (
                20,
                38,
                "services.a.volumes[1].bind.create_host_path",
                stack_deploy
            ),
        ]
    );
    let invalid: Vec<String> = stack.invalid.iter().map(ToString::to_string).collect();
    assert_eq!(invalid.len(), 2, "{invalid:#?}");
    assert!(
        invalid[0]
            .ends_with("s.yml:10:28: services.a.ports[1].mode: unknown mode: ingress or host"),
        "{}",
        invalid[0]
    );
    assert!(
        invalid[1].ends_with("s.yml:11:9: services.a.ports[2]: a port needs `target` (1-65535)"),
        "{}",
        invalid[1]
    );
    let a = &stack
        .services
        .iter()
        .find(|s| s.metadata.name == "st_a")
        .unwrap()
        .spec;
    let ports: Vec<(u16, Option<u16>, crate::spec::Protocol)> = a
        .ports
        .iter()
        .map(|p| (p.target, p.published, p.protocol))
        .collect();
    assert_eq!(ports, [(80, Some(8080), crate::spec::Protocol::Udp)]);
    let tmpfs = a.mounts.iter().find(|m| m.target == "/cache").unwrap();
    assert_eq!(tmpfs.tmpfs_size.map(|s| s.0), Some(64 << 20));
    let bind = a.mounts.iter().find(|m| m.target == "/data").unwrap();
    assert!(
        bind.source
            .as_deref()
            .is_some_and(|s| s.ends_with("/data") && s.starts_with('/')),
        "{:?}",
        bind.source
    );
    assert!(bind.bind_propagation.is_some());
}
