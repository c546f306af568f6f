//! History from parquet exports (`sync::parquet`, `parquet_history`) against the emulator's
//! exports and real Postgres:
//!
//! - a project synced through exports equals the same project synced by paging: identical
//!   `history.jsonl` bytes and SQL rows for runs logged in wandb-core's spelling, the same
//!   values (documented rule) for seeded runs — with O(files) requests instead of O(pages);
//! - a partial export plus a live tail is complete, without duplicates;
//! - an interrupted parquet ingest resumes exactly;
//! - unreadable exports fall back to paging; expired signed URLs are refreshed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use secrecy::SecretString;
use tokio::sync::Notify;
use wandb_emulator::app::{AppState, HistoryExports};
use wandb_emulator::export::{ExportConfig, ParquetExports};
use wandb_emulator::state::RunCell;
use wandb_emulator::{Emulator, EmulatorConfig, RouteKind, RunKey, SeedSpec};
use wandbfs::client::{
    Client, ClientConfig, Environment, Overrides, RateLimitConfig, RetryConfig, settings,
};
use wandbfs::mirror::testing::{TestDatabase, fresh_database};
use wandbfs::mirror::{ConnectOptions, Mirror, Stream};
use wandbfs::parquet_history::gofloat::write_go_float;
use wandbfs::parquet_history::{ExportListing, ExportRead, ReaderOptions, read_exported};
use wandbfs::sync::{ProgressEvent, ProgressSink, SyncEngine, SyncOptions, SyncTarget};

const ENTITY: &str = "emulator";

fn client(emu: &Emulator) -> Client {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(SecretString::from(emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).expect("settings");
    let config = ClientConfig {
        retry: RetryConfig {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
            max_retry_after: Duration::from_millis(500),
            total_timeout: Duration::from_secs(60),
        },
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1,
            honour_server_headers: true,
        },
        ..ClientConfig::default()
    };
    Client::new(settings, config).expect("client")
}

/// Per-run reads (`batch: false`): these tests are about the history sources a run's own job
/// uses — exports, paging — which batched reads leave to big runs and fallbacks
/// (`sync_batch.rs` covers batching, exports listed in batches included).
fn options(parquet: bool) -> SyncOptions {
    SyncOptions {
        parquet_exports: parquet,
        parquet_min_rows: 0,
        history_page_rows: 1_000,
        artifacts: false,
        batch: false,
        ..SyncOptions::default()
    }
}

async fn sync(emu: &Emulator, mirror: &Mirror, project: &str, parquet: bool) {
    let engine = SyncEngine::new(client(emu), mirror.clone(), options(parquet));
    let target: SyncTarget = format!("{ENTITY}/{project}").parse().expect("target");
    let report = engine.sync(&[target]).await.expect("sync");
    assert!(report.failures.is_empty(), "{:?}", report.failures);
}

fn go(x: f64) -> String {
    let mut out = Vec::new();
    write_go_float(x, &mut out);
    String::from_utf8(out).expect("ascii")
}

