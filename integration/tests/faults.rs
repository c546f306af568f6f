//! Fault injection over HTTP: 5xx bursts, 429s, latency, resets, truncation, poisoned runs,
//! and scopes.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::TEST_KEY;
use support::gql::Gql;
use wandb_emulator::{
    Emulator, EmulatorConfig, ErrorBurst, FaultScope, FaultSettings, LatencyFault, RateLimitFault,
    RequestFault, SeedSpec,
};

const VIEWER: &str = "query Viewer { viewer { id entity } }";
const HISTORY_PAGE: &str =
    "query HistoryPage($run: String!) { project(name: \"p\", entityName: \"emulator\") {
    run(name: $run) { history(minStep: 0, maxStep: 10, samples: 10) } } }";

fn start() -> (Emulator, Gql, String, String) {
    let spec = SeedSpec::new("emulator", "p")
        .runs(1)
        .steps(10)
        .keys(3)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().api_key(TEST_KEY).seed(spec))
        .expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    let run = emu.runs("emulator", "p")[0].name.clone();
    let file_url = format!(
        "{}/files/emulator/p/{run}/wandb-metadata.json",
        emu.base_url()
    );
    (emu, gql, run, file_url)
}

#[tokio::test]
async fn bursts_rate_limits_and_scopes() {
    let (emu, gql, _, file_url) = start();
    emu.set_faults(FaultSettings {
        error_burst: Some(ErrorBurst {
            remaining: 2,
            status: 503,
            scope: FaultScope::Graphql,
        }),
        ..FaultSettings::default()
    });
    let statuses = [
        gql.post(VIEWER, json!({}), "Viewer").await.0,
        gql.post(VIEWER, json!({}), "Viewer").await.0,
    ];
    assert_eq!(statuses, [503, 503]);
    assert_eq!(
        gql.get(&file_url, true, &[]).await.status(),
        200,
        "downloads are out of a GraphQL-scoped burst"
    );
    assert_eq!(
        gql.post(VIEWER, json!({}), "Viewer").await.0,
        200,
        "the burst is over"
    );

    emu.set_faults(FaultSettings {
        error_burst: Some(ErrorBurst {
            remaining: 1,
            status: 502,
            scope: FaultScope::Downloads,
        }),
        rate_limit: Some(RateLimitFault {
            fraction: 1.0,
            retry_after: "0.2".into(),
            scope: FaultScope::Downloads,
        }),
        ..FaultSettings::default()
    });
    assert_eq!(
        gql.post(VIEWER, json!({}), "Viewer").await.0,
        200,
        "GraphQL is out of a download-scoped fault"
    );
    assert_eq!(gql.get(&file_url, true, &[]).await.status(), 502);
    let limited = gql.get(&file_url, true, &[]).await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "0.2");
    let counters = emu.counters();
    assert!(counters.total.errors >= 4, "{counters:?}");

    emu.set_faults(FaultSettings {
        latency: Some(LatencyFault {
            delay: Duration::from_millis(300),
            scope: FaultScope::All,
        }),
        ..FaultSettings::default()
    });
    let t = Instant::now();
    assert_eq!(gql.post(VIEWER, json!({}), "Viewer").await.0, 200);
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "latency added: {:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn resets_and_truncated_bodies() {
    let (emu, gql, _, file_url) = start();
    emu.set_faults(FaultSettings {
        reset: Some(RequestFault::next(1, FaultScope::All)),
        ..FaultSettings::default()
    });
    let err = gql
        .http
        .post(format!("{}/graphql", emu.base_url()))
        .header("Authorization", gql.basic())
        .body(json!({"query": VIEWER}).to_string())
        .send()
        .await
        .expect_err("the connection is reset before any response");
    assert!(!err.is_status(), "{err}");
    assert_eq!(
        gql.post(VIEWER, json!({}), "Viewer").await.0,
        200,
        "the next request succeeds"
    );
    let reset = emu
        .requests()
        .into_iter()
        .find(|r| r.fault.as_deref() == Some("reset"))
        .expect("logged");
    assert_eq!(reset.status, 0);

    let full_len = gql.get(&file_url, true, &[]).await.content_length();
    emu.set_faults(FaultSettings {
        truncate: Some(RequestFault::next(1, FaultScope::Downloads)),
        ..FaultSettings::default()
    });
    let resp = gql.get(&file_url, true, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.content_length(),
        full_len,
        "the full length is promised"
    );
    assert!(resp.bytes().await.is_err(), "the body is cut short");
    let cut = emu
        .requests()
        .into_iter()
        .find(|r| r.fault.as_deref() == Some("truncate"))
        .expect("logged");
    assert_eq!(
        Some(cut.bytes_sent),
        full_len.map(|n| n / 2),
        "half the body was sent"
    );
    let whole = gql
        .get(&file_url, true, &[])
        .await
        .bytes()
        .await
        .expect("intact again");
    assert_eq!(Some(whole.len() as u64), full_len);
}

#[tokio::test]
async fn poisoned_runs_fail_history_only() {
    let (emu, gql, run, _) = start();
    let key = emu.runs("emulator", "p")[0].clone();
    emu.set_poisoned(&key, true);
    let (status, body) = gql
        .post(HISTORY_PAGE, json!({"run": run}), "HistoryPage")
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("poisoned"))
    );
    let (status, _) = gql
        .post("query($run: String!) { project(name: \"p\", entityName: \"emulator\") { run(name: $run) { parquetHistory(liveKeys: [\"_step\"]) { liveData } } } }", json!({"run": run}), "")
        .await;
    assert_eq!(status, 502);
    let meta = gql
        .data("query($run: String!) { project(name: \"p\", entityName: \"emulator\") { run(name: $run) { state historyLineCount } } }", json!({"run": run}))
        .await;
    assert_eq!(
        meta["project"]["run"]["historyLineCount"], 10,
        "metadata is unaffected"
    );
    emu.set_poisoned(&key, false);
    assert_eq!(
        gql.post(HISTORY_PAGE, json!({"run": run}), "HistoryPage")
            .await
            .0,
        200
    );
}
