//! Emptying the swarm of the bench's objects between runs, timed: removing thousands of
//! services (and stopping their containers) is slow in itself and worth knowing.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::{ListContainersOptions, ListServicesOptions, ListTasksOptions};
use futures_util::StreamExt;

use crate::swarm::{BENCH_LABEL, docker};

/// How long emptying took.
pub struct Emptied {
    pub services_removed: usize,
    /// Until the engine listed none of the services.
    pub services_gone: Duration,
    /// Until no container of them was left either.
    pub containers_gone: Duration,
    /// Until the engine listed no task of them either.
    pub tasks_gone: Duration,
}

/// Ids of the services whose [`BENCH_LABEL`] value starts with `prefix`.
async fn bench_services(engine: &Docker, prefix: &str) -> Result<Vec<String>> {
    let filters = HashMap::from([("label".to_owned(), vec![BENCH_LABEL.to_owned()])]);
    let services = engine
        .list_services(Some(ListServicesOptions {
            filters: Some(filters),
            status: None,
        }))
        .await?;
    Ok(services
        .into_iter()
        .filter(|s| {
            s.spec
                .as_ref()
                .and_then(|spec| spec.labels.as_ref()?.get(BENCH_LABEL))
                .is_some_and(|v| v.starts_with(prefix))
        })
        .filter_map(|s| s.id)
        .collect())
}

/// How many services of the swarm are not the bench's (names starting with `prefix`).
pub async fn other_services(engine: &Docker, prefix: &str) -> Result<usize> {
    let services = engine.list_services(None::<ListServicesOptions>).await?;
    Ok(services
        .iter()
        .filter(|s| {
            !s.spec
                .as_ref()
                .and_then(|spec| spec.name.as_deref())
                .is_some_and(|n| n.starts_with(prefix))
        })
        .count())
}

/// Containers (running or not) whose name starts with `prefix`: task containers are named
/// `SERVICE.SLOT.TASK`, and every bench service's name starts with the prefix.
async fn bench_containers(engine: &Docker, prefix: &str) -> Result<usize> {
    let filters = HashMap::from([("name".to_owned(), vec![prefix.to_owned()])]);
    let containers = engine
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await?;
    Ok(containers
        .iter()
        .filter(|c| {
            c.names
                .iter()
                .flatten()
                .any(|n| n.trim_start_matches('/').starts_with(prefix))
        })
        .count())
}

/// Tasks (any state) of the services `ids`.
async fn tasks_of(engine: &Docker, ids: &std::collections::HashSet<&str>) -> Result<usize> {
    let tasks = engine.list_tasks(None::<ListTasksOptions>).await?;
    Ok(tasks
        .iter()
        .filter(|t| t.service_id.as_deref().is_some_and(|s| ids.contains(s)))
        .count())
}

/// Removes every service and network of the bench (names and labels start with `prefix`) and
/// waits until neither they, their containers nor their tasks are left: the swarm deletes the
/// tasks of a removed service in the background (thousands of raft writes), and a run started
/// before that ends would share the manager with it.
pub async fn empty_swarm(engine: &Docker, prefix: &str, timeout: Duration) -> Result<Emptied> {
    let start = Instant::now();
    let ids = bench_services(engine, prefix).await?;
    // 16 removals in flight: the engine serialises them through raft anyway.
    let failures: Vec<String> = futures_util::stream::iter(ids.iter())
        .map(|id| async move {
            engine
                .delete_service(id)
                .await
                .err()
                .map(|e| format!("{id}: {e}"))
        })
        .buffer_unordered(16)
        .filter_map(|failed| async move { failed })
        .collect()
        .await;
    if let Some(first) = failures.first() {
        eprintln!("    {} removals failed, e.g. {first}", failures.len());
    }
    while !bench_services(engine, prefix).await?.is_empty() {
        if start.elapsed() > timeout {
            bail!("bench services {prefix}* still listed after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let services_gone = start.elapsed();
    loop {
        let left = bench_containers(engine, prefix).await?;
        if left == 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!("{left} containers {prefix}* still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let containers_gone = start.elapsed();
    let removed: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    loop {
        let left = tasks_of(engine, &removed).await?;
        if left == 0 {
            break;
        }
        if start.elapsed() > timeout {
            bail!("{left} tasks of removed services {prefix}* still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tasks_gone = start.elapsed();
    // The contenders' networks go once their services are gone: the next run's network takes
    // the same subnet, which must be free.
    loop {
        // Filtered here: 20.10's `--filter name=` matches a swarm network's whole name only.
        let left: Vec<String> = docker(&["network", "ls", "--format", "{{.Name}}"])
            .await?
            .lines()
            .filter(|n| n.starts_with(prefix))
            .map(str::to_owned)
            .collect();
        if left.is_empty() {
            break;
        }
        for name in &left {
            // A removal the engine refuses (a task still attached) is tried again next pass.
            let _ = docker(&["network", "rm", name]).await;
        }
        if start.elapsed() > timeout {
            bail!("bench networks {left:?} still there after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(Emptied {
        services_removed: ids.len(),
        services_gone,
        containers_gone,
        tasks_gone,
    })
}
