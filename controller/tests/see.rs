//! Seeing the swarm: the status page in a real headless Chromium, and Prometheus file-based
//! discovery checked by a real Prometheus, both against the local single-node swarm.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Swarm, artifacts_dir, docker, http_get, output_within, require_tool};

const CONVERGE: Duration = Duration::from_secs(60);
const BROWSER: Duration = Duration::from_secs(60);

fn service<'a>(status: &'a Value, name: &str) -> &'a Value {
    &status["services"][name]
}

fn condition_true(status: &Value, name: &str, kind: &str) -> bool {
    service(status, name)["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == kind))
        .is_some_and(|c| c["status"] == "True")
}

fn ready(status: &Value, name: &str, replicas: u64) -> bool {
    let svc = service(status, name);
    svc["runningReplicas"] == replicas
        && svc["desiredReplicas"] == replicas
        && condition_true(status, name, "Ready")
        && svc["endpoints"]
            .as_array()
            .is_some_and(|e| e.len() as u64 == replicas)
}

/// Running endpoints of a service in the status: task id → endpoint.
fn running_endpoints(status: &Value, name: &str) -> BTreeMap<String, Value> {
    service(status, name)["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["state"] == "running")
        .map(|e| (e["task"].as_str().unwrap().to_owned(), e.clone()))
        .collect()
}

/// An element of the dumped DOM: its attributes and its markup up to its closing tag.
#[derive(Debug)]
struct Element {
    attrs: BTreeMap<String, String>,
    html: String,
}

impl Element {
    fn attr(&self, name: &str) -> &str {
        self.attrs.get(name).map_or("", String::as_str)
    }
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// Every element carrying `attr`. Chromium serializes the DOM canonically (`name="value"`,
/// `"` escaped), which this small reader relies on; the elements it looks for do not nest
/// their own tag.
fn elements_with(dom: &str, attr: &str) -> Vec<Element> {
    let needle = format!(" {attr}=\"");
    let mut found = Vec::new();
    let mut rest = dom;
    while let Some(at) = rest.find(&needle) {
        let start = rest[..at].rfind('<').expect("an attribute inside a tag");
        let tag_end = start + rest[start..].find('>').expect("a closed tag");
        let tag = &rest[start + 1..tag_end];
        let name = tag.split_whitespace().next().unwrap();
        let mut attrs = BTreeMap::new();
        let mut text = &tag[name.len()..];
        while let Some(eq) = text.find("=\"") {
            let key = text[..eq].trim().to_owned();
            let value_end = text[eq + 2..].find('"').expect("a closed attribute") + eq + 2;
            attrs.insert(key, unescape(&text[eq + 2..value_end]));
            text = &text[value_end + 1..];
        }
        let close = format!("</{name}>");
        let end = rest[tag_end..]
            .find(&close)
            .map_or(rest.len(), |e| tag_end + e + close.len());
        found.push(Element {
            attrs,
            html: rest[start..end].to_owned(),
        });
        rest = &rest[tag_end..];
    }
    found
}

fn chromium(chromium: &Path, args: &[&str], url: &str) -> String {
    let output = output_within(
        Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .args(args)
            .arg(url),
        BROWSER,
    );
    assert!(
        output.status.success(),
        "chromium {args:?} {url}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Saves a screenshot of `url` at `size` (`width,height`) in `target/test-artifacts/`.
fn screenshot(browser: &Path, url: &str, name: &str, size: &str) -> PathBuf {
    let path = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&path);
    chromium(
        browser,
        &[
            &format!("--window-size={size}"),
            &format!("--screenshot={}", path.display()),
        ],
        url,
    );
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    assert!(size > 10_000, "{} is {size} bytes", path.display());
    eprintln!("screenshot: {} ({size} bytes)", path.display());
    path
}

/// Task cards of `service` in a DOM: task id → the card.
fn cards<'a>(cards: &'a [Element], service: &str) -> BTreeMap<&'a str, &'a Element> {
    cards
        .iter()
        .filter(|c| c.attr("data-service") == service)
        .map(|c| (c.attr("data-task"), c))
        .collect()
}

/// The value of header `name` (lower case) in the response to `GET path`.
fn response_header(addr: SocketAddr, path: &str, name: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connecting to the page");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let reader = BufReader::new(stream);
    reader
        .lines()
        .map_while(Result::ok)
        .take_while(|line| !line.is_empty())
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.eq_ignore_ascii_case(name)).then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The page's server-sent events, read as they come.
struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    fn open(addr: SocketAddr) -> EventStream {
        let mut stream = TcpStream::connect(addr).expect("connecting to the page");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET /api/v1/events HTTP/1.0\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        // Status line and headers.
        loop {
            line.clear();
            reader.read_line(&mut line).expect("reading headers");
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if line.to_ascii_lowercase().starts_with("content-type") {
                assert!(line.contains("text/event-stream"), "{line}");
            }
        }
        EventStream { reader }
    }

    /// The data of the next `board` event.
    fn next_board(&mut self) -> String {
        let (mut event, mut data) = (String::new(), Vec::new());
        loop {
            let mut line = String::new();
            let n = self.reader.read_line(&mut line).expect("reading an event");
            assert!(n > 0, "the event stream ended");
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if event == "board" {
                    return data.join("\n");
                }
                (event, data) = (String::new(), Vec::new());
            } else if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_owned();
            } else if let Some(d) = line.strip_prefix("data:") {
                data.push(d.strip_prefix(' ').unwrap_or(d).to_owned());
            }
        }
    }
}

