//! The sync engine against the emulator and a real (throwaway) Postgres: a first sync mirrors
//! everything exactly; later syncs are incremental, and the emulator's request counters and a
//! recording proxy show what they cost: listings only when nothing changed, history fetched
//! from the last mirrored step for a live run, no history at all for a tag edit, deletions
//! marked.

mod sync_support;

use std::collections::BTreeMap;
use std::time::Duration;

use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};
use wandbfs::mirror::Stream;
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "incr";

fn seeded(runs: u64, steps: u64) -> Emulator {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(runs)
        .steps(steps)
        .keys(8)
        .files(4)
        .bigfile(1 << 20);
    Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator starts")
}

fn operations(emu: &Emulator) -> BTreeMap<String, u64> {
    emu.counters()
        .by_operation
        .into_iter()
        .map(|(op, t)| (op, t.requests))
        .collect()
}

fn run_key(emu: &Emulator, index: usize) -> RunKey {
    emu.runs(ENTITY, PROJECT)[index].clone()
}

fn rows_after(last_step: i64, n: i64) -> Vec<String> {
    (last_step + 1..=last_step + n)
        .map(|s| {
            format!(
                r#"{{"_step":{s},"loss":{},"appended":true,"nan":NaN}}"#,
                1.0 / (s + 1) as f64
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_syncs_cost_what_changed() {
    let emu = seeded(12, 300);
    let proxy = RecordingProxy::start(emu.base_url());
    let db = database().await;
    let engine = engine(
        client_at(&proxy.base_url, &emu.api_key()),
        &db.mirror,
        SyncOptions::default(),
    );
    let target = format!("{ENTITY}/{PROJECT}");

    // First sync: everything, exactly.
    emu.reset_counters();
    let first = sync(&engine, &target).await;
    assert!(first.is_success(), "{first:#?}");
    assert_eq!(first.runs_synced, 12);
    assert_eq!(first.rows, 12 * 300);
    assert_eq!(first.projects[0].mode, "first");
    let rows = assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
    assert_eq!(rows, 12 * 300);
    eprintln!(
        "first sync of 12 runs × 300 rows: {} API requests {:?}",
        first.api.http,
        operations(&emu)
    );

    // Nothing changed: listings only (the run-count probe and one incremental listing).
    emu.reset_counters();
    let second = sync(&engine, &target).await;
    assert!(second.is_success(), "{second:#?}");
    let ops = operations(&emu);
    assert_eq!(ops.keys().collect::<Vec<_>>(), ["Runs"], "{ops:?}");
    assert!(ops["Runs"] <= 2, "{ops:?}");
    assert_eq!((second.runs_synced, second.rows), (0, 0));
    assert_eq!(second.projects[0].mode, "incremental");
    eprintln!(
        "unchanged project: {} API requests {ops:?}",
        second.api.http
    );

    // A live run grows: only its new steps are fetched, starting right after the last one.
    let live = run_key(&emu, 7);
    assert_eq!(emu.run_info(&live).unwrap().state, "running");
    let last = emu.run_info(&live).unwrap().last_step.unwrap();
    emu.append_history(&live, &rows_after(last, 40)).unwrap();
    emu.reset_counters();
    proxy.clear();
    let third = sync(&engine, &target).await;
    assert!(third.is_success(), "{third:#?}");
    assert_eq!((third.runs_synced, third.rows), (1, 40));
    // Its record, then its new steps, events and files, each in one batched read: the window
    // starts right after the last mirrored step, and `samples` is the window's width.
    let bundles: Vec<_> = proxy
        .seen()
        .into_iter()
        .filter(|s| s.operation == "RunBundle")
        .collect();
    assert_eq!(bundles.len(), 2, "{bundles:?}");
    assert_eq!(
        operations(&emu).get("HistoryPage"),
        None,
        "{:?}",
        operations(&emu)
    );
    let windows: Vec<_> = bundles
        .iter()
        .filter(|b| b.variables.get("h0").is_some())
        .collect();
    assert_eq!(windows.len(), 1, "{bundles:?}");
    let vars = &windows[0].variables;
    assert_eq!(vars["n0"], live.name.as_str(), "{vars:?}");
    let min = vars["h0"].as_i64().unwrap();
    let max = vars["w0"].as_i64().unwrap();
    assert_eq!(min, last + 1, "re-fetched old steps: {vars:?}");
    assert_eq!(vars["s0"].as_i64(), Some(max - min), "{vars:?}");
    eprintln!(
        "40 rows appended to a live run: {} API requests {:?}",
        third.api.http,
        operations(&emu)
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // A tag edit on an old finished run: picked up without touching history.
    let old = run_key(&emu, 0);
    assert_eq!(emu.run_info(&old).unwrap().state, "finished");
    emu.set_tags(&old, &["edited", "ünïcode"]).unwrap();
    emu.set_summary(
        &old,
        r#"{"loss": NaN, "best": 0.5, "nested": {"a": -Infinity}}"#,
    )
    .unwrap();
    emu.reset_counters();
    let fourth = sync(&engine, &target).await;
    assert!(fourth.is_success(), "{fourth:#?}");
    let ops = operations(&emu);
    assert_eq!(ops.get("HistoryPage"), None, "{ops:?}");
    assert_eq!(
        ops.get("RunBundle"),
        Some(&1),
        "its record and files in one read: {ops:?}"
    );
    assert_eq!(fourth.runs_synced, 1, "{fourth:#?}");
    let run = db
        .mirror
        .resolve_run(ENTITY, PROJECT, &old.name)
        .await
        .unwrap()
        .unwrap();
    let meta = db.mirror.run_metadata(run).await.unwrap();
    assert_eq!(meta.tags, ["edited", "ünïcode"]);
    eprintln!(
        "tag + summary edit: {} API requests {ops:?}",
        fourth.api.http
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // A deleted run is marked, and its data kept.
    let gone = run_key(&emu, 3);
    let gone_pk = db
        .mirror
        .resolve_run(ENTITY, PROJECT, &gone.name)
        .await
        .unwrap()
        .unwrap();
    let gone_bytes = db
        .mirror
        .stream_len(gone_pk, Stream::History)
        .await
        .unwrap();
    assert!(emu.delete_run(&gone));
    let fifth = sync(&engine, &target).await;
    assert!(fifth.is_success(), "{fifth:#?}");
    assert_eq!(fifth.runs_deleted, 1);
    let meta = db.mirror.run_metadata(gone_pk).await.unwrap();
    assert!(meta.deleted && meta.deleted_at.is_some());
    assert_eq!(
        db.mirror
            .stream_len(gone_pk, Stream::History)
            .await
            .unwrap(),
        gone_bytes
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // And again nothing to do.
    emu.reset_counters();
    let sixth = sync(&engine, &target).await;
    assert_eq!(
        (sixth.runs_synced, sixth.runs_deleted, sixth.rows),
        (0, 0, 0)
    );
    assert_eq!(operations(&emu).keys().collect::<Vec<_>>(), ["Runs"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_updated_at_the_metadata_pass_catches_edits() {
    let emu = seeded(10, 50);
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let options = SyncOptions {
        use_updated_at: false,
        metadata_interval: Duration::from_secs(3600),
        ..SyncOptions::default()
    };
    let engine = engine(client(&emu), &db.mirror, options.clone());
    assert!(sync(&engine, &target).await.is_success());

    let old = run_key(&emu, 0);
    emu.set_tags(&old, &["late-edit"]).unwrap();
    emu.set_state(&old, "crashed").unwrap();
    let run = db
        .mirror
        .resolve_run(ENTITY, PROJECT, &old.name)
        .await
        .unwrap()
        .unwrap();

    // An incremental sync without `updatedAt` cannot see an old run's edit...
    let report = sync(&engine, &target).await;
    assert_eq!(report.projects[0].mode, "incremental");
    assert_ne!(
        db.mirror.run_metadata(run).await.unwrap().tags,
        ["late-edit"]
    );

    // ...the metadata pass (here: due at once) does, with a lightweight listing of every run.
    let engine = engine.with_options(SyncOptions {
        metadata_interval: Duration::ZERO,
        ..options
    });
    emu.reset_counters();
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.projects[0].mode, "metadata");
    let meta = db.mirror.run_metadata(run).await.unwrap();
    assert_eq!(meta.tags, ["late-edit"]);
    assert_eq!(meta.state.as_deref(), Some("crashed"));
    assert_eq!(operations(&emu).get("HistoryPage"), None);
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_run_target_syncs_just_that_run() {
    let emu = seeded(5, 120);
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let key = run_key(&emu, 2);
    let target = format!("{ENTITY}/{PROJECT}/{}", key.name);
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!((report.runs_synced, report.rows), (1, 120));
    let jsonl = mirror_stream(&db.mirror, &key, Stream::History).await;
    assert_eq!(jsonl, expected_jsonl(&emu.history_rows(&key).unwrap()));
    let other = run_key(&emu, 1);
    assert!(
        db.mirror
            .resolve_run(ENTITY, PROJECT, &other.name)
            .await
            .unwrap()
            .is_none()
    );

    // Unchanged: one `Run` request, nothing else.
    emu.reset_counters();
    let again = sync(&engine, &target).await;
    assert_eq!((again.runs_synced, again.rows), (0, 0));
    assert_eq!(
        operations(&emu).into_iter().collect::<Vec<_>>(),
        [("Run".to_owned(), 1)]
    );

    // A missing run is an error of that target, not of the sync.
    let missing = sync(&engine, &format!("{ENTITY}/{PROJECT}/nosuchrun")).await;
    assert!(!missing.is_success());
    assert!(
        missing.projects[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not found")
    );
}

/// Appends system-metric rows to a run through `file_stream`, as the SDK does.
async fn post_events(emu: &Emulator, key: &RunKey, offset: usize, rows: &[String]) {
    let url = format!(
        "{}/files/{}/{}/{}/file_stream",
        emu.base_url(),
        key.entity,
        key.project,
        key.name
    );
    let body = serde_json::json!({
        "files": {"wandb-events.jsonl": {"offset": offset, "content": rows}}
    });
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

fn events(from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| {
            format!(
                r#"{{"system.cpu":{},"system.gpu.0.temp":NaN,"_wandb":true,"_timestamp":{},"_runtime":{i}}}"#,
                i as f64 * 1.5,
                1.7e9 + i as f64
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_events_are_mirrored_then_appended() {
    let emu = seeded(3, 40);
    let live = RunKey::new(ENTITY, PROJECT, "liverun01");
    assert!(emu.create_run(&live));
    emu.append_history(&live, &rows_after(-1, 25)).unwrap();
    post_events(&emu, &live, 0, &events(0, 30)).await;
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let target = format!("{ENTITY}/{PROJECT}");
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.events, 30);
    assert_eq!(
        mirror_stream(&db.mirror, &live, Stream::System).await,
        expected_jsonl(&emu.events_rows(&live).unwrap())
    );

    // More events (and rows) on the live run: the new ones are appended, nothing repeated.
    post_events(&emu, &live, 30, &events(30, 12)).await;
    emu.append_history(&live, &rows_after(24, 5)).unwrap();
    emu.reset_counters();
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!((report.events, report.rows), (12, 5));
    // The events come in the run's batched read, with its record, rows and files.
    assert_eq!(emu.counters().operation("RunFullHistory"), 0);
    assert_eq!(emu.counters().operation("RunBundle"), 2);
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_history_is_refetched_and_full_reconciles() {
    let emu = seeded(4, 200);
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let target = format!("{ENTITY}/{PROJECT}");
    assert!(sync(&engine, &target).await.is_success());

    // Upstream, a run's history is replaced by a shorter one (a rewind): the mirror notices
    // that its last step is past W&B's and fetches the run's history again.
    let run = run_key(&emu, 1);
    assert!(emu.delete_run(&run));
    assert!(emu.create_run(&run));
    emu.append_history(&run, &rows_after(-1, 50)).unwrap();
    emu.set_state(&run, "finished").unwrap();
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("rewritten")),
        "{report:#?}"
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // `--full` re-checks every run (full records, events, files) and changes nothing when the
    // mirror is right.
    let engine = engine.with_options(SyncOptions {
        full: true,
        ..SyncOptions::default()
    });
    emu.reset_counters();
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.projects[0].mode, "full");
    assert_eq!((report.runs_synced, report.rows), (4, 0));
    let ops = operations(&emu);
    // The four runs' events and files in one batched request (none has new history).
    assert_eq!(ops.get("RunBundle"), Some(&1), "{ops:?}");
    assert_eq!(ops.get("RunFiles"), None, "{ops:?}");
    assert_eq!(ops.get("RunFullHistory"), None, "{ops:?}");
    assert_eq!(ops.get("HistoryPage"), None, "{ops:?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}
