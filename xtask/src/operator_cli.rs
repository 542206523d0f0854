//! The operator's read-only commands (`wait`, `wait --revision`, `get`) run on a swarm manager in a one-off container of the operator image, against that manager's engine.

use std::fmt;
use std::time::Duration;

use crate::cmd::CmdError;
use crate::operator::IMAGE;
use crate::swarm::Manager;

/// Where a spec directory of the manager is mounted inside the one-off container.
const SPECS_MOUNT: &str = "/specs";

/// Why the operator's command gave no answer to read.
#[derive(Debug, thiserror::Error)]
pub enum OperatorCliError {
    /// `docker` itself could not be started.
    #[error(transparent)]
    Cmd(#[from] CmdError),
    /// The container ended with a code the command does not give (`docker run`'s own 125,
    /// a signal), or `get` did not find a named object.
    #[error("`swarm-operator {command}` on {manager} exited {code:?}: {stderr}")]
    Exit {
        /// The operator's arguments.
        command: String,
        /// Which manager it ran on.
        manager: String,
        /// The exit code, `None` when a signal ended it.
        code: Option<i32>,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// Which objects `wait` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Targets<'a> {
    /// `--all`: every object of the instance, or of the specs with a spec directory.
    All,
    /// These names.
    Named(&'a [&'a str]),
}

/// What `wait` waits for (`--for`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// `Ready` holds.
    Ready,
    /// The object is gone from the swarm.
    Deleted,
}

/// One `swarm-operator wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait<'a> {
    /// The objects.
    pub targets: Targets<'a>,
    /// Until what.
    pub goal: Goal,
    /// `--timeout`: the command's own bound, after which it exits 2.
    pub timeout: Duration,
    /// `--specs`: a spec directory on the manager; an object is then ready only once the
    /// swarm runs its current spec.
    pub specs_dir: Option<&'a str>,
}

/// How `wait` ended, by its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitExit {
    /// 0: every object reached the goal.
    Reached,
    /// 1: an object is Degraded; stderr names it, the reason and the failing task's error.
    Degraded,
    /// 2: time ran out; stderr says where each pending object stood. (The command's own
    /// errors, such as no engine to talk to, exit 2 as well, saying `error: …` instead.)
    TimedOut,
}

/// What one `wait` said: its exit and its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitReport {
    /// How it ended.
    pub exit: WaitExit,
    /// A line per change of an object (`api: 1/3 updated, 3 running (RollingUpdate)`).
    pub stdout: String,
    /// The failed or pending objects, one line each.
    pub stderr: String,
}

impl fmt::Display for WaitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wait {:?}\nstdout:\n{}stderr:\n{}",
            self.exit, self.stdout, self.stderr
        )
    }
}

/// The operator's arguments for `wait` (before `--specs`).
fn wait_args(wait: &Wait<'_>) -> Vec<String> {
    let mut args = vec!["wait".to_owned()];
    match wait.targets {
        Targets::All => args.push("--all".into()),
        Targets::Named(names) => args.extend(names.iter().map(|n| (*n).to_owned())),
    }
    let goal = match wait.goal {
        Goal::Ready => "ready",
        Goal::Deleted => "deleted",
    };
    args.extend(["--for".into(), goal.into(), "--timeout".into()]);
    args.push(format!("{}s", wait.timeout.as_secs().max(1)));
    args
}

/// `swarm-operator ARGS [--specs /specs]` in a one-off container on `manager`: its exit code
/// (`None` for a signal), stdout and stderr.
fn run(
    manager: &Manager,
    specs_dir: Option<&str>,
    args: &[String],
) -> Result<(Option<i32>, String, String), CmdError> {
    // The engine's socket is all the command talks to: no network.
    let mut cmd = manager.docker([
        "run",
        "--rm",
        "--network",
        "none",
        "--volume",
        "/var/run/docker.sock:/var/run/docker.sock",
    ]);
    if let Some(dir) = specs_dir {
        cmd = cmd.args(["--volume", &format!("{dir}:{SPECS_MOUNT}:ro")]);
    }
    cmd = cmd.arg(IMAGE).args(args);
    if specs_dir.is_some() {
        cmd = cmd.args(["--specs", SPECS_MOUNT]);
    }
    cmd.output_code()
}