/// A row exactly as the exports reader renders it (and as wandb-core would log it): fixed key
/// order, floats in Go's spelling, nested groups, no nulls.
fn canonical_row(step: i64) -> String {
    let special = match step % 50 {
        7 => "NaN".to_string(),
        19 => "Infinity".to_string(),
        33 => "-Infinity".to_string(),
        _ => go(step as f64 * 0.125),
    };
    let mut row = format!(
        r#"{{"_step":{step},"loss":{},"epoch":{},"special":{special},"tag":"s{}","nested":{{"a":{step},"b":{{"c":{}}}}},"ünï/κ":{}"#,
        go(1.0 / (step as f64 + 1.0)),
        step / 100,
        step % 3,
        go(step as f64 * 1e-7),
        go(1.7e9 + step as f64 * 0.5),
    );
    if step % 10 == 0 {
        row.push_str(&format!(r#","every10":{}"#, step / 10));
    }
    row.push('}');
    row
}

fn add_canonical_run(
    emu: &Emulator,
    project: &str,
    name: &str,
    steps: std::ops::Range<i64>,
) -> RunKey {
    let key = RunKey::new(ENTITY, project, name);
    emu.create_run(&key);
    let rows: Vec<String> = steps.map(canonical_row).collect();
    emu.append_history(&key, &rows).expect("append");
    emu.set_state(&key, "finished").expect("state");
    key
}

async fn jsonl(mirror: &Mirror, key: &RunKey) -> Vec<u8> {
    let run = mirror
        .resolve_run(&key.entity, &key.project, &key.name)
        .await
        .expect("resolve")
        .unwrap_or_else(|| panic!("{key} not mirrored"));
    let len = mirror.stream_len(run, Stream::History).await.expect("len");
    mirror
        .read_stream(run, Stream::History, 0, usize::try_from(len).expect("fits"))
        .await
        .expect("read")
        .to_vec()
}

/// `(step, row::text)` of a run's SQL history rows.
async fn sql_rows(db: &TestDatabase, key: &RunKey) -> Vec<(i64, String)> {
    let sql = db.raw_client().await.expect("sql");
    sql.query(
        "SELECT step, row::text FROM wandb.history_rows WHERE run_id = $1 ORDER BY step",
        &[&key.name],
    )
    .await
    .expect("rows")
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

/// Value equality under the documented rule: key order is free, explicit nulls equal absent
/// keys, ints and floats compare by value (NaN equals NaN).
fn same(a: &jiter::JsonValue<'_>, b: &jiter::JsonValue<'_>) -> bool {
    use jiter::JsonValue as J;
    let num = |v: &J<'_>| match v {
        J::Int(i) => Some(*i as f64),
        J::Float(f) => Some(*f),
        _ => None,
    };
    match (a, b) {
        (J::Object(x), J::Object(y)) => {
            let map = |o: &jiter::JsonObject<'_>| -> BTreeMap<String, jiter::JsonValue<'static>> {
                o.iter()
                    .filter(|(_, v)| !matches!(v, J::Null))
                    .map(|(k, v)| (k.to_string(), v.clone().into_static()))
                    .collect()
            };
            let (x, y) = (map(x), map(y));
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        (J::Array(x), J::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y.iter()).all(|(v, w)| same(v, w))
        }
        (J::Int(x), J::Int(y)) => x == y,
        _ => match (num(a), num(b)) {
            (Some(x), Some(y)) => x == y || (x.is_nan() && y.is_nan()),
            _ => a == b,
        },
    }
}

fn assert_same_values(left: &[(i64, String)], right: &[(i64, String)], what: &str) {
    assert_eq!(left.len(), right.len(), "{what}: row counts");
    for ((s1, t1), (s2, t2)) in left.iter().zip(right) {
        assert_eq!(s1, s2, "{what}: steps");
        let v1 = wandbfs::values::parse(t1.as_bytes()).expect("json");
        let v2 = wandbfs::values::parse(t2.as_bytes()).expect("json");
        assert!(same(&v1, &v2), "{what}, step {s1}:\n  {t1}\n  {t2}");
    }
}

fn jsonl_rows(bytes: &[u8]) -> Vec<(i64, String)> {
    std::str::from_utf8(bytes)
        .expect("utf8")
        .lines()
        .map(|l| {
            (
                wandbfs::sync::history::step_of(l).expect("step"),
                l.to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_and_paging_mirror_the_same_history() {
    const PROJECT: &str = "same";
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(3)
        .steps(5_000)
        .keys(10)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let canon = add_canonical_run(&emu, PROJECT, "canon", 0..2_500);
    let exports = ParquetExports::install(&emu, ExportConfig::never().rows_per_file(2_000));
    let keys = emu.runs(ENTITY, PROJECT);
    assert_eq!(keys.len(), 4);

    // Paging: no exports exist yet.
    let paged = fresh_database().await.expect("db");
    emu.reset_counters();
    sync(&emu, &paged.mirror, PROJECT, false).await;
    let paging = emu.counters();

    // Exports: every run is finished, so every run is exported (3 + 3 + 3 + 2 files).
    exports.set_delay(Some(Duration::ZERO));
    assert_eq!(exports.prepare_project(&emu, ENTITY, PROJECT), 4);
    let parquet_db = fresh_database().await.expect("db");
    emu.reset_counters();
    sync(&emu, &parquet_db.mirror, PROJECT, true).await;
    let parquet = emu.counters();

    for key in &keys {
        let a = jsonl(&paged.mirror, key).await;
        let b = jsonl(&parquet_db.mirror, key).await;
        let truth = emu.history_rows(key).expect("rows");
        assert_eq!(jsonl_rows(&a).len(), truth.len(), "{key}: paging row count");
        let (sql_a, sql_b) = (
            sql_rows(&paged, key).await,
            sql_rows(&parquet_db, key).await,
        );
        if *key == canon {
            // Logged in wandb-core's spelling: byte for byte, and SQL text for SQL text.
            assert!(
                a == b,
                "{key}: history.jsonl differs between paging and exports"
            );
            let expected: Vec<u8> = truth
                .iter()
                .flat_map(|r| [r.as_bytes(), b"\n"].concat())
                .collect();
            assert!(
                b == expected,
                "{key}: history.jsonl differs from the emulator"
            );
            assert_eq!(sql_a, sql_b, "{key}: SQL rows");
        } else {
            // Seeded rows spell floats like serde_json (`0.0`, `6.25e-5`); from the exports
            // they come back in wandb-core's spelling: same values, same keys, same order.
            assert_same_values(
                &jsonl_rows(&a),
                &jsonl_rows(&b),
                &format!("{key} history.jsonl"),
            );
            assert_same_values(&sql_a, &sql_b, &format!("{key} SQL rows"));
        }
    }

    // O(pages) against O(files): 17,500 rows at 1,000 per page against 11 files.
    let pages = paging.operation("HistoryPage");
    assert!(
        pages >= 18,
        "paging made {pages} HistoryPage calls: {:?}",
        paging.by_operation
    );
    assert_eq!(paging.route(RouteKind::SignedDownload), 0);
    assert_eq!(
        parquet.operation("HistoryPage"),
        0,
        "{:?}",
        parquet.by_operation
    );
    assert_eq!(parquet.operation("RunParquetHistory"), 4);
    assert_eq!(parquet.route(RouteKind::SignedDownload), 11);
    eprintln!(
        "history requests: paging {pages} pages; exports {} listings + {} downloads",
        parquet.operation("RunParquetHistory"),
        parquet.route(RouteKind::SignedDownload)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_export_and_live_tail_are_complete() {
    const PROJECT: &str = "partial";
    let emu = Emulator::start().expect("emulator");
    let exports = ParquetExports::install(&emu, ExportConfig::immediate().rows_per_file(1_000));
    let key = add_canonical_run(&emu, PROJECT, "resumed", 0..2_500);
    assert_eq!(
        exports
            .prepare(emu.app(), &key)
            .expect("export")
            .files
            .len(),
        3
    );
    // The run resumes: 700 more steps, live only.
    emu.set_state(&key, "running").expect("state");
    let tail: Vec<String> = (2_500..3_200).map(canonical_row).collect();
    emu.append_history(&key, &tail).expect("append");
    emu.set_state(&key, "finished").expect("state");

    let db = fresh_database().await.expect("db");
    emu.reset_counters();
    sync(&emu, &db.mirror, PROJECT, true).await;
    let counters = emu.counters();
    let expected: Vec<u8> = emu
        .history_rows(&key)
        .expect("rows")
        .iter()
        .flat_map(|r| [r.as_bytes(), b"\n"].concat())
        .collect();
    assert!(
        jsonl(&db.mirror, &key).await == expected,
        "history.jsonl differs"
    );
    let rows = sql_rows(&db, &key).await;
    assert_eq!(rows.len(), 3_200);
    assert!(
        rows.windows(2).all(|w| w[0].0 < w[1].0),
        "no duplicate steps"
    );
    assert_eq!(counters.route(RouteKind::SignedDownload), 3);
    assert_eq!(
        counters.operation("HistoryPage"),
        1,
        "one page for the 700-row tail"
    );

    // More rows later: an incremental sync pages just those.
    let more: Vec<String> = (3_200..3_260).map(canonical_row).collect();
    emu.append_history(&key, &more).expect("append");
    emu.reset_counters();
    sync(&emu, &db.mirror, PROJECT, true).await;
    assert_eq!(emu.counters().route(RouteKind::SignedDownload), 0);
    assert_eq!(sql_rows(&db, &key).await.len(), 3_260);
}

/// Stops the sync (drops it, like a crash) once `after` history batches were committed.
struct Interrupt {
    batches: std::sync::atomic::AtomicU64,
    after: u64,
    notify: Arc<Notify>,
}

impl ProgressSink for Interrupt {
    fn event(&self, event: ProgressEvent) {
        if let ProgressEvent::Rows { .. } = event {
            let n = self
                .batches
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            if n == self.after {
                self.notify.notify_one();
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_parquet_ingest_resumes_exactly() {
    const PROJECT: &str = "crash";
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(2)
        .steps(40_000)
        .keys(12)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let exports = ParquetExports::install(&emu, ExportConfig::immediate().rows_per_file(7_000));
    exports.prepare_project(&emu, ENTITY, PROJECT);
    let keys = emu.runs(ENTITY, PROJECT);
    let target: SyncTarget = format!("{ENTITY}/{PROJECT}").parse().expect("target");

    // Reference: one uninterrupted sync through the exports.
    let reference = fresh_database().await.expect("db");
    sync(&emu, &reference.mirror, PROJECT, true).await;

    let db = fresh_database().await.expect("db");
    let mut mirrored = 0usize;
    for round in 1..=3u64 {
        // A new pool each round, as a restarted process would have; the old one is dropped
        // with the interrupted sync (its open transactions roll back).
        let mirror = Mirror::connect_config(db.config.clone(), &ConnectOptions::default())
            .await
            .expect("connect");
        let notify = Arc::new(Notify::new());
        let sink = Arc::new(Interrupt {
            batches: Default::default(),
            after: 1,
            notify: Arc::clone(&notify),
        });
        let engine = SyncEngine::new(client(&emu), mirror, options(true)).with_progress(sink);
        tokio::select! {
            report = engine.sync(std::slice::from_ref(&target)) => {
                panic!("round {round}: the sync finished before it was interrupted: {report:?}")
            }
            // A first batch committed; stop anywhere in the next few milliseconds (downloads,
            // decoding, or inside an ingest transaction).
            _ = async {
                notify.notified().await;
                tokio::time::sleep(Duration::from_millis(3 * round)).await;
            } => {}
        }
        drop(engine);
        let partial: usize = {
            let mut n = 0;
            for key in &keys {
                n += sql_rows(&db, key).await.len();
            }
            n
        };
        assert!(
            partial > mirrored && partial < 80_000,
            "round {round}: {partial} rows mirrored (before: {mirrored})"
        );
        mirrored = partial;
    }
    sync(&emu, &db.mirror, PROJECT, true).await;
    for key in &keys {
        assert!(
            jsonl(&db.mirror, key).await == jsonl(&reference.mirror, key).await,
            "{key}: history.jsonl differs from an uninterrupted sync"
        );
        let rows = sql_rows(&db, key).await;
        assert_eq!(rows, sql_rows(&reference, key).await, "{key}: SQL rows");
        assert_eq!(rows.len(), 40_000);
    }
}

/// Serves a non-parquet blob as the export of every ended run.
#[derive(Debug)]
struct BrokenExports;

impl HistoryExports for BrokenExports {
    fn exports(&self, app: &AppState, run: &RunCell) -> Option<(Vec<String>, i64)> {
        if run.record.read().state != "finished" {
            return None;
        }
        let blob = app
            .blobs
            .put_bytes(bytes::Bytes::from_static(b"<html>not parquet</html>"))
            .ok()?;
        Some((vec![app.direct_blob_url(&blob, "broken.parquet")], i64::MAX))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_exports_fall_back_to_paging() {
    const PROJECT: &str = "broken";
    let emu = Emulator::start().expect("emulator");
    let key = add_canonical_run(&emu, PROJECT, "run", 0..1_500);
    emu.set_history_exports(Some(Arc::new(BrokenExports)));
    let db = fresh_database().await.expect("db");
    emu.reset_counters();
    sync(&emu, &db.mirror, PROJECT, true).await;
    let counters = emu.counters();
    assert_eq!(
        counters.route(RouteKind::SignedDownload),
        1,
        "the export was tried"
    );
    assert!(
        counters.operation("HistoryPage") >= 2,
        "{:?}",
        counters.by_operation
    );
    let expected: Vec<u8> = emu
        .history_rows(&key)
        .expect("rows")
        .iter()
        .flat_map(|r| [r.as_bytes(), b"\n"].concat())
        .collect();
    assert!(jsonl(&db.mirror, &key).await == expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_export_urls_are_fetched_again_and_batches_stay_bounded() {
    const PROJECT: &str = "expiry";
    let emu = Emulator::start().expect("emulator");
    ParquetExports::install(
        &emu,
        ExportConfig::immediate()
            .rows_per_file(400)
            .row_group_rows(100),
    );
    let key = add_canonical_run(&emu, PROJECT, "run", 0..1_000);
    let client = client(&emu);
    let listing = ExportListing::fetch(&client, ENTITY, PROJECT, &key.name)
        .await
        .expect("listing");
    assert_eq!((listing.urls.len(), listing.min_live_step), (3, None));
    // Every URL of that listing is now refused (403), as after its TTL.
    emu.revoke_signed_urls();
    emu.reset_counters();
    let read = ExportRead {
        entity: ENTITY.into(),
        project: PROJECT.into(),
        run: key.name.clone(),
        listing,
        from_step: 250,
        until_step: 900,
    };
    let options = ReaderOptions {
        batch_rows: 64,
        ..ReaderOptions::default()
    };
    let mut stream = read_exported(&client, &read, &options);
    let mut rows = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.expect("rows");
        assert!(
            !batch.rows.is_empty() && batch.rows.len() <= 64,
            "{}",
            batch.rows.len()
        );
        rows.extend(batch.rows);
    }
    let expected: Vec<(i64, String)> = (250..900).map(|s| (s, canonical_row(s))).collect();
    assert!(rows == expected, "rows 250..900 exactly, in order");
    let counters = emu.counters();
    assert!(
        (1..=3).contains(&counters.operation("RunParquetHistory")),
        "fresh listings after the 403s: {:?}",
        counters.by_operation
    );
    let refused = emu.requests().iter().filter(|r| r.status == 403).count();
    assert!(refused >= 1, "the old URLs were refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_runs_skip_the_export_lookup() {
    const PROJECT: &str = "live";
    let emu = Emulator::start_with(EmulatorConfig::default()).expect("emulator");
    let done = add_canonical_run(&emu, PROJECT, "done", 0..3_000);
    let live = RunKey::new(ENTITY, PROJECT, "live");
    emu.create_run(&live);
    let rows: Vec<String> = (0..3_000).map(canonical_row).collect();
    emu.append_history(&live, &rows).expect("append");
    emu.set_state(&live, "running").expect("state");
    let exports = ParquetExports::install(&emu, ExportConfig::immediate());
    assert_eq!(exports.prepare_project(&emu, ENTITY, PROJECT), 1);

    let db = fresh_database().await.expect("db");
    emu.reset_counters();
    sync(&emu, &db.mirror, PROJECT, true).await;
    let counters = emu.counters();
    // One listing for the finished run; none for the running one (W&B never exports a live
    // run, and the lookup would return every live step).
    assert_eq!(
        counters.operation("RunParquetHistory"),
        1,
        "{:?}",
        counters.by_operation
    );
    assert!(counters.operation("HistoryPage") >= 1);
    for key in [&done, &live] {
        let truth = emu.history_rows(key).expect("rows");
        assert_eq!(
            jsonl_rows(&jsonl(&db.mirror, key).await).len(),
            truth.len(),
            "{key}"
        );
    }
}
