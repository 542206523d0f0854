//! The live status page: HTML rendered on the server from the [`Overview`], at `/`, with the
//! JSON at `/api/v1/status` and live updates of the page as server-sent events.
//!
//! Every value is interpolated through maud, which HTML-escapes it: service names are checked,
//! but file names and error messages come straight from users' files, and a content security
//! policy lets only the page's own CSS and few lines of plain JavaScript apply. Both are in the
//! binary and served from the same address (no CDN, no framework), so the page works offline.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Json, Response};
use axum::routing::get;
use futures_util::Stream;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::report::activity::ActivityEvent;
use crate::report::overview::{NodeView, Overview, TaskCard};
use crate::report::status::publisher::{Snapshot, Snapshots};
use crate::report::status::{
    Condition, ConditionStatus, ConditionType, ServiceStatus, StatusSpecError,
};

/// Event streams open at once (each open page holds one): past it, 503, so that open pages
/// cannot take every connection.
pub const MAX_EVENT_STREAMS: usize = 32;

/// What the page's endpoints read.
#[derive(Clone)]
pub struct PageState {
    /// The status and overview as the publisher last built them: every request and stream
    /// reads the same snapshot, none builds its own.
    snapshots: Snapshots,
    /// Ends the event streams: the server's graceful shutdown waits for every open response,
    /// and an open page's stream would otherwise never end.
    shutdown: CancellationToken,
    /// One permit per open event stream.
    streams: Arc<Semaphore>,
}

impl PageState {
    /// Shows what `snapshots` publishes; open pages are let go at `shutdown`.
    pub fn new(snapshots: Snapshots, shutdown: CancellationToken) -> Self {
        PageState {
            snapshots,
            shutdown,
            streams: Arc::new(Semaphore::new(MAX_EVENT_STREAMS)),
        }
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }
}

/// The snapshot's board, rendered once however many pages show it.
fn board(snapshot: &Snapshot) -> &str {
    snapshot.board(|overview| render_board(overview).into_string())
}

/// `/` (the page), `/api/v1/status` (its data as JSON) and `/api/v1/events` (the page's board
/// as server-sent events: at once, then whenever something but the time changed).
pub fn router(state: PageState) -> Router {
    Router::new()
        .route("/", get(serve_page))
        .route("/page.css", get(|| async { asset("text/css", STYLE) }))
        .route(
            "/page.js",
            get(|| async { asset("text/javascript", SCRIPT) }),
        )
        .route("/api/v1/status", get(serve_status))
        .route("/api/v1/events", get(serve_events))
        .with_state(state)
}

/// Only the page's own files run or style it, even if a user's text ever escaped the escaping.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

async fn serve_page(State(state): State<PageState>) -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        ],
        Html({
            let snapshot = state.snapshot();
            page(&snapshot.overview().instance, board(&snapshot)).into_string()
        }),
    )
}

fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, content_type)], body)
}

async fn serve_status(State(state): State<PageState>) -> Response {
    let snapshot = state.snapshot();
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(snapshot.overview()),
    )
        .into_response()
}

async fn serve_events(State(state): State<PageState>) -> Response {
    let Ok(permit) = state.streams.clone().try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "10")],
            format!("{MAX_EVENT_STREAMS} event streams are open; try again later\n"),
        )
            .into_response();
    };
    events(state, permit).into_response()
}

