//! `swarm-operator get`: one line per object, like `kubectl get`, from a status.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use super::args::AgeArgs;
use super::live_status::LiveStatus;
use super::{CliError, connect, shutdown_signal};
use crate::report::status::{
    Condition, ConditionStatus, ConditionType, NetworkStatus, ServiceStatus, StatusFile,
};

/// The kind of object a row shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RowKind {
    /// A service.
    SwarmService,
    /// A network.
    SwarmNetwork,
}

impl RowKind {
    fn as_str(self) -> &'static str {
        match self {
            RowKind::SwarmService => "SwarmService",
            RowKind::SwarmNetwork => "SwarmNetwork",
        }
    }
}

/// One object's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Object name.
    pub name: String,
    /// Its kind.
    pub kind: RowKind,
    /// The stack it belongs to, `-` for none.
    pub stack: String,
    /// `running/expected` for services, `-` for networks.
    pub ready: String,
    /// Running tasks of the current spec (services).
    pub up_to_date: String,
    /// The condition that says most: Degraded's reason, else Progressing's, else `Ready`.
    pub status: String,
    /// Time since creation (services).
    pub age: String,
    /// Task addresses (services).
    pub endpoints: String,
}

/// The selected objects of a status: every object when `names` is empty. A name is an
/// object's, or `swarmstack/NAME` for every object of that stack. Names not found are returned
/// apart.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selection {
    /// Services by name.
    pub services: BTreeMap<String, ServiceStatus>,
    /// Networks by name.
    pub networks: BTreeMap<String, NetworkStatus>,
    /// Names asked for that are neither.
    #[serde(skip)]
    pub missing: Vec<String>,
}

impl Selection {
    /// Picks `names` (all when empty) out of `status`.
    pub fn of(status: &StatusFile, names: &[String]) -> Selection {
        let stacks: Vec<&str> = names.iter().filter_map(|n| stack_selector(n)).collect();
        let wanted = |name: &String, stack: Option<&String>| {
            names.is_empty()
                || names.contains(name)
                || stack.is_some_and(|s| stacks.contains(&s.as_str()))
        };
        let mut selection = Selection {
            services: status
                .services
                .iter()
                .filter(|(name, s)| wanted(name, s.stack.as_ref()))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect(),
            networks: status
                .networks
                .iter()
                .filter(|(name, n)| wanted(name, n.stack.as_ref()))
                .map(|(n, s)| (n.clone(), s.clone()))
                .collect(),
            missing: Vec::new(),
        };
        let found = |name: &String| match stack_selector(name) {
            Some(stack) => {
                let of_stack = |s: Option<&String>| s.is_some_and(|s| s == stack);
                selection
                    .services
                    .values()
                    .any(|s| of_stack(s.stack.as_ref()))
                    || selection
                        .networks
                        .values()
                        .any(|n| of_stack(n.stack.as_ref()))
            }
            None => selection.services.contains_key(name) || selection.networks.contains_key(name),
        };
        selection.missing = names.iter().filter(|n| !found(n)).cloned().collect();
        selection
    }

    /// The rows, services first, each kind by name. `now` is the current time (RFC 3339).
    pub fn rows(&self, now: &str) -> Vec<Row> {
        let services = self.services.iter().map(|(name, s)| Row {
            name: name.clone(),
            kind: RowKind::SwarmService,
            stack: s.stack.clone().unwrap_or_else(|| "-".to_owned()),
            ready: format!(
                "{}/{}",
                s.running_replicas,
                s.desired_replicas
                    .map_or_else(|| s.endpoints.len().to_string(), |r| r.to_string())
            ),
            up_to_date: s.updated_replicas.to_string(),
            status: summary(&s.conditions),
            age: s
                .created_at
                .as_deref()
                .and_then(|created| age(created, now))
                .unwrap_or_else(|| "-".to_owned()),
            endpoints: endpoints(s),
        });
        let networks = self.networks.iter().map(|(name, n)| Row {
            name: name.clone(),
            kind: RowKind::SwarmNetwork,
            stack: n.stack.clone().unwrap_or_else(|| "-".to_owned()),
            ready: "-".to_owned(),
            up_to_date: "-".to_owned(),
            status: summary(&n.conditions),
            age: "-".to_owned(),
            endpoints: "-".to_owned(),
        });
        services.chain(networks).collect()
    }
}

/// The stack `name` selects when it is `swarmstack/NAME` (the kind in any case).
fn stack_selector(name: &str) -> Option<&str> {
    let (kind, stack) = name.split_once('/')?;
    kind.eq_ignore_ascii_case("swarmstack").then_some(stack)
}