/// Runs `swarm-operator wait` on `manager` and reads its exit: what a CI job deploying to the
/// swarm would run. Returns once the command does (its `--timeout` bounds that).
pub fn wait(manager: &Manager, wait: &Wait<'_>) -> Result<WaitReport, OperatorCliError> {
    let args = wait_args(wait);
    let (code, stdout, stderr) = run(manager, wait.specs_dir, &args)?;
    let exit = match code {
        Some(0) => WaitExit::Reached,
        Some(1) => WaitExit::Degraded,
        Some(2) => WaitExit::TimedOut,
        code => {
            return Err(OperatorCliError::Exit {
                command: args.join(" "),
                manager: manager.describe(),
                code,
                stderr,
            });
        }
    };
    Ok(WaitReport {
        exit,
        stdout,
        stderr,
    })
}

/// How `wait --revision` ended, by its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionExit {
    /// 0: the commit is applied (every object Ready at it).
    Applied,
    /// 1: the operator loaded the commit and moved on to another one before applying it.
    MovedPast,
    /// 2: time ran out (or the command's own error); stderr says where the operator stands.
    TimedOut,
}

/// What one `wait --revision` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionReport {
    /// How it ended.
    pub exit: RevisionExit,
    /// `3f2a9c1 applied: …` on success.
    pub stdout: String,
    /// Why not, otherwise.
    pub stderr: String,
}

impl fmt::Display for RevisionReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "wait --revision {:?}\nstdout:\n{}stderr:\n{}",
            self.exit, self.stdout, self.stderr
        )
    }
}

/// The operator's arguments for `wait --revision`.
fn wait_revision_args(instance: &str, revision: &str, timeout: Duration) -> Vec<String> {
    vec![
        "wait".into(),
        "--revision".into(),
        revision.into(),
        "--instance".into(),
        instance.into(),
        "--timeout".into(),
        format!("{}s", timeout.as_secs().max(1)),
    ]
}

/// Runs `swarm-operator wait --revision SHA --instance INSTANCE` on `manager`: what a CI job
/// runs after `git push`. Returns once the command does (`timeout` bounds that).
pub fn wait_revision(
    manager: &Manager,
    instance: &str,
    revision: &str,
    timeout: Duration,
) -> Result<RevisionReport, OperatorCliError> {
    let args = wait_revision_args(instance, revision, timeout);
    let (code, stdout, stderr) = run(manager, None, &args)?;
    let exit = match code {
        Some(0) => RevisionExit::Applied,
        Some(1) => RevisionExit::MovedPast,
        Some(2) => RevisionExit::TimedOut,
        code => {
            return Err(OperatorCliError::Exit {
                command: args.join(" "),
                manager: manager.describe(),
                code,
                stderr,
            });
        }
    };
    Ok(RevisionReport {
        exit,
        stdout,
        stderr,
    })
}

/// Runs `swarm-operator get NAMES -o json` on `manager`: the named objects' status as JSON
/// (`{"services": {…}, "networks": {…}}`, the status file's shapes).
pub fn get_json(
    manager: &Manager,
    names: &[&str],
    specs_dir: Option<&str>,
) -> Result<String, OperatorCliError> {
    let mut args = vec!["get".to_owned()];
    args.extend(names.iter().map(|n| (*n).to_owned()));
    args.extend(["-o".into(), "json".into()]);
    match run(manager, specs_dir, &args)? {
        (Some(0), stdout, _) => Ok(stdout),
        (code, _, stderr) => Err(OperatorCliError::Exit {
            command: args.join(" "),
            manager: manager.describe(),
            code,
            stderr,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_arguments_follow_the_cli() {
        let all = Wait {
            targets: Targets::All,
            goal: Goal::Ready,
            timeout: Duration::from_secs(240),
            specs_dir: Some("/srv/specs"),
        };
        assert_eq!(
            wait_args(&all),
            ["wait", "--all", "--for", "ready", "--timeout", "240s"]
        );
        let named = Wait {
            targets: Targets::Named(&["a", "b"]),
            goal: Goal::Deleted,
            timeout: Duration::from_millis(300),
            specs_dir: None,
        };
        assert_eq!(
            wait_args(&named),
            ["wait", "a", "b", "--for", "deleted", "--timeout", "1s"]
        );
    }

    #[test]
    fn wait_revision_arguments_follow_the_cli() {
        let sha = "3f2a9c1e".repeat(5);
        assert_eq!(
            wait_revision_args("e2e-git", &sha, Duration::from_secs(90)),
            [
                "wait",
                "--revision",
                sha.as_str(),
                "--instance",
                "e2e-git",
                "--timeout",
                "90s"
            ]
        );
    }
}