/// The stream holds `permit` until it ends.
fn events(
    state: PageState,
    permit: OwnedSemaphorePermit,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The board at once, then each new snapshot's board when it differs from the last one sent;
    // nothing is built here, and a snapshot's board is rendered once for every open page.
    let stream = futures_util::stream::unfold(
        (state, None::<Arc<Snapshot>>, permit),
        |(mut state, mut last, permit)| async move {
            loop {
                if last.is_some() {
                    tokio::select! {
                        changed = state.snapshots.changed() => {
                            // The publisher ended: the operator is stopping.
                            if changed.is_err() {
                                return None;
                            }
                        }
                        () = state.shutdown.cancelled() => return None,
                    }
                }
                let snapshot = state.snapshots.borrow_and_update().clone();
                let unchanged = last
                    .as_ref()
                    .is_some_and(|l| Arc::ptr_eq(l, &snapshot) || board(l) == board(&snapshot));
                if !unchanged {
                    let event = Event::default().event("board").data(board(&snapshot));
                    last = Some(snapshot);
                    return Some((Ok(event), (state, last, permit)));
                }
            }
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

const STYLE: &str = r#"
:root { --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --off: #6e7781; --line: #d0d7de; }
* { box-sizing: border-box; }
body { font: 15px/1.4 system-ui, sans-serif; margin: 0; color: #1f2328; background: #f6f8fa; }
header { display: flex; flex-wrap: wrap; gap: .3em 1em; align-items: baseline; padding: .6em 1em;
         background: #24292f; color: #fff; }
header h1 { font-size: 1.1em; margin: 0; }
body[data-live=connecting] #live::before { content: "● connecting"; color: #d4a72c; }
body[data-live=live] #live::before { content: "● live"; color: #4ac26b; }
body[data-live=reconnecting] #live::before { content: "● reconnecting"; color: #d4a72c; }
main { padding: .5em 1em 2em; }
h2 { font-size: 1em; margin: 1.2em 0 .4em; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; background: #fff; min-width: 100%; }
th, td { text-align: left; padding: .35em .6em; border-bottom: 1px solid var(--line); vertical-align: top; }
tbody.stack th { background: #f6f8fa; font-weight: 600; }
td small { display: block; color: var(--off); }
.cond-true.cond-Ready, .cond-false.cond-Degraded { color: var(--ok); }
.cond-false.cond-Ready { color: var(--warn); }
.cond-true.cond-Degraded { color: var(--bad); font-weight: 600; }
.cond-true.cond-Progressing { color: var(--warn); }
tr[data-degraded=true] td:first-child { border-left: 4px solid var(--bad); }
tr[data-ready=true] td:first-child { border-left: 4px solid var(--ok); }
tr[data-ready=false][data-degraded=false] td:first-child { border-left: 4px solid var(--warn); }
.errors li { color: var(--bad); margin: .2em 0; word-break: break-word; }
.warnings li { color: var(--warn); margin: .2em 0; word-break: break-word; }
.columns { display: flex; gap: .8em; overflow-x: auto; padding-bottom: .5em; }
.node { flex: 1 0 15em; max-width: 24em; background: #fff; border: 1px solid var(--line);
        border-radius: 6px; padding: .5em; }
.node h3 { font-size: 1em; margin: 0; word-break: break-all; }
.node > p { margin: 0 0 .5em; color: var(--off); font-size: .9em; }
.node[data-node-state=down] { opacity: .6; }
.task { border-radius: 4px; padding: .35em .5em; margin: .35em 0; border-left: 5px solid var(--off);
        background: #f6f8fa; font-size: .9em; word-break: break-all; }
.task .state { float: right; font-weight: 600; }
.task ul { list-style: none; margin: .2em 0 0; padding: 0; color: #57606a; }
.task[data-state=running] { border-color: var(--ok); background: #dafbe1; }
.task[data-state=running] .state { color: var(--ok); }
.task[data-state=failed], .task[data-state=rejected], .task[data-state=orphaned] { border-color: var(--bad); background: #ffebe9; }
.task[data-state=failed] .state, .task[data-state=rejected] .state { color: var(--bad); }
.task[data-state=new], .task[data-state=pending], .task[data-state=assigned], .task[data-state=accepted],
.task[data-state=preparing], .task[data-state=ready], .task[data-state=starting] { border-color: var(--warn); background: #fff8c5; }
.activity ol { list-style: none; padding: 0; margin: 0; background: #fff; border: 1px solid var(--line); }
.activity li { padding: .3em .6em; border-bottom: 1px solid var(--line); word-break: break-word; }
.activity time { color: var(--off); font-size: .85em; margin-right: .5em; }
.activity [data-kind=error] b { color: var(--bad); }
.activity [data-kind=drift-corrected] b { color: var(--warn); }
.activity [data-kind=created] b, .activity [data-kind=updated] b { color: var(--ok); }
.empty { color: var(--off); }
.follower { color: var(--warn); }
@media (max-width: 40em) {
  .node { flex-basis: 80vw; }
  /* The service table becomes one block per service, each condition labelled. */
  table, tbody, tr, td { display: block; min-width: 0; }
  thead { display: none; }
  tr { border-bottom: 1px solid var(--line); padding: .3em 0; }
  td { border: 0; padding: .1em .6em; }
  td[data-cond]::before { content: attr(data-cond) ": "; color: #1f2328; font-weight: normal; }
  td.replicas::before { content: "replicas "; color: var(--off); }
}
"#;

/// Replaces the board whenever the server sends a new one; EventSource reconnects by itself.
const SCRIPT: &str = r#"
(function () {
  if (!window.EventSource) return;
  document.body.dataset.live = "connecting";
  var board = document.getElementById("board");
  var events = new EventSource("api/v1/events");
  events.addEventListener("board", function (e) {
    board.innerHTML = e.data;
    document.body.dataset.live = "live";
  });
  events.onerror = function () { document.body.dataset.live = "reconnecting"; };
})();
"#;

/// The whole page.
pub fn render_page(overview: &Overview) -> Markup {
    page(&overview.instance, &render_board(overview).into_string())
}

/// The whole page around a board rendered already.
fn page(instance: &str, board: &str) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "swarm-operator · " (instance) }
                link rel="stylesheet" href="page.css";
            }
            body data-live="static" {
                header {
                    h1 { "swarm-operator" }
                    span { "instance " b { (instance) } }
                    span #live {}
                }
                main #board { (PreEscaped(board)) }
                script src="page.js" {}
            }
        }
    }
}

/// The part of the page that live updates replace.
pub fn render_board(overview: &Overview) -> Markup {
    let status = &overview.status;
    html! {
        p.updated data-leader=(overview.leader) {
            "as of " time datetime=(status.generated_at) { (status.generated_at) }
            @if let Some(revision) = &overview.revision {
                " · commit " code.revision data-revision=(revision) title=(revision) { (revision.short()) }
            }
            @if !overview.leader {
                " · " b.follower { "follower" } ": this replica watches, the leader acts (its page lists the activity)"
            }
        }
        section.services {
            h2 { "Services (" (status.services.len()) ")" }
            @if status.services.is_empty() {
                p.empty { "No services in the spec directory." }
            } @else {
                div.scroll { table {
                    thead { tr { th { "service" } th { "replicas" } th { "Ready" } th { "Progressing" } th { "Degraded" } } }
                    tbody {
                        @for (name, service) in status.services.iter().filter(|(_, s)| s.stack.is_none()) {
                            (service_row(name, service))
                        }
                    }
                    // A stack's services under its name, as `docker stack services` lists them.
                    @for (stack, services) in by_stack(&status.services) {
                        tbody.stack data-stack=(stack) {
                            tr { th colspan="5" { "stack " code { (stack) } " (" (services.len()) ")" } }
                            @for (name, service) in services { (service_row(name, service)) }
                        }
                    }
                } }
            }
        }
        @if !status.errors.is_empty() {
            section.errors {
                h2 { "Spec errors (" (status.errors.len()) ")" }
                ul { @for error in &status.errors { (spec_error(error)) } }
            }
        }
        @if !status.warnings.is_empty() {
            section.warnings {
                h2 { "Spec warnings (" (status.warnings.len()) ")" }
                ul { @for warning in &status.warnings { (spec_error(warning)) } }
            }
        }
        section.nodes {
            h2 { "Nodes (" (overview.nodes.len()) ")" }
            div.columns {
                @for node in &overview.nodes { (node_column(node)) }
                @if !overview.unassigned.is_empty() {
                    div.node data-node="" data-node-state="unassigned" {
                        h3 { "not scheduled yet" }
                        p { "waiting for a node" }
                        @for task in &overview.unassigned { (task_card(task, "")) }
                    }
                }
            }
        }
        section.activity {
            h2 { "Activity (last " (crate::report::activity::CAPACITY) ")" }
            @if overview.activity.is_empty() {
                p.empty { "Nothing happened yet." }
            } @else {
                ol { @for event in &overview.activity { (activity_entry(event)) } }
            }
        }
    }
}

/// The services that belong to a stack, by stack, each stack's by name.
fn by_stack(
    services: &BTreeMap<String, ServiceStatus>,
) -> BTreeMap<&str, Vec<(&String, &ServiceStatus)>> {
    let mut stacks: BTreeMap<&str, Vec<(&String, &ServiceStatus)>> = BTreeMap::new();
    for (name, service) in services {
        if let Some(stack) = &service.stack {
            stacks.entry(stack).or_default().push((name, service));
        }
    }
    stacks
}

/// The conditions, in the order of the table's columns, with their column titles.
const CONDITIONS: [(ConditionType, &str); 3] = [
    (ConditionType::Ready, "Ready"),
    (ConditionType::Progressing, "Progressing"),
    (ConditionType::Degraded, "Degraded"),
];

fn condition(service: &ServiceStatus, kind: ConditionType) -> Option<&Condition> {
    service.conditions.iter().find(|c| c.kind == kind)
}

fn is_true(condition: Option<&Condition>) -> bool {
    condition.is_some_and(|c| c.status == ConditionStatus::True)
}

fn status_word(status: ConditionStatus) -> &'static str {
    match status {
        ConditionStatus::True => "True",
        ConditionStatus::False => "False",
    }
}

fn service_row(name: &str, service: &ServiceStatus) -> Markup {
    let ready = is_true(condition(service, ConditionType::Ready));
    let degraded = is_true(condition(service, ConditionType::Degraded));
    let desired = service
        .desired_replicas
        .map_or_else(|| "global".to_owned(), |d| d.to_string());
    html! {
        tr data-service=(name) data-ready=(ready) data-degraded=(degraded) {
            td { b { (name) }
                 @if let Some(error) = &service.last_error { small { (error) } } }
            td.replicas { (service.running_replicas) "/" (desired) }
            @for (kind, title) in CONDITIONS {
                @if let Some(c) = condition(service, kind) {
                    td class={ "cond-" (status_word(c.status).to_lowercase()) " cond-" (title) }
                        data-cond=(title) title=(c.message) {
                        (status_word(c.status)) " · " (c.reason)
                        @if !c.message.is_empty() { small { (c.message) } }
                    }
                } @else { td {} }
            }
        }
    }
}

fn spec_error(error: &StatusSpecError) -> Markup {
    let line = error.line.map(|l| l.to_string()).unwrap_or_default();
    let mut location = error.file.clone();
    for part in [error.line, error.column].into_iter().flatten() {
        location.push_str(&format!(":{part}"));
    }
    html! {
        li data-file=(error.file) data-line=(line) {
            code { (location) } ": "
            @if !error.field.is_empty() { code { (error.field) } ": " }
            (error.message)
        }
    }
}

fn node_column(node: &NodeView) -> Markup {
    html! {
        div.node data-node-id=(node.id) data-node=(node.hostname) data-role=(node.role.as_str())
            data-availability=(node.availability.as_str()) data-node-state=(node.state) {
            h3 { (node.hostname) }
            p { (node.role.as_str()) " · " (node.availability.as_str()) " · " (node.state) }
            @if node.tasks.is_empty() { p.empty { "no tasks" } }
            @for task in &node.tasks { (task_card(task, &node.hostname)) }
        }
    }
}

fn task_card(task: &TaskCard, node: &str) -> Markup {
    html! {
        div.task data-task=(task.task) data-service=(task.service) data-node=(node)
            data-state=(task.state) title=(task.task) {
            span.state { (task.state) }
            b { (task.service) }
            @if let Some(slot) = task.slot { "." (slot) }
            " :" (task.image_tag)
            @if !task.addresses.is_empty() {
                ul { @for address in &task.addresses { li { (address.network) " " (address.ip) } } }
            }
        }
    }
}

fn activity_entry(event: &ActivityEvent) -> Markup {
    html! {
        li data-kind=(event.kind.as_str().replace(' ', "-")) {
            time datetime=(event.at) { (event.at) }
            b { (event.kind.as_str()) } " " (event.object)
            @if !event.message.is_empty() { ": " (event.message) }
            @if event.count > 1 { " (×" (event.count) ")" }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::activity::ActivityKind;
    use crate::report::overview::tests::{sample_overview, sample_world};
    use std::time::Duration;

    const HOSTILE: &str = "<img src=x onerror=alert(1)>\"'&";

    /// A stack's services are listed under the stack's name, after the services of no stack.
    #[test]
    fn a_stacks_services_are_grouped_under_its_name() {
        let mut overview = sample_overview(&sample_world());
        let web = overview.status.services["web"].clone();
        for name in ["shop_web", "shop_api"] {
            let mut service = web.clone();
            service.stack = Some("shop".into());
            overview.status.services.insert(name.into(), service);
        }
        let html = render_board(&overview).into_string();
        let alone = html.find("data-service=\"web\"").expect("web is listed");
        let group = html
            .find("data-stack=\"shop\"")
            .expect("the stack is a group");
        let api = html
            .find("data-service=\"shop_api\"")
            .expect("shop_api is listed");
        let shop_web = html
            .find("data-service=\"shop_web\"")
            .expect("shop_web is listed");
        assert!(alone < group && group < api && api < shop_web, "{html}");
        assert!(html.contains("stack <code>shop</code> (2)"), "{html}");
        assert_eq!(html.matches("data-stack=").count(), 1, "{html}");
    }

    #[test]
    fn hostile_names_and_messages_are_shown_as_text() {
        let mut overview = sample_overview(&sample_world());
        overview.status.errors.push(StatusSpecError {
            file: format!("{HOSTILE}.yaml"),
            line: Some(3),
            column: Some(5),
            field: format!("spec.{HOSTILE}"),
            message: format!("bad value {HOSTILE}"),
        });
        overview.nodes[0].hostname = HOSTILE.into();
        overview.nodes[0].tasks[0].addresses[0].network = HOSTILE.into();
        let mut web = overview.status.services["web"].clone();
        web.last_error = Some(format!("</td></tr><script>alert(1)</script>{HOSTILE}"));
        overview.status.services.insert(HOSTILE.into(), web);
        overview.activity.push(ActivityEvent {
            at: "2026-01-01T00:00:00Z".into(),
            kind: ActivityKind::Error,
            object: format!("service/{HOSTILE}"),
            message: HOSTILE.into(),
            count: 2,
        });
        let html = render_page(&overview).into_string();
        assert!(!html.contains("<img"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("</td></tr><script>"), "{html}");
        let escaped = "&lt;img src=x onerror=alert(1)&gt;&quot;'&amp;";
        assert!(
            html.contains(&format!("data-file=\"{escaped}.yaml\"")),
            "{html}"
        );
        assert!(
            html.contains(&format!("data-service=\"{escaped}\"")),
            "{html}"
        );
        assert!(html.contains(&format!("data-node=\"{escaped}\"")), "{html}");
        // The page's own script is the only one.
        assert_eq!(html.matches("<script").count(), 1, "{html}");
        assert!(html.contains("<script src=\"page.js\"></script>"), "{html}");
    }

    #[test]
    fn hooks_for_tests_and_scripts() {
        let html = render_board(&sample_overview(&sample_world())).into_string();
        assert!(html.contains(
            "data-task=\"t1\" data-service=\"web\" data-node=\"manager-1\" data-state=\"running\""
        ), "{html}");
        assert!(html.contains(
            "data-task=\"t3\" data-service=\"web\" data-node=\"worker-1\" data-state=\"starting\""
        ), "{html}");
        assert!(
            html.contains("data-service=\"web\" data-ready=\"false\""),
            "{html}"
        );
        assert!(
            html.contains("data-role=\"worker\" data-availability=\"drain\""),
            "{html}"
        );
        assert!(html.contains("2/3"), "replicas running/desired: {html}");
        assert!(!html.contains("data-task=\"t0\""), "an old task: {html}");
    }

    #[test]
    fn the_commit_is_shown_short_with_the_full_id_at_hand() {
        let mut overview = sample_overview(&sample_world());
        assert!(!render_board(&overview).into_string().contains("commit"));
        let full = format!("3f2a9c1{}", "e".repeat(33));
        overview.revision = Some(crate::revision::Revision::parse(&full).unwrap());
        let html = render_board(&overview).into_string();
        assert!(
            html.contains(&format!(
                "commit <code class=\"revision\" data-revision=\"{full}\" title=\"{full}\">3f2a9c1</code>"
            )),
            "{html}"
        );
    }

    #[test]
    fn a_follower_says_so() {
        let mut overview = sample_overview(&sample_world());
        let leader = render_board(&overview).into_string();
        assert!(leader.contains("data-leader=\"true\""), "{leader}");
        assert!(!leader.contains("follower"), "{leader}");
        overview.leader = false;
        let follower = render_board(&overview).into_string();
        assert!(follower.contains("data-leader=\"false\""), "{follower}");
        assert!(follower.contains("the leader acts"), "{follower}");
    }

    #[test]
    fn spec_warnings_have_their_own_section() {
        let mut overview = sample_overview(&sample_world());
        let html = render_board(&overview).into_string();
        assert!(!html.contains("Spec warnings"), "none: no section");
        overview.status.warnings.push(StatusSpecError {
            file: "shop/docker-stack.yml".into(),
            line: Some(4),
            column: Some(5),
            field: "services.web.build".into(),
            message: "ignored: stack deploy does not build".into(),
        });
        let html = render_board(&overview).into_string();
        assert!(html.contains("Spec warnings (1)"), "{html}");
        assert!(
            html.contains(
                "<code>shop/docker-stack.yml:4:5</code>: <code>services.web.build</code>"
            ),
            "{html}"
        );
    }

    #[test]
    fn spec_errors_carry_file_and_line() {
        let mut overview = sample_overview(&sample_world());
        overview.status.errors.push(StatusSpecError {
            file: "web.yaml".into(),
            line: Some(7),
            column: Some(13),
            field: "spec.replicas".into(),
            message: "expected a number".into(),
        });
        let html = render_board(&overview).into_string();
        assert!(
            html.contains("<li data-file=\"web.yaml\" data-line=\"7\"><code>web.yaml:7:13</code>"),
            "{html}"
        );
    }

    #[test]
    fn the_page_needs_nothing_from_the_network() {
        let html = render_page(&sample_overview(&sample_world())).into_string();
        for text in [html.as_str(), STYLE, SCRIPT] {
            for outside in ["http:", "https:", "//", "url(", "@import"] {
                assert!(!text.contains(outside), "{outside} in {text}");
            }
        }
        assert!(html.contains("href=\"page.css\""), "{html}");
        assert!(html.contains("name=\"viewport\""), "readable on a phone");
    }

    /// The stream sends the board at once, nothing for a snapshot that shows the same board,
    /// the new board for one that differs, and ends at shutdown: it builds nothing itself.
    #[tokio::test(start_paused = true)]
    async fn the_event_stream_follows_the_snapshots() {
        use futures_util::StreamExt;

        let overview = sample_overview(&sample_world());
        let (sender, snapshots) =
            tokio::sync::watch::channel(Arc::new(Snapshot::new(overview.clone())));
        let stop = CancellationToken::new();
        let state = PageState::new(snapshots, stop.clone());
        let permit = state.streams.clone().try_acquire_owned().unwrap();
        let mut body = events(state, permit)
            .into_response()
            .into_body()
            .into_data_stream();
        let soon = Duration::from_secs(1);
        // Within a second of the paused clock (the keep-alive comes every 15 s): the chunk, or
        // None once the stream ended.
        let mut next = async || {
            let chunk = tokio::time::timeout(soon, body.next()).await;
            chunk.map(|c| c.map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap()))
        };
        let first = next().await.expect("the board at once").expect("open");
        assert!(first.starts_with("event: board\n"), "{first}");
        assert!(first.contains("data-leader=\"true\""), "{first}");

        sender.send_replace(Arc::new(Snapshot::new(overview.clone())));
        assert!(next().await.is_err(), "the same board sent again");

        let mut follower = overview;
        follower.leader = false;
        sender.send_replace(Arc::new(Snapshot::new(follower)));
        let second = next().await.expect("the new board").expect("open");
        assert!(second.contains("data-leader=\"false\""), "{second}");

        stop.cancel();
        assert_eq!(next().await.expect("ended at once"), None);
    }
}
