//! Batched reads (`sync::batch`) against the emulator and real Postgres:
//!
//! - a batched sync leaves the mirror a per-run sync leaves: every table compared, row by row
//!   (sync-time timestamps aside), history and events as bytes;
//! - a sweep of short runs costs a handful of requests, not three per run;
//! - a server that refuses heavy requests (500 "context deadline exceeded") makes batches split
//!   until they pass, and a request budget (429 + `Retry-After` + `RateLimit-*`) is waited out;
//!   nothing is lost or sampled either way.

mod sync_support;

use std::collections::BTreeMap;
use std::time::Duration;

use sync_support::*;
use wandb_emulator::faults::{ErrorBurst, FaultScope, FaultSettings, RateLimitFault};
use wandb_emulator::profile::{RateLimit, WandbProfile};
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};
use wandbfs::mirror::testing::TestDatabase;
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "sweep";

fn sweep(runs: u64, steps: u64) -> Emulator {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(runs)
        .steps(steps)
        .keys(6)
        .files(3)
        .bigfile(0);
    Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator starts")
}

fn operations(emu: &Emulator) -> BTreeMap<String, u64> {
    emu.counters()
        .by_operation
        .into_iter()
        .map(|(op, t)| (op, t.requests))
        .collect()
}

fn per_run() -> SyncOptions {
    SyncOptions {
        batch: false,
        artifacts: false,
        ..SyncOptions::default()
    }
}

fn batched() -> SyncOptions {
    SyncOptions {
        artifacts: false,
        ..SyncOptions::default()
    }
}

