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

/// The W&B profile, driven over HTTP as a harness in another process does: a per-key request
/// budget answered as W&B does (`RateLimit-*` on every GraphQL reply, then 429 with
/// `{"error": "rate limit exceeded"}` and `Retry-After`), the heavy-query refusal, downloads
/// outside the budget, and the counters endpoint.
#[tokio::test]
async fn the_wandb_profile_budgets_graphql_per_key() {
    let (emu, gql, run, file_url) = start();
    let profile_url = format!("{}/_emulator/profile", emu.base_url());
    let profile = json!({"rate_limit": {"requests": 3, "window": 60_000},
                         "latency": 0, "row_cost": 0, "max_rows": 5});
    let set = gql
        .http
        .post(&profile_url)
        .header("Authorization", gql.basic())
        .body(profile.to_string())
        .send()
        .await
        .expect("POST profile");
    assert_eq!(set.status(), 200);
    let unauthorized = gql.http.post(&profile_url).body("{}").send().await.unwrap();
    assert_eq!(unauthorized.status(), 401, "the profile needs the API key");
    let got: serde_json::Value = gql.get(&profile_url, true, &[]).await.json().await.unwrap();
    assert_eq!(got, profile);

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let resp = gql
            .http
            .post(format!("{}/graphql", emu.base_url()))
            .header("Authorization", gql.basic())
            .header("Content-Type", "application/json")
            .body(json!({"query": VIEWER, "operationName": "Viewer"}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["ratelimit-limit"], "1000");
        let reset: u64 = resp.headers()["ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&reset), "{reset}");
        remaining.push(
            resp.headers()["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(remaining, ["666", "333", "0"], "on W&B's 0-1000 scale");
    let refused = gql
        .http
        .post(format!("{}/graphql", emu.base_url()))
        .header("Authorization", gql.basic())
        .body(json!({"query": VIEWER}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body, json!({"error": "rate limit exceeded"}));
    assert_eq!(
        gql.get(&file_url, true, &[]).await.status(),
        200,
        "downloads are object storage, outside the GraphQL budget"
    );
    // (Per key: the emulator knows one key; `profile::tests` checks that budgets are per key.)

    // A reply of more rows than the profile's max_rows: W&B's heavy-query refusal.
    let profile = json!({"rate_limit": null, "latency": 0, "row_cost": 0, "max_rows": 5});
    gql.http
        .post(&profile_url)
        .header("Authorization", gql.basic())
        .body(profile.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = gql
        .post(HISTORY_PAGE, json!({"run": run}), "HistoryPage")
        .await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body.to_string().contains("context deadline exceeded"),
        "{body}"
    );
    let small = HISTORY_PAGE.replace("maxStep: 10, samples: 10", "maxStep: 4, samples: 4");
    let (status, body) = gql.post(&small, json!({"run": run}), "HistoryPage").await;
    assert_eq!(status, 200, "{body}");

    let counters: serde_json::Value = gql
        .get(&format!("{}/_emulator/counters", emu.base_url()), true, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        counters["by_operation"]["Viewer"]["requests"], 3,
        "{counters}"
    );
    assert_eq!(
        counters["by_route"]["graphql"]["requests"], 6,
        "the refused request too: {counters}"
    );
    assert_eq!(
        counters["by_operation"]["HistoryPage"]["requests"], 2,
        "{counters}"
    );
    assert_eq!(
        counters["by_operation"]["HistoryPage"]["errors"], 1,
        "{counters}"
    );
}
