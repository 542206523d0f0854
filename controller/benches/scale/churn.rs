//! A second client of the swarm that keeps creating and removing unmanaged services and
//! networks, the way other tools and people do on a shared swarm.

use std::collections::VecDeque;
use std::time::Duration;

use bollard::Docker;
use bollard::models::{
    NetworkCreateRequest, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpec,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::swarm::TEST_IMAGE;

/// How long each churn object lives before the client removes it again.
const LIFETIME: Duration = Duration::from_secs(2);

/// What the churn client did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChurnStats {
    pub created: u64,
    pub removed: u64,
    pub failed: u64,
}

pub struct Churn {
    stop: CancellationToken,
    task: JoinHandle<ChurnStats>,
}

#[derive(Clone, Copy)]
enum Kind {
    Service,
    Network,
}

impl Churn {
    /// Starts creating `per_second` objects a second (services and networks in turn), named
    /// `{prefix}-churn-…`, each removed [`LIFETIME`] after its creation.
    pub fn start(engine: Docker, prefix: &str, per_second: f64) -> Churn {
        let stop = CancellationToken::new();
        let token = stop.clone();
        let prefix = format!("{prefix}-churn");
        let period = Duration::from_secs_f64(1.0 / per_second.max(0.1));
        let task = tokio::spawn(async move {
            let mut stats = ChurnStats::default();
            let mut live: VecDeque<(tokio::time::Instant, Kind, String)> = VecDeque::new();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for k in 0u64.. {
                tokio::select! {
                    () = token.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let kind = if k % 2 == 0 {
                    Kind::Service
                } else {
                    Kind::Network
                };
                let name = format!("{prefix}-{k}");
                match create(&engine, kind, &name).await {
                    Ok(()) => {
                        stats.created += 1;
                        live.push_back((tokio::time::Instant::now(), kind, name));
                    }
                    Err(_) => stats.failed += 1,
                }
                while live
                    .front()
                    .is_some_and(|(at, ..)| at.elapsed() >= LIFETIME)
                {
                    let (_, kind, name) = live.pop_front().expect("checked front");
                    match remove(&engine, kind, &name).await {
                        Ok(()) => stats.removed += 1,
                        Err(_) => stats.failed += 1,
                    }
                }
            }
            for (_, kind, name) in live {
                if remove(&engine, kind, &name).await.is_ok() {
                    stats.removed += 1;
                }
            }
            stats
        });
        Churn { stop, task }
    }

    pub async fn stop(self) -> ChurnStats {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

async fn create(engine: &Docker, kind: Kind, name: &str) -> Result<(), bollard::errors::Error> {
    match kind {
        Kind::Service => {
            let spec = ServiceSpec {
                name: Some(name.to_owned()),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated { replicas: Some(0) }),
                    ..Default::default()
                }),
                task_template: Some(TaskSpec {
                    container_spec: Some(TaskSpecContainerSpec {
                        image: Some(TEST_IMAGE.to_owned()),
                        args: Some(vec!["sleep".to_owned(), "3600".to_owned()]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            };
            engine.create_service(spec, None).await.map(drop)
        }
        Kind::Network => engine
            .create_network(NetworkCreateRequest {
                name: name.to_owned(),
                driver: Some("overlay".to_owned()),
                ..Default::default()
            })
            .await
            .map(drop),
    }
}

async fn remove(engine: &Docker, kind: Kind, name: &str) -> Result<(), bollard::errors::Error> {
    match kind {
        Kind::Service => engine.delete_service(name).await,
        Kind::Network => engine.remove_network(name).await,
    }
}