/// System events on a few runs (seeded runs have none), so the events check runs.
async fn add_events(emu: &Emulator) {
    for (i, key) in emu.runs(ENTITY, PROJECT).iter().take(5).enumerate() {
        let rows: Vec<String> = (0..3 + i)
            .map(|n| {
                format!(
                    r#"{{"system.cpu":{n}.5,"_wandb":true,"_timestamp":{},"_runtime":{n}}}"#,
                    1.7e9 + n as f64
                )
            })
            .collect();
        let url = format!(
            "{}/files/{}/{}/{}/file_stream",
            emu.base_url(),
            key.entity,
            key.project,
            key.name
        );
        let body =
            serde_json::json!({"files": {"wandb-events.jsonl": {"offset": 0, "content": rows}}});
        reqwest::Client::new()
            .post(url)
            .basic_auth("api", Some(emu.api_key()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("file_stream")
            .error_for_status()
            .expect("file_stream status");
    }
}

/// `row` (a jsonb expression) with its `run_pk` replaced by the run's id (`runs` itself drops
/// it): run keys are numbered in the order the listing's concurrent writes happened to run.
fn by_run(row: &str) -> String {
    format!(
        "(CASE WHEN {row} ? 'run_pk' THEN {row} - 'run_pk' || CASE WHEN {row} ? 'run_id' THEN '{{}}'::jsonb
              ELSE jsonb_build_object('run', (SELECT r.run_id FROM wandb.runs r
                                              WHERE r.run_pk = ({row}->>'run_pk')::bigint)) END
          ELSE {row} END)"
    )
}

/// Every row of every table of the mirror schema, as JSON text, sorted — without the columns
/// that record when a sync ran (they differ between any two syncs), the engine's own
/// bookkeeping and surrogate ids numbered in the order concurrent writers happened to run
/// (rows name their run by its id and their key set by its keys instead), plus the v1 row views
/// `history` and `system_events` over the blocks.
async fn dump(db: &TestDatabase) -> BTreeMap<String, Vec<String>> {
    let sql = db.raw_client().await.expect("sql client");
    let tables: Vec<String> = sql
        .query(
            "SELECT table_name FROM information_schema.tables
             WHERE table_schema = 'wandb' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .chain(["history".to_string(), "system_events".to_string()])
        .collect();
    let mut out = BTreeMap::new();
    for table in tables {
        let skip: Vec<String> = sql
            .query(
                "SELECT column_name FROM information_schema.columns
                 WHERE table_schema = 'wandb' AND table_name = $1
                   AND (column_name IN ('engine_state', 'attempts')
                        -- surrogate keys numbered in ingest order (concurrent jobs)
                        OR (table_name IN ('metric_keys', 'key_sets')
                            AND column_name IN ('key_id', 'key_set_id', 'key_ids', 'digest'))
                        OR (data_type LIKE 'timestamp%' AND (column_default LIKE 'now()%'
                            OR column_name LIKE '%sync%'
                            OR column_name LIKE 'last_%' OR column_name LIKE '%_error%')))",
                &[&table],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| r.get(0))
            .collect();
        let rows: Vec<String> = if table == "stream_blocks" {
            // Blocks are cut the same way however the rows were batched; key sets by their keys.
            sql.query(
                "SELECT concat_ws(':', r.run_id, b.stream, b.byte_start, b.byte_len, b.first_key,
                            b.last_key, b.n_rows, b.keys::text, b.extras::text, b.codec,
                            md5(b.body),
                            (SELECT string_agg(array_to_string(ks.keys, ','), ';' ORDER BY s.o)
                             FROM unnest(b.shapes) WITH ORDINALITY AS s(id, o)
                             JOIN wandb.key_sets ks ON ks.key_set_id = s.id))
                 FROM wandb.stream_blocks b JOIN wandb.runs r USING (run_pk)",
                &[],
            )
            .await
            .expect("blocks")
            .iter()
            .map(|r| r.get(0))
            .collect()
        } else if table == "block_values" {
            sql.query(
                "SELECT concat_ws(':', r.run_id, v.stream, v.byte_start, k.path::text, v.vals::text)
                 FROM wandb.block_values v JOIN wandb.runs r USING (run_pk)
                 JOIN wandb.metric_keys k USING (key_id)",
                &[],
            )
            .await
            .expect("block values")
            .iter()
            .map(|r| r.get(0))
            .collect()
        } else if matches!(table.as_str(), "history" | "system_events") {
            // The key set by its keys: its id is a surrogate, numbered in ingest order.
            sql.query(
                &format!(
                    "SELECT {}::text
                     FROM wandb.{table} t JOIN wandb.key_sets ks USING (key_set_id)",
                    by_run("(to_jsonb(t) - 'key_set_id' || jsonb_build_object('keys', ks.keys))")
                ),
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
        } else {
            sql.query(
                &format!(
                    "SELECT {}::text FROM wandb.{table} t",
                    by_run("(to_jsonb(t) - $1::text[])")
                ),
                &[&skip],
            )
            .await
            .unwrap_or_else(|e| panic!("{table}: {e}"))
            .iter()
            .map(|r| r.get(0))
            .collect()
        };
        let mut rows = rows;
        rows.sort();
        out.insert(table, rows);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_sync_mirrors_what_a_per_run_sync_does_for_far_fewer_requests() {
    let emu = sweep(120, 7);
    add_events(&emu).await;
    let target = format!("{ENTITY}/{PROJECT}");

    let single = database().await;
    emu.reset_counters();
    let report = sync(&engine(client(&emu), &single.mirror, per_run()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    let per_run_requests = emu.counters().total.requests;

    let batch = database().await;
    emu.reset_counters();
    let report = sync(&engine(client(&emu), &batch.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    let ops = operations(&emu);
    let requests = emu.counters().total.requests;
    eprintln!(
        "120 runs: {per_run_requests} requests synced run by run, {requests} batched: {ops:?}"
    );
    assert_eq!(report.runs_synced, 120);
    assert_eq!(ops.get("HistoryPage"), None, "{ops:?}");
    assert_eq!(ops.get("RunFullHistory"), None, "{ops:?}");
    assert_eq!(ops.get("RunFiles"), None, "{ops:?}");
    assert_eq!(
        ops.get("RunBundle"),
        Some(&2),
        "100 runs per request: {ops:?}"
    );
    assert!(
        requests as f64 / 120.0 <= 0.2,
        "{requests} requests for 120 runs: {ops:?}"
    );
    assert!(
        per_run_requests >= 3 * 120,
        "the per-run baseline: {per_run_requests}"
    );

    assert_mirror_matches(&emu, &batch, ENTITY, PROJECT).await;
    let (a, b) = (dump(&single).await, dump(&batch).await);
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (table, rows) in &a {
        assert!(
            rows == &b[table],
            "table {table} differs between the per-run and the batched sync ({} vs {} rows)",
            rows.len(),
            b[table].len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heavy_requests_split_until_they_pass_and_a_request_budget_is_waited_out() {
    let emu = sweep(40, 30);
    add_events(&emu).await;
    // The server refuses replies over 200 rows (a batch of 40 runs × 30 rows is 1,200) and
    // allows 25 requests per second per key.
    emu.set_profile(WandbProfile {
        rate_limit: Some(RateLimit {
            requests: 25,
            window: Duration::from_secs(1),
        }),
        max_rows: Some(200),
        ..WandbProfile::default()
    });
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    emu.reset_counters();
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.runs_synced, 40);
    let counters = emu.counters();
    let bundles = counters
        .by_operation
        .get("RunBundle")
        .map_or(0, |t| t.requests);
    let refused = counters
        .by_operation
        .get("RunBundle")
        .map_or(0, |t| t.errors);
    eprintln!(
        "{bundles} RunBundle requests, {refused} refused: {:?}",
        counters.by_operation
    );
    assert!(refused >= 1, "the first batch was too heavy");
    assert!(bundles >= 7, "batches of ≤ 6 runs pass: {bundles}");
    assert_eq!(
        counters
            .by_operation
            .get("HistoryPage")
            .map_or(0, |t| t.requests),
        0,
        "nothing fell back to paging: the split batches passed"
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // A run that grew: its new row comes in a batched re-sync, after the mirrored ones.
    let grown = RunKey::new(ENTITY, PROJECT, &emu.runs(ENTITY, PROJECT)[3].name);
    emu.set_profile(WandbProfile::default());
    emu.append_history(&grown, &[r#"{"_step":30,"loss":1}"#.to_owned()])
        .unwrap();
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_sync_reads_the_runs_that_moved_in_batches() {
    let emu = sweep(120, 7);
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");

    // Nothing moved: the incremental listing alone.
    emu.reset_counters();
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    let idle = operations(&emu);
    assert_eq!(idle.get("RunBundle"), None, "nothing to read: {idle:?}");

    // Every running run logs two more steps.
    let running: Vec<RunKey> = emu
        .runs(ENTITY, PROJECT)
        .into_iter()
        .filter(|k| emu.run_info(k).is_some_and(|i| i.state == "running"))
        .collect();
    assert!(
        running.len() >= 10,
        "the seed has running runs: {}",
        running.len()
    );
    for key in &running {
        emu.append_history(
            key,
            &[
                r#"{"_step":7,"loss":0.5}"#.to_owned(),
                r#"{"_step":8,"loss":0.25}"#.to_owned(),
            ],
        )
        .unwrap();
    }
    emu.reset_counters();
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    let ops = operations(&emu);
    eprintln!("{} running runs moved: {ops:?}", running.len());
    for per_run in ["Run", "HistoryPage", "RunFullHistory", "RunFiles"] {
        assert_eq!(ops.get(per_run), None, "{per_run}: {ops:?}");
    }
    assert_eq!(
        ops.get("RunBundle"),
        Some(&2),
        "their records, then their tails, events and files: {ops:?}"
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_run_inside_a_batch_costs_only_itself_and_storms_lose_nothing() {
    let emu = sweep(30, 5);
    add_events(&emu).await;
    let poisoned = emu.runs(ENTITY, PROJECT)[11].clone();
    // Its history answers 502 (the whole reply, as W&B's gateway does), so every batch
    // holding it fails and is split until the run is alone, then read per run, and fails.
    emu.set_poisoned(&poisoned, true);
    // And on top: a burst of 503s and a fraction of 429s with Retry-After.
    emu.update_faults(|f| {
        f.error_burst = Some(ErrorBurst {
            remaining: 3,
            status: 503,
            scope: FaultScope::Graphql,
        });
        f.rate_limit = Some(RateLimitFault {
            fraction: 0.3,
            retry_after: "0.05".into(),
            scope: FaultScope::Graphql,
        });
    });
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert_eq!(report.runs_failed, 1, "{report:#?}");
    assert!(
        report.failures[0].run.ends_with(&poisoned.name),
        "{:?}",
        report.failures
    );
    assert_eq!(report.runs_synced, 29, "{report:#?}");
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert!(statuses.contains(&429), "429s were sent");
    assert!(statuses.contains(&503), "503s were sent");
    assert_mirror_matches_except(&emu, &db, ENTITY, PROJECT, &[&poisoned.name]).await;

    // Healed: the next sync takes it, and the mirror is whole.
    emu.set_faults(FaultSettings::default());
    let report = sync(&engine(client(&emu), &db.mirror, batched()), &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}