/// Degraded's reason when it holds, else Progressing's, else `Ready` or Ready's reason.
pub fn summary(conditions: &[Condition]) -> String {
    let holds = |kind| {
        conditions
            .iter()
            .find(|c| c.kind == kind && c.status == ConditionStatus::True)
    };
    if let Some(c) = holds(ConditionType::Degraded).or_else(|| holds(ConditionType::Progressing)) {
        return c.reason.to_string();
    }
    match conditions.iter().find(|c| c.kind == ConditionType::Ready) {
        Some(c) if c.status == ConditionStatus::True => "Ready".to_owned(),
        Some(c) => c.reason.to_string(),
        None => "-".to_owned(),
    }
}

/// The addresses of the tasks, at most three, then how many more.
fn endpoints(service: &ServiceStatus) -> String {
    const SHOWN: usize = 3;
    let addresses: Vec<&str> = service
        .endpoints
        .iter()
        .flat_map(|e| e.addresses.iter().map(|a| a.ip.as_str()))
        .collect();
    if addresses.is_empty() {
        return "<none>".to_owned();
    }
    let mut text = addresses[..addresses.len().min(SHOWN)].join(",");
    if addresses.len() > SHOWN {
        let _ = write!(text, " + {} more", addresses.len() - SHOWN);
    }
    text
}

/// Age as kubectl shows it: `45s`, `12m`, `5h`, `3d`.
fn age(since: &str, now: &str) -> Option<String> {
    let since = humantime::parse_rfc3339_weak(since).ok()?;
    let now = humantime::parse_rfc3339_weak(now).ok()?;
    let secs = now
        .duration_since(since)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    Some(match secs {
        0..120 => format!("{secs}s"),
        120..7200 => format!("{}m", secs / 60),
        7200..172_800 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    })
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned lines.
    Table,
    /// The selected objects' status as JSON.
    Json,
    /// The same as YAML.
    Yaml,
}

/// Errors rendering the status as JSON or YAML.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The status did not serialize.
    #[error("rendering the status as {format}: {message}")]
    Serialize {
        /// `JSON` or `YAML`.
        format: &'static str,
        /// What the serializer said.
        message: String,
    },
}

/// `get`'s output, look after look: the first look in full, then (`--watch`) only what
/// changed: the rows that differ in anything but their age, or the whole document.
#[derive(Debug)]
pub struct Printer {
    format: Format,
    shown: Option<Vec<Row>>,
}

impl Printer {
    /// A printer that has shown nothing yet.
    pub fn new(format: Format) -> Printer {
        Printer {
            format,
            shown: None,
        }
    }

    /// The text to print for this look: empty when nothing changed.
    ///
    /// # Errors
    /// The status does not serialize as JSON or YAML.
    pub fn next(&mut self, selection: &Selection, now: &str) -> Result<String, RenderError> {
        let rows = selection.rows(now);
        let ageless = |row: &Row| Row {
            age: String::new(),
            ..row.clone()
        };
        let first = self.shown.is_none();
        let changed: Vec<Row> = rows
            .iter()
            .filter(|row| {
                self.shown
                    .as_ref()
                    .is_none_or(|old| !old.iter().any(|o| ageless(o) == ageless(row)))
            })
            .cloned()
            .collect();
        let gone = self
            .shown
            .as_ref()
            .is_some_and(|old| old.iter().any(|o| !rows.iter().any(|r| r.name == o.name)));
        self.shown = Some(rows.clone());
        if !first && changed.is_empty() && !gone {
            return Ok(String::new());
        }
        match self.format {
            Format::Table => Ok(table_of(&rows, &changed, first)),
            Format::Json => serde_json::to_string_pretty(selection)
                .map(|json| json + "\n")
                .map_err(|e| RenderError::Serialize {
                    format: "JSON",
                    message: e.to_string(),
                }),
            Format::Yaml => {
                serde_saphyr::to_string(selection).map_err(|e| RenderError::Serialize {
                    format: "YAML",
                    message: e.to_string(),
                })
            }
        }
    }
}

/// The header line's cells.
const HEADER: [&str; 8] = [
    "NAME",
    "KIND",
    "STACK",
    "READY",
    "UP-TO-DATE",
    "STATUS",
    "AGE",
    "ENDPOINTS",
];

fn cells(row: &Row) -> [&str; 8] {
    [
        &row.name,
        row.kind.as_str(),
        &row.stack,
        &row.ready,
        &row.up_to_date,
        &row.status,
        &row.age,
        &row.endpoints,
    ]
}

/// Rows as an aligned table; with the header line when `header`.
pub fn table(rows: &[Row], header: bool) -> String {
    table_of(rows, rows, header)
}