/// The page in a real browser: one card per running task on its node, the Degraded service
/// shown as such, a spec error with a hostile file name shown escaped with its location; a
/// screenshot; drift and a scale show up live (server-sent events), in the activity log, and
/// as new cards in a second screenshot.
#[test]
fn status_page_in_a_real_browser() {
    let Some(browser) = require_tool("status_page_in_a_real_browser", "chromium", "chromium")
    else {
        return;
    };
    let Some(swarm) = Swarm::start("statuspage") else {
        return;
    };
    let web = swarm.name("web");
    let bad = swarm.name("bad");
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 3, Some("net")));
    // A command that exits at once: swarm restarts it forever, the service is Degraded.
    let failing = swarm
        .service_spec("bad", 1, Some("net"))
        .replace("args: [sleep, \"3600\"]", "args: [\"false\"]");
    swarm.write_spec("bad.yaml", &failing);
    // File names and error messages come from users: the page must show them as text.
    let hostile_file = "<img src=x onerror=alert(1)>.yaml";
    swarm.write_spec(
        hostile_file,
        "apiVersion: swarm-operator.io/v1alpha1\nkind: SwarmService\nmetadata:\n  name: x\nspec:\n  image: a\n  replicas: \"<script>alert(1)</script>\"\n",
    );

    let mut operator = swarm.operator();
    let status = swarm.wait_status("web ready and bad degraded", CONVERGE, |s| {
        ready(s, &web, 3)
            && condition_true(s, &bad, "Degraded")
            && s["errors"].as_array().is_some_and(|e| !e.is_empty())
    });
    let url = format!("http://{}/", operator.metrics_addr);

    let dom = chromium(&browser, &["--dump-dom"], &url);
    // The page's script ran (under the page's content security policy): it marks the body
    // before it connects to the event stream.
    let body = elements_with(&dom, "data-live");
    assert!(
        ["connecting", "live"].contains(&body[0].attr("data-live")),
        "the script did not run: {:?}",
        body[0].attrs
    );
    let csp = response_header(operator.metrics_addr, "/", "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let all_cards = elements_with(&dom, "data-task");
    let web_cards = cards(&all_cards, &web);
    let endpoints = running_endpoints(&status, &web);
    assert_eq!(
        web_cards.keys().copied().collect::<BTreeSet<_>>(),
        endpoints.keys().map(String::as_str).collect(),
        "one card per running task of {web}:\n{dom}"
    );
    for (task, card) in &web_cards {
        assert_eq!(card.attr("data-state"), "running", "{}", card.html);
        assert_eq!(
            card.attr("data-node"),
            endpoints[*task]["node"].as_str().unwrap(),
            "{}",
            card.html
        );
        let ip = endpoints[*task]["addresses"][0]["ip"].as_str().unwrap();
        assert!(card.html.contains(ip), "the card shows {ip}: {}", card.html);
        assert!(card.html.contains(":dev"), "the image tag: {}", card.html);
    }
    // Every card sits in its node's column, and every node says what it is.
    let nodes = elements_with(&dom, "data-node-id");
    assert!(!nodes.is_empty(), "{dom}");
    for node in &nodes {
        assert!(
            ["manager", "worker"].contains(&node.attr("data-role")),
            "{:?}",
            node.attrs
        );
        assert_eq!(node.attr("data-availability"), "active", "{:?}", node.attrs);
        assert_eq!(node.attr("data-node-state"), "ready", "{:?}", node.attrs);
    }

    let rows = elements_with(&dom, "data-ready");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r.attr("data-service") == name)
            .unwrap_or_else(|| panic!("no row for {name}:\n{dom}"))
    };
    assert_eq!(row(&web).attr("data-ready"), "true");
    assert_eq!(row(&web).attr("data-degraded"), "false");
    let bad_row = row(&bad);
    assert_eq!(bad_row.attr("data-ready"), "false", "{}", bad_row.html);
    assert_eq!(bad_row.attr("data-degraded"), "true", "{}", bad_row.html);
    assert!(
        bad_row.html.contains("True · TasksFailing"),
        "the Degraded condition and its reason: {}",
        bad_row.html
    );

    let errors = elements_with(&dom, "data-file");
    let error = errors
        .iter()
        .find(|e| e.attr("data-file") == hostile_file)
        .unwrap_or_else(|| panic!("no error for {hostile_file}:\n{dom}"));
    assert_eq!(error.attr("data-line"), "7", "{}", error.html);
    assert!(error.html.contains("spec.replicas"), "{}", error.html);
    // Shown as text, never parsed as markup: no element was injected.
    assert!(!dom.contains("<img"), "an injected element:\n{dom}");
    assert!(!dom.contains("<script>alert"), "an injected script:\n{dom}");
    assert!(
        error.html.contains("&lt;script&gt;alert(1)"),
        "{}",
        error.html
    );

    screenshot(&browser, &url, "status-page-1.png", "1280,1000");
    // The same page on a phone-sized screen.
    screenshot(&browser, &url, "status-page-1-phone.png", "412,915");

    // Live: the page's event stream sends the board now and whenever it changes.
    let mut events = EventStream::open(operator.metrics_addr);
    let first = events.next_board();
    assert_eq!(
        cards(&elements_with(&first, "data-task"), &web).len(),
        3,
        "{first}"
    );

    // A hand scale is drift: reverted, and logged as such.
    docker(&["service", "scale", "-d", &format!("{web}=5")]);
    let drift = wait_overview(
        operator.metrics_addr,
        "drift corrected in the activity",
        |o| activity(o, "driftCorrected", &web),
    );
    eprintln!("activity: {}", drift["activity"]);

    // A scale in the spec: two new cards, live.
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 5, Some("net")));
    let scaled = Instant::now();
    let board = loop {
        let board = events.next_board();
        let board_cards = elements_with(&board, "data-task");
        let running = cards(&board_cards, &web)
            .values()
            .filter(|c| c.attr("data-state") == "running")
            .count();
        // The spec's update is logged before its tasks run; the hand scale's extra tasks
        // (reverted at once) can not be mistaken for the new ones.
        if running == 5 && board.contains("data-kind=\"updated\"") {
            break board;
        }
        assert!(scaled.elapsed() < CONVERGE, "no board with 5 running cards");
    };
    eprintln!(
        "5 running cards pushed to the page after {:?}",
        scaled.elapsed()
    );
    assert!(board.contains("data-kind=\"drift-corrected\""), "{board}");

    let status = swarm.wait_status("web scaled to 5", CONVERGE, |s| ready(s, &web, 5));
    let dom = chromium(&browser, &["--dump-dom"], &url);
    let all_cards = elements_with(&dom, "data-task");
    let web_cards = cards(&all_cards, &web);
    assert_eq!(
        web_cards.keys().copied().collect::<BTreeSet<_>>(),
        running_endpoints(&status, &web)
            .keys()
            .map(String::as_str)
            .collect(),
        "one card per running task after the scale:\n{dom}"
    );
    assert!(
        web_cards
            .values()
            .all(|c| c.attr("data-state") == "running")
    );
    let kinds: Vec<String> = elements_with(&dom, "data-kind")
        .iter()
        .map(|e| e.attr("data-kind").to_owned())
        .collect();
    assert!(
        kinds.iter().any(|k| k == "drift-corrected") && kinds.iter().any(|k| k == "updated"),
        "{kinds:?}"
    );
    screenshot(&browser, &url, "status-page-2-scaled.png", "1280,1000");

    // A page still open does not hold up a graceful shutdown.
    let stopping = Instant::now();
    assert!(
        operator.stop(),
        "the operator did not stop with a page open; log:\n{}",
        operator.log()
    );
    eprintln!("stopped with a page open after {:?}", stopping.elapsed());
    drop(events);
}

