//! The account service's HTTP contract, against real servers and a real redb file.
// Helpers outside #[test] functions unwrap too: in a test, a failed unwrap is a failed test
// with its location.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use account_service::store::Store;
use support::{base, client, get, start_account, start_quote};

const BUDGET: Duration = Duration::from_secs(1);

/// Seeded accounts come back 200, as JSON, with the fields in the documented order and the
/// quote from the quote service (resolved by name through the DNS path of the balancer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_seeded_accounts_with_fields_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let quote = start_quote("10.0.0.1").await;
    let by_name = format!("http://localhost:{}", quote.local_addr().port());
    let account = start_account(&dir.path().join("accounts.redb"), &by_name, BUDGET).await;
    let http = client();

    for (id, name) in [
        ("10000", "Person_0"),
        ("10042", "Person_42"),
        ("10099", "Person_99"),
    ] {
        let (status, content_type, body) =
            get(&http, &format!("{}/accounts/{id}", base(&account))).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/json");
        let prefix =
            format!(r#"{{"id":"{id}","name":"{name}","servedBy":"10.9.9.9","quote":{{"quote":""#);
        assert!(
            body.starts_with(&prefix),
            "field order or values wrong: {body}"
        );
        let quote_part = &body[body.find(r#""quote":{"#).unwrap()..];
        let (q, ip, lang) = (
            quote_part.find(r#"{"quote":""#).unwrap(),
            quote_part.find(r#""ipAddress":"10.0.0.1""#).unwrap(),
            quote_part.find(r#""language":""#).unwrap(),
        );
        assert!(q < ip && ip < lang, "quote field order wrong: {body}");
        assert!(body.ends_with("}}"), "{body}");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(!value["quote"]["quote"].as_str().unwrap().is_empty());
    }

    account.shutdown().await.unwrap();
    quote.shutdown().await.unwrap();
}

/// Unknown and malformed ids, unknown paths: 404 with a JSON body; wrong method: 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_is_404_and_wrong_method_is_405() {
    let dir = tempfile::tempdir().unwrap();
    let quote = start_quote("10.0.0.1").await;
    let account = start_account(&dir.path().join("a.redb"), &base(&quote), BUDGET).await;
    let http = client();
    let url = |path: &str| format!("{}{path}", base(&account));

    let long = "9".repeat(500);
    for path in [
        "/accounts/10100",
        "/accounts/9999",
        "/accounts/abc",
        "/accounts/%20",
        "/accounts/10000%00",
        "/accounts/%FF%FE",
        &format!("/accounts/{long}"),
        "/accounts",
        "/accounts/10000/extra",
        "/",
        "/nope",
    ] {
        let (status, content_type, body) = get(&http, &url(path)).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(content_type, "application/json", "{path}");
        let value: serde_json::Value = serde_json::from_str(&body).expect("404 body is JSON");
        assert!(value["error"].is_string(), "{path}: {body}");
    }

    for (method, path) in [
        (reqwest::Method::POST, "/accounts/10000"),
        (reqwest::Method::DELETE, "/accounts/10000"),
        (reqwest::Method::PUT, "/health"),
        (reqwest::Method::POST, "/testability/healthy/false"),
    ] {
        let response = http
            .request(method.clone(), url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert!(
            response.headers().get("allow").is_some(),
            "{method} {path}: Allow header"
        );
    }

    account.shutdown().await.unwrap();
    quote.shutdown().await.unwrap();
}

/// `/health` reports UP, the testability flag turns it into 503 with a reason and back,
/// and anything but true/false is a 400 — on both services.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_testability_flag() {
    let dir = tempfile::tempdir().unwrap();
    let quote = start_quote("10.0.0.1").await;
    let account = start_account(&dir.path().join("a.redb"), &base(&quote), BUDGET).await;
    let http = client();

    for server in [&account, &quote] {
        let url = |path: &str| format!("{}{path}", base(server));
        assert_eq!(
            get(&http, &url("/health")).await,
            (200, "application/json".into(), r#"{"status":"UP"}"#.into())
        );

        let (status, _, _) = get(&http, &url("/testability/healthy/false")).await;
        assert_eq!(status, 200);
        let (status, content_type, body) = get(&http, &url("/health")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(content_type, "application/json");
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reason = value["status"].as_str().unwrap();
        assert!(reason.contains("testability"), "{body}");

        for bad in ["maybe", "TRUE", "1", ""] {
            let (status, _, body) = get(&http, &url(&format!("/testability/healthy/{bad}"))).await;
            let expected = if bad.is_empty() { 404 } else { 400 };
            assert_eq!(status, expected, "{bad:?}: {body}");
        }
        // A rejected toggle leaves the flag as it was.
        assert_eq!(get(&http, &url("/health")).await.0, 503);

        let (status, _, _) = get(&http, &url("/testability/healthy/true")).await;
        assert_eq!(status, 200);
        assert_eq!(get(&http, &url("/health")).await.0, 200);
    }

    account.shutdown().await.unwrap();
    quote.shutdown().await.unwrap();
}

/// Seeding on a restart neither duplicates nor resets: a renamed account keeps its name,
/// a deleted-then-reseeded set stays at 100.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeding_is_idempotent_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("accounts.redb");
    let quote = start_quote("10.0.0.1").await;
    let http = client();

    let account = start_account(&db, &base(&quote), BUDGET).await;
    let (status, _, body) = get(&http, &format!("{}/accounts/10005", base(&account))).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#""name":"Person_5""#), "{body}");
    account.shutdown().await.unwrap();

    // Between the runs, change one account the way an operator or a later feature would.
    {
        let store =
            Store::open(&db).expect("reopen after shutdown: the service let go of the file");
        assert_eq!(store.count().unwrap(), 100);
        store.put("10005", "Renamed").unwrap();
        assert_eq!(
            store.seed().unwrap(),
            0,
            "nothing missing, nothing inserted"
        );
    }

    let account = start_account(&db, &base(&quote), BUDGET).await;
    let (status, _, body) = get(&http, &format!("{}/accounts/10005", base(&account))).await;
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""name":"Renamed""#),
        "restart reset the data: {body}"
    );
    let (status, _, body) = get(&http, &format!("{}/accounts/10006", base(&account))).await;
    assert!(
        status == 200 && body.contains(r#""name":"Person_6""#),
        "{body}"
    );
    account.shutdown().await.unwrap();

    let store = Store::open(&db).unwrap();
    assert_eq!(store.count().unwrap(), 100, "restart duplicated accounts");
    quote.shutdown().await.unwrap();
}