/// The rows `shown` (a part of `rows`, e.g. the changed ones) aligned as in a table of all
/// `rows`.
pub fn table_of(rows: &[Row], shown: &[Row], header: bool) -> String {
    let mut widths = HEADER.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 8]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                let _ = write!(text, "{cell:<width$}   ");
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    if header {
        line(HEADER);
    }
    for row in shown {
        line(cells(row));
    }
    out
}

/// How `get` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// One aligned line per object.
    Table,
    /// The objects' status as JSON.
    Json,
    /// The objects' status as YAML.
    Yaml,
}

/// The arguments of `get`.
#[derive(clap::Args)]
pub struct GetArgs {
    /// Objects to show (default: every object of the instance); `swarmstack/NAME` shows every
    /// object of stack NAME.
    pub names: Vec<String>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Keep running and print the lines that change.
    #[arg(short, long)]
    pub watch: bool,
    /// Compare the swarm with this spec directory (a spec not applied yet is not Ready).
    #[arg(long)]
    pub specs: Option<PathBuf>,
    /// As for `run`.
    #[arg(long, env = "SWARM_OPERATOR_INSTANCE", default_value = "default")]
    pub instance: String,
    #[command(flatten)]
    pub age: AgeArgs,
}

/// Prints the objects once, or (`--watch`) then every line that changes until SIGTERM or
/// Ctrl-C; exit 1 if a named object was not found.
pub async fn run(args: GetArgs, context: Option<&str>) -> Result<ExitCode, CliError> {
    let GetArgs {
        names,
        output,
        watch,
        specs,
        instance,
        age,
    } = args;
    let identities = age.read()?;
    let api = connect(context).await?;
    // The commit is a header line of the table (JSON and YAML keep the status' shape).
    let revision = match output {
        OutputFormat::Table => crate::applied_revision::RevisionRecord::new(api.clone(), &instance)
            .read()
            .await
            .ok()
            .filter(|p| p.loaded.is_some()),
        OutputFormat::Json | OutputFormat::Yaml => None,
    };
    let mut view = LiveStatus::open(api, &instance, specs.as_deref(), &identities).await?;
    if let Some(progress) = revision {
        println!("REVISION {progress}");
    }
    let mut printer = Printer::new(match output {
        OutputFormat::Table => Format::Table,
        OutputFormat::Json => Format::Json,
        OutputFormat::Yaml => Format::Yaml,
    });
    let mut first = true;
    loop {
        let snapshot = view.snapshot();
        let selection = Selection::of(&snapshot.status, &names);
        if first {
            for error in &snapshot.status.errors {
                let at = [error.line, error.column]
                    .iter()
                    .flatten()
                    .map(|n| format!(":{n}"))
                    .collect::<String>();
                eprintln!("{}{at}: {}: {}", error.file, error.field, error.message);
            }
            for name in &selection.missing {
                eprintln!(
                    "{name}: no service or network of that name or stack (instance {instance:?})"
                );
            }
            if names.is_empty() && selection.services.is_empty() && selection.networks.is_empty() {
                eprintln!("no services or networks of instance {instance:?}");
            }
        }
        print!(
            "{}",
            printer.next(&selection, &snapshot.status.generated_at)?
        );
        first = false;
        if !watch {
            return Ok(if selection.missing.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::select! {
            () = view.changed() => {}
            () = shutdown_signal() => return Ok(ExitCode::SUCCESS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::status::{ConditionReason, Endpoint, StatusAddress};

    fn condition(kind: ConditionType, holds: bool, reason: ConditionReason) -> Condition {
        Condition {
            kind,
            status: holds.into(),
            reason,
            message: "".into(),
            last_transition_time: "".into(),
        }
    }

    fn service(running: u64, updated: u64, conditions: Vec<Condition>) -> ServiceStatus {
        ServiceStatus {
            desired_replicas: Some(3),
            running_replicas: running,
            updated_replicas: updated,
            spec_hash: None,
            observed_spec_hash: None,
            created_at: Some("2026-01-01T00:00:00Z".into()),
            conditions,
            virtual_ips: vec![],
            endpoints: (1..=running)
                .map(|i| Endpoint {
                    task: format!("t{i}"),
                    slot: Some(i),
                    node: None,
                    state: "running".into(),
                    addresses: vec![StatusAddress {
                        network: "net".into(),
                        ip: format!("10.0.0.{i}"),
                    }],
                })
                .collect(),
            last_error: None,
            schedule: None,
            stack: None,
        }
    }

    #[test]
    fn rows_show_counts_the_telling_condition_and_age() {
        use ConditionReason as R;
        use ConditionType::{Degraded, Progressing, Ready};
        let mut status = StatusFile {
            generated_at: String::new(),
            services: BTreeMap::new(),
            networks: BTreeMap::new(),
            errors: vec![],
            source: None,
            warnings: vec![],
        };
        status.services.insert(
            "api".into(),
            service(
                3,
                1,
                vec![
                    condition(Ready, false, R::ReplicasOutdated),
                    condition(Progressing, true, R::RollingUpdate),
                    condition(Degraded, false, R::AsExpected),
                ],
            ),
        );
        status.services.insert(
            "db".into(),
            service(
                3,
                3,
                vec![
                    condition(Ready, true, R::AllReplicasRunning),
                    condition(Progressing, false, R::Converged),
                    condition(Degraded, false, R::AsExpected),
                ],
            ),
        );
        status.services.insert(
            "web".into(),
            service(
                2,
                0,
                vec![
                    condition(Ready, false, R::ReplicasOutdated),
                    condition(Progressing, false, R::Converged),
                    condition(Degraded, true, R::UpdatePaused),
                ],
            ),
        );
        for name in ["api", "web"] {
            status.services.get_mut(name).unwrap().stack = Some("shop".into());
        }
        let all = Selection::of(&status, &[]);
        let text = table(&all.rows("2026-01-01T00:03:10Z"), true);
        assert_eq!(
            text,
            "\
NAME   KIND           STACK   READY   UP-TO-DATE   STATUS          AGE   ENDPOINTS
api    SwarmService   shop    3/3     1            RollingUpdate   3m    10.0.0.1,10.0.0.2,10.0.0.3
db     SwarmService   -       3/3     3            Ready           3m    10.0.0.1,10.0.0.2,10.0.0.3
web    SwarmService   shop    2/3     0            UpdatePaused    3m    10.0.0.1,10.0.0.2
"
        );
        let some = Selection::of(&status, &["db".to_owned(), "nope".to_owned()]);
        assert_eq!(some.services.keys().collect::<Vec<_>>(), ["db"]);
        assert_eq!(some.missing, ["nope"]);
        // A stack selects its objects; a stack with none is missing like a name.
        let stack = Selection::of(
            &status,
            &["SwarmStack/shop".to_owned(), "swarmstack/none".to_owned()],
        );
        assert_eq!(stack.services.keys().collect::<Vec<_>>(), ["api", "web"]);
        assert_eq!(stack.missing, ["swarmstack/none"]);
    }

    #[test]
    fn watching_prints_the_table_once_then_only_changed_rows() {
        use ConditionReason as R;
        use ConditionType::{Degraded, Progressing, Ready};
        let status = |running: u64, reason: R| StatusFile {
            generated_at: String::new(),
            services: [(
                "api".to_owned(),
                service(
                    running,
                    running,
                    vec![
                        condition(Ready, running == 3, reason),
                        condition(Progressing, running != 3, R::Scaling),
                        condition(Degraded, false, R::AsExpected),
                    ],
                ),
            )]
            .into(),
            networks: BTreeMap::new(),
            errors: vec![],
            source: None,
            warnings: vec![],
        };
        let mut printer = Printer::new(Format::Table);
        let scaling = status(2, R::ReplicasUnavailable);
        let first = printer
            .next(&Selection::of(&scaling, &[]), "2026-01-01T00:00:10Z")
            .unwrap();
        assert!(first.starts_with("NAME "), "{first}");
        assert_eq!(first.lines().count(), 2, "{first}");
        // Only the age moved: nothing to print.
        let same = printer
            .next(&Selection::of(&scaling, &[]), "2026-01-01T00:00:20Z")
            .unwrap();
        assert_eq!(same, "");
        let ready = status(3, R::AllReplicasRunning);
        let changed = printer
            .next(&Selection::of(&ready, &[]), "2026-01-01T00:00:30Z")
            .unwrap();
        assert_eq!(changed.lines().count(), 1, "{changed}");
        assert!(
            changed.starts_with("api ") && changed.contains(" Ready "),
            "{changed}"
        );
        let mut json = Printer::new(Format::Json);
        let text = json
            .next(&Selection::of(&ready, &[]), "2026-01-01T00:00:30Z")
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed["services"]["api"]["updatedReplicas"], 3);
    }

    #[test]
    fn ages_read_like_kubectl() {
        let at = |now| age("2026-01-01T00:00:00Z", now).unwrap();
        assert_eq!(at("2026-01-01T00:00:59Z"), "59s");
        assert_eq!(at("2026-01-01T00:02:00Z"), "2m");
        assert_eq!(at("2026-01-01T03:00:00Z"), "3h");
        assert_eq!(at("2026-01-04T00:00:00Z"), "3d");
    }
}
