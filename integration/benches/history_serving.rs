//! History serving rate of the emulator to one raw Rust client on loopback.
//!
//! `cargo bench -p wandb-emulator --bench history_serving` (env `ROWS`, default 1,000,000;
//! `KEYS`, default 20 metric keys + `_step`/`_runtime`/`_timestamp`).
//!
//! Pages are fetched exactly as wandb-core's `HistoryPage` does (`minStep`, `maxStep`,
//! `samples = maxStep - minStep`, 1,000 rows per page), sequentially over one keep-alive
//! connection; the client parses the envelope and keeps rows as raw JSON. Printed: rows/s for
//! a seeded (generated) run and for a run whose rows are stored (as SDK-written runs are), and,
//! as the in-run baseline, the same rows through `sampledHistory`, which builds every row in
//! the GraphQL executor (the idiomatic path without the splice fast path).

use std::time::Instant;

use serde::Deserialize;
use serde_json::value::RawValue;
use wandb_emulator::seed::GeneratedHistory;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

const HISTORY_PAGE: &str = "query HistoryPage(
    $entity: String!,
    $project: String!,
    $run: String!,
    $minStep: Int64!,
    $maxStep: Int64!,
    $pageSize: Int!,
) {
    project(name: $project, entityName: $entity) {
        run(name: $run) {
            history(
                minStep: $minStep,
                maxStep: $maxStep,
                samples: $pageSize,
            )
        }
    }
}";

const SAMPLED_PAGE: &str = "query SampledHistoryPage($entity: String!, $project: String!, $run: String!, $spec: JSONString!) {
    project(name: $project, entityName: $entity) { run(name: $run) { sampledHistory(specs: [$spec]) } }
}";

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    data: Data<'a>,
}
#[derive(Deserialize)]
struct Data<'a> {
    #[serde(borrow)]
    project: Project<'a>,
}
#[derive(Deserialize)]
struct Project<'a> {
    #[serde(borrow)]
    run: Run<'a>,
}
#[derive(Deserialize)]
struct Run<'a> {
    #[serde(borrow, default)]
    history: Option<Vec<&'a RawValue>>,
    #[serde(borrow, default, rename = "sampledHistory")]
    sampled: Option<Vec<Vec<&'a RawValue>>>,
}

struct Client {
    http: reqwest::Client,
    url: String,
    auth: String,
}

impl Client {
    async fn page(
        &self,
        key: &RunKey,
        lo: u64,
        hi: u64,
        sampled: Option<&[String]>,
    ) -> (usize, usize) {
        let body = if let Some(keys) = sampled {
            let spec = serde_json::json!({"keys": keys, "minStep": lo, "maxStep": hi - 1, "samples": hi - lo});
            serde_json::json!({"query": SAMPLED_PAGE, "operationName": "SampledHistoryPage",
                "variables": {"entity": key.entity, "project": key.project, "run": key.name, "spec": spec.to_string()}})
        } else {
            serde_json::json!({"query": HISTORY_PAGE, "operationName": "HistoryPage",
                "variables": {"entity": key.entity, "project": key.project, "run": key.name,
                              "minStep": lo, "maxStep": hi, "pageSize": hi - lo}})
        };
        let resp = self
            .http
            .post(&self.url)
            .header("Authorization", &self.auth)
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "status {}", resp.status());
        let bytes = resp.bytes().await.expect("body");
        let env: Envelope = serde_json::from_slice(&bytes).expect("GraphQL envelope");
        let rows = match (env.data.project.run.history, env.data.project.run.sampled) {
            (Some(h), _) => h.len(),
            (None, Some(s)) => s.iter().map(Vec::len).sum(),
            _ => 0,
        };
        (rows, bytes.len())
    }

    async fn scan(&self, key: &RunKey, rows: u64, sampled: Option<&[String]>) -> (f64, f64) {
        let start = Instant::now();
        let (mut got, mut bytes) = (0usize, 0usize);
        let mut lo = 0;
        while lo < rows {
            let hi = (lo + 1000).min(rows);
            let (n, b) = self.page(key, lo, hi, sampled).await;
            got += n;
            bytes += b;
            lo = hi;
        }
        assert_eq!(got as u64, rows, "every row served");
        let secs = start.elapsed().as_secs_f64();
        (got as f64 / secs, bytes as f64 / secs / 1e6)
    }
}

fn main() {
    let rows: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keys: u32 = std::env::var("KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let t = Instant::now();
    let emu = Emulator::start_with(
        EmulatorConfig::default().seed(
            SeedSpec::new("emulator", "bench")
                .runs(1)
                .steps(rows)
                .keys(keys)
                .files(0)
                .bigfile(0),
        ),
    )
    .expect("emulator starts");
    println!(
        "seeded 1 run x {rows} rows x {keys} keys in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let seeded = emu.runs("emulator", "bench")[0].clone();

    // A run with stored rows (as SDK-written runs have): a copy of the first 200k rows.
    let stored_rows = rows.min(200_000);
    let stored = RunKey::new("emulator", "bench", "stored");
    emu.create_run(&stored);
    let copy = emu
        .history_rows_between(&seeded, 0, stored_rows as i64)
        .expect("rows");
    emu.append_history(&stored, &copy).expect("append");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client {
            http: reqwest::Client::builder().pool_max_idle_per_host(1).build().expect("client"),
            url: format!("{}/graphql", emu.base_url()),
            auth: format!("Bearer {}", emu.api_key()),
        };
        // Warm-up.
        client.scan(&seeded, 20_000.min(rows), None).await;
        let (gen_rate, gen_mb) = client.scan(&seeded, rows, None).await;
        println!("history (splice, generated rows): {gen_rate:>10.0} rows/s  {gen_mb:6.1} MB/s");
        let (stored_rate, stored_mb) = client.scan(&stored, stored_rows, None).await;
        println!("history (splice, stored rows):    {stored_rate:>10.0} rows/s  {stored_mb:6.1} MB/s");
        let base_rows = rows.min(100_000);
        let all_keys = GeneratedHistory { run_seed: 0, rows, keys, t0: 0.0 }.key_names();
        let (base_rate, base_mb) = client.scan(&seeded, base_rows, Some(&all_keys)).await;
        println!("baseline sampledHistory(all keys), executor-built rows: {base_rate:>10.0} rows/s  {base_mb:6.1} MB/s");
        println!(
            "ratio splice/baseline: generated {:.1}x, stored {:.1}x",
            gen_rate / base_rate,
            stored_rate / base_rate
        );
    });
    let c = emu.counters();
    println!(
        "requests served: {} ({} HistoryPage)",
        c.total.requests,
        c.operation("HistoryPage")
    );
}