fn overview(addr: SocketAddr) -> Option<Value> {
    let (code, body) = http_get(addr, "/api/v1/status")?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

fn wait_overview(addr: SocketAddr, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        if let Some(overview) = overview(addr).filter(|o| check(o)) {
            eprintln!("{what}: after {:?}", start.elapsed());
            return overview;
        }
        assert!(start.elapsed() < CONVERGE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn activity(overview: &Value, kind: &str, service: &str) -> bool {
    overview["activity"].as_array().is_some_and(|a| {
        a.iter()
            .any(|e| e["kind"] == kind && e["object"] == format!("service/{service}"))
    })
}

/// `/api/v1/status` is the status file plus nodes (with their tasks) and the activity.
#[test]
fn status_api_has_the_status_file_content_and_the_nodes() {
    let Some(swarm) = Swarm::start("statusapi") else {
        return;
    };
    let web = swarm.name("web");
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    swarm.write_spec("web.yaml", &swarm.service_spec("web", 2, Some("net")));
    let operator = swarm.operator();
    let status = swarm.wait_status("web ready", CONVERGE, |s| ready(s, &web, 2));
    let api = wait_overview(operator.metrics_addr, "the API agrees", |o| {
        ready(o, &web, 2)
    });
    assert_eq!(api["instance"], swarm.prefix.as_str());
    assert_eq!(api["leader"], true, "a single replica always leads");
    assert_eq!(api["errors"], status["errors"]);
    assert_eq!(
        api["services"][&web]["endpoints"],
        status["services"][&web]["endpoints"]
    );
    assert_eq!(
        api["services"][&web]["conditions"], status["services"][&web]["conditions"],
        "the same conditions with the same transition times"
    );
    let node_tasks: BTreeSet<&str> = api["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["tasks"].as_array().unwrap())
        .filter(|t| t["service"] == web.as_str())
        .map(|t| t["task"].as_str().unwrap())
        .collect();
    assert_eq!(
        node_tasks,
        running_endpoints(&status, &web)
            .keys()
            .map(String::as_str)
            .collect()
    );
    assert!(activity(&api, "created", &web), "{}", api["activity"]);
}

/// A Prometheus started by the test.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(binary: &Path, dir: &Path, file_sd: &Path) -> Prometheus {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: 1m}}\nscrape_configs:\n  - job_name: swarm\n    file_sd_configs:\n      - files: [{}]\n        refresh_interval: 1s\n",
                file_sd.display()
            ),
        )
        .unwrap();
        let log = dir.join("prometheus.log");
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("starting prometheus");
        Prometheus { child, addr, log }
    }

    /// Active targets of the `swarm` job: `instance` label → discovered labels.
    fn targets(&self) -> Option<BTreeMap<String, Value>> {
        let (code, body) = http_get(self.addr, "/api/v1/targets?state=active")?;
        if code != 200 {
            return None;
        }
        let targets: Value = serde_json::from_str(&body).ok()?;
        Some(
            targets["data"]["activeTargets"]
                .as_array()?
                .iter()
                .filter(|t| t["scrapePool"] == "swarm")
                .map(|t| {
                    (
                        t["labels"]["instance"].as_str().unwrap_or("").to_owned(),
                        t["discoveredLabels"].clone(),
                    )
                })
                .collect(),
        )
    }

    fn wait_targets(&self, what: &str, expected: &BTreeSet<String>) -> BTreeMap<String, Value> {
        let start = Instant::now();
        loop {
            let targets = self.targets();
            if let Some(targets) = targets
                .as_ref()
                .filter(|t| t.keys().cloned().collect::<BTreeSet<_>>() == *expected)
            {
                eprintln!("{what}: after {:?}", start.elapsed());
                return targets.clone();
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "timed out waiting for {what}: Prometheus has {:?}, expected {expected:?}; log:\n{}",
                targets.map(|t| t.into_keys().collect::<Vec<_>>()),
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `--file-sd` against a real Prometheus: its targets are exactly the running tasks with the
/// documented labels, and a scale from 3 to 5 shows up within the refresh.
#[test]
fn prometheus_discovers_exactly_the_running_tasks() {
    let Some(prometheus) = require_tool(
        "prometheus_discovers_exactly_the_running_tasks",
        "prometheus",
        "prometheus",
    ) else {
        return;
    };
    let Some(swarm) = Swarm::start("filesd") else {
        return;
    };
    let web = swarm.name("web");
    let net = swarm.name("net");
    let spec = |replicas| {
        swarm.service_spec("web", replicas, Some("net")).replace(
            &format!("  name: {web}\n"),
            &format!(
                "  name: {web}\n  labels: {{prometheus.io/port: \"9100\", team.name: blue}}\n"
            ),
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let file_sd = dir.path().join("sd").join("swarm.json");
    swarm.write_spec("net.yaml", &swarm.network_spec("net"));
    swarm.write_spec("web.yaml", &spec(3));
    let _operator = swarm.operator_with(
        &["--specs", swarm.specs.path().to_str().unwrap()],
        &swarm.status,
        "",
        &["--file-sd".as_ref(), file_sd.as_os_str()],
    );
    let status = swarm.wait_status("3 replicas ready", CONVERGE, |s| ready(s, &web, 3));
    let prometheus = Prometheus::start(&prometheus, dir.path(), &file_sd);

    let expected = |status: &Value| -> BTreeSet<String> {
        running_endpoints(status, &web)
            .values()
            .map(|e| format!("{}:9100", e["addresses"][0]["ip"].as_str().unwrap()))
            .collect()
    };
    let targets = prometheus.wait_targets("Prometheus lists the 3 tasks", &expected(&status));
    for endpoint in running_endpoints(&status, &web).values() {
        let instance = format!("{}:9100", endpoint["addresses"][0]["ip"].as_str().unwrap());
        let labels = &targets[&instance];
        let label = |name: &str| labels[format!("__meta_swarm_operator_{name}")].clone();
        assert_eq!(label("service"), web.as_str(), "{labels}");
        assert_eq!(label("network"), net.as_str(), "{labels}");
        assert_eq!(
            label("slot"),
            endpoint["slot"].to_string().as_str(),
            "{labels}"
        );
        assert_eq!(label("node"), endpoint["node"], "{labels}");
        assert_eq!(label("task"), endpoint["task"], "{labels}");
        assert_eq!(label("task_state"), "running", "{labels}");
        assert_eq!(label("ready"), "true", "{labels}");
        assert_eq!(label("label_team_name"), "blue", "{labels}");
    }

    // Written only when it changes: a steady swarm leaves the file alone.
    let modified = std::fs::metadata(&file_sd).unwrap().modified().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        std::fs::metadata(&file_sd).unwrap().modified().unwrap(),
        modified,
        "the file was rewritten although nothing changed"
    );

    swarm.write_spec("web.yaml", &spec(5));
    let status = swarm.wait_status("5 replicas ready", CONVERGE, |s| ready(s, &web, 5));
    let seen = Instant::now();
    prometheus.wait_targets("Prometheus lists the 5 tasks", &expected(&status));
    // file_sd refresh (1 s here, inotify anyway) plus the scrape manager's 5 s update period.
    assert!(
        seen.elapsed() < Duration::from_secs(15),
        "the new targets took {:?}",
        seen.elapsed()
    );
}
