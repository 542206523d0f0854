//! Client-side load balancing against real quote replicas: spread, failover, fallback.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use service_common::Server;
use support::{base, client, get, listener, quote_ip, start_account, start_quote};

/// Two quote replicas with different addresses behind one account service: 200 sequential
/// requests land 50 % ± 10 % on each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_spread_evenly_over_two_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let q1 = start_quote("10.0.1.1").await;
    let q2 = start_quote("10.0.1.2").await;
    let urls = format!("{},{}", base(&q1), base(&q2));
    let account = start_account(&dir.path().join("a.redb"), &urls, Duration::from_secs(1)).await;
    let http = client();

    let (mut one, mut two) = (0, 0);
    for i in 0..200 {
        let (status, _, body) = get(
            &http,
            &format!("{}/accounts/{}", base(&account), 10000 + i % 100),
        )
        .await;
        assert_eq!(status, 200, "{body}");
        match quote_ip(&body).as_str() {
            "10.0.1.1" => one += 1,
            "10.0.1.2" => two += 1,
            other => panic!("quote from {other:?}: {body}"),
        }
    }
    println!("replica 1: {one}, replica 2: {two}");
    assert!((90..=110).contains(&one), "uneven: {one} vs {two}");
    assert!((90..=110).contains(&two), "uneven: {one} vs {two}");

    account.shutdown().await.unwrap();
    q1.shutdown().await.unwrap();
    q2.shutdown().await.unwrap();
}

/// One replica stopped while 8 clients hammer the account service: not one request fails
/// and none gets the fallback quote, because the failed call is retried on the other replica
/// and the stopped one is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_stopped_under_load_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let q1 = start_quote("10.0.2.1").await;
    let q2 = start_quote("10.0.2.2").await;
    let urls = format!("{},{}", base(&q1), base(&q2));
    let account = start_account(&dir.path().join("a.redb"), &urls, Duration::from_secs(1)).await;
    let url = format!("{}/accounts/10001", base(&account));

    let stopped = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (url, stopped) = (url.clone(), Arc::clone(&stopped));
        workers.push(tokio::spawn(async move {
            let http = client();
            let (mut before, mut after, mut failures) = (Vec::new(), Vec::new(), Vec::new());
            let end = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < end {
                let was_stopped = stopped.load(Ordering::SeqCst);
                match http.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        let ip = quote_ip(&response.text().await.unwrap());
                        if was_stopped {
                            after.push(ip);
                        } else {
                            before.push(ip);
                        }
                    }
                    Ok(response) => failures.push(format!("status {}", response.status())),
                    Err(err) => failures.push(err.to_string()),
                }
            }
            (before, after, failures)
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    q1.shutdown().await.unwrap();
    stopped.store(true, Ordering::SeqCst);

    let (mut before, mut after, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    for worker in workers {
        let (b, a, f) = worker.await.unwrap();
        before.extend(b);
        after.extend(a);
        failures.extend(f);
    }
    let count = |list: &[String], ip: &str| list.iter().filter(|x| *x == ip).count();
    println!(
        "before: {} ({} from replica 1), after: {} ({} from replica 2), failures: {}",
        before.len(),
        count(&before, "10.0.2.1"),
        after.len(),
        count(&after, "10.0.2.2"),
        failures.len()
    );
    assert!(failures.is_empty(), "failed account requests: {failures:?}");
    assert_eq!(
        count(&before, "fallback") + count(&after, "fallback"),
        0,
        "fallback while a replica was up"
    );
    assert!(
        count(&before, "10.0.2.1") > 0,
        "replica 1 served nothing before it stopped"
    );
    assert!(
        after.len() > 50,
        "too little load after the stop: {}",
        after.len()
    );
    assert_eq!(
        count(&after, "10.0.2.2"),
        after.len(),
        "after the stop only replica 2 answers"
    );

    account.shutdown().await.unwrap();
    q2.shutdown().await.unwrap();
}

/// A "quote service" that accepts connections and never answers.
async fn start_hung() -> Server {
    let router = Router::new().route(
        "/api/quote",
        axum::routing::get(|| async {
            std::future::pending::<()>().await;
        }),
    );
    Server::spawn(router, listener().await).unwrap()
}

/// A "quote service" that answers 200 with a body that is not a quote.
async fn start_garbage() -> Server {
    let router = Router::new().route(
        "/api/quote",
        axum::routing::get(|| async { "<html>not a quote</html>" }),
    );
    Server::spawn(router, listener().await).unwrap()
}

/// Both replicas down (refusing), hung, or talking garbage: the account still answers 200,
/// with the fallback quote, within the budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_replicas_down_gives_fallback_within_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = Duration::from_millis(400);
    let http = client();

    // Refusing: two replicas that were started and stopped, so nothing listens on their ports.
    let q1 = start_quote("10.0.3.1").await;
    let q2 = start_quote("10.0.3.2").await;
    let refusing = format!("{},{}", base(&q1), base(&q2));
    q1.shutdown().await.unwrap();
    q2.shutdown().await.unwrap();
    let h1 = start_hung().await;
    let h2 = start_hung().await;
    let hung = format!("{},{}", base(&h1), base(&h2));
    let g1 = start_garbage().await;
    let g2 = start_garbage().await;
    let garbage = format!("{},{}", base(&g1), base(&g2));

    for (case, urls, db) in [
        ("refusing", refusing, "r.redb"),
        ("hung", hung, "h.redb"),
        ("garbage", garbage, "g.redb"),
    ] {
        let account = start_account(&dir.path().join(db), &urls, budget).await;
        for _ in 0..3 {
            let started = Instant::now();
            let (status, _, body) = get(&http, &format!("{}/accounts/10002", base(&account))).await;
            let took = started.elapsed();
            println!("{case}: {took:?} {body}");
            assert_eq!(status, 200, "{case}: {body}");
            assert!(
                body.starts_with(
                    r#"{"id":"10002","name":"Person_2","servedBy":"10.9.9.9","quote":{"quote":""#
                ),
                "{case}: {body}"
            );
            assert!(body.contains(r#""ipAddress":"fallback""#), "{case}: {body}");
            assert!(
                took < budget + Duration::from_millis(300),
                "{case}: took {took:?}, budget {budget:?}"
            );
        }
        account.shutdown().await.unwrap();
    }
    for server in [h1, h2, g1, g2] {
        // The hung handlers never finish; aborting is the point of a hung server.
        drop(server);
    }
}
