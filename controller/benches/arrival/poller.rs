//! The stopwatch's other end: a poller outside the operator, asking the engine what a user's
//! `docker service ls --filter label=…` would show.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bollard::Docker;
use bollard::query_parameters::ListServicesOptions;

use crate::swarm::BENCH_LABEL;

/// What the poller saw, as times since the stopwatch started.
#[derive(Debug, Clone, Copy)]
pub struct Seen {
    /// The first poll that listed at least one of the services.
    pub first: Duration,
    /// The first poll that listed all of them.
    pub all: Duration,
    /// The longest single list call (the resolution of `all`).
    pub slowest_poll: Duration,
}

/// Services labelled [`BENCH_LABEL`]`=label`, as the engine lists them.
pub async fn count(engine: &Docker, label: &str) -> Result<usize> {
    let filters = HashMap::from([("label".to_owned(), vec![format!("{BENCH_LABEL}={label}")])]);
    let services = engine
        .list_services(Some(ListServicesOptions {
            filters: Some(filters),
            status: None,
        }))
        .await?;
    Ok(services.len())
}

/// Polls until `want` services labelled `label` exist; times are since `start`. While none
/// exists a list is cheap, so it polls every 10 ms (the first create's time to within a list
/// call); afterwards every 100 ms, or after as long as the last list took if that was longer
/// (at 5,000 services one list costs the engine a few hundred ms), so that the poller keeps the
/// engine busy at most half the time on the machine the contenders share.
pub async fn wait_for(
    engine: &Docker,
    label: &str,
    want: usize,
    start: Instant,
    timeout: Duration,
) -> Result<Seen> {
    let mut first = None;
    let mut slowest_poll = Duration::ZERO;
    let mut shown = 0;
    loop {
        let asked = Instant::now();
        let have = count(engine, label).await?;
        let took = asked.elapsed();
        slowest_poll = slowest_poll.max(took);
        // Seen when the answer arrives, as a user reading `docker service ls` would.
        let elapsed = start.elapsed();
        if have > 0 && first.is_none() {
            first = Some(elapsed);
        }
        if have >= want {
            return Ok(Seen {
                first: first.unwrap_or(elapsed),
                all: elapsed,
                slowest_poll,
            });
        }
        if elapsed > timeout {
            bail!("timed out after {timeout:?}: {have} of {want} services labelled {label}");
        }
        if elapsed.as_secs() / 10 > shown {
            shown = elapsed.as_secs() / 10;
            eprintln!("    … {have}/{want} after {elapsed:.0?}");
        }
        let pause = if have == 0 {
            Duration::from_millis(10)
        } else {
            took.max(Duration::from_millis(100))
        };
        tokio::time::sleep(pause).await;
    }
}
