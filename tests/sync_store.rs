//! `WandbStore` over the mirror: after `sync`, listings and synthetic files of synced runs (and
//! artifact listings) come from Postgres at zero API calls, byte-identical to the live
//! source's; what the mirror does not cover — a run created after the sync, a run whose job
//! failed (pending) — falls back to the live API.

mod sync_support;

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};
use wandbfs::store::{Layered, LiveOptions, LiveSource, MirrorSource, WandbStore};
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "stored";

async fn get(store: &WandbStore, path: &str) -> bytes::Bytes {
    store
        .get(&Path::parse(path).unwrap())
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"))
        .bytes()
        .await
        .unwrap()
}

async fn names(store: &WandbStore, prefix: &str) -> Vec<String> {
    let listing = store
        .list_with_delimiter(Some(&Path::parse(prefix).unwrap()))
        .await
        .unwrap_or_else(|e| panic!("list {prefix}: {e}"));
    let mut out: Vec<String> = listing
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .chain(listing.objects.iter().map(|o| o.location.to_string()))
        .collect();
    out.sort();
    out
}

fn graphql_requests(emu: &Emulator) -> u64 {
    emu.counters().route(wandb_emulator::RouteKind::Graphql)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synced_runs_are_served_from_the_mirror_and_the_rest_live() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(4)
        .steps(2_000)
        .keys(8)
        .files(4)
        .bigfile(0)
        .artifacts(2);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let report = sync(&engine, &format!("{ENTITY}/{PROJECT}")).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(report.artifact_versions >= 4, "{report:#?}");

    let live = WandbStore::new(client(&emu));
    let layered = WandbStore::builder(client(&emu))
        .with_source(Arc::new(Layered::new(
            Arc::new(MirrorSource::new(db.mirror.clone())),
            Arc::new(LiveSource::new(client(&emu), LiveOptions::default())),
        )))
        .build();
    let runs = emu.runs(ENTITY, PROJECT);
    let key = &runs[1];
    let run_dir = format!("{ENTITY}/{PROJECT}/{}", key.name);

    // Synced: zero API calls for listings, stats, whole and ranged reads, artifact listings.
    emu.reset_counters();
    let listed = names(&layered, &format!("{ENTITY}/{PROJECT}")).await;
    for r in &runs {
        assert!(listed.iter().any(|n| n.ends_with(&r.name)), "{listed:?}");
    }
    let files = names(&layered, &run_dir).await;
    let mut layered_bytes = Vec::new();
    for name in [
        "history.jsonl",
        "system.jsonl",
        "summary.json",
        "config.json",
        "metadata.json",
    ] {
        let path = format!("{run_dir}/{name}");
        assert!(files.contains(&path), "{files:?}");
        layered_bytes.push(get(&layered, &path).await);
    }
    let history_path = Path::parse(format!("{run_dir}/history.jsonl")).unwrap();
    let head = layered.head(&history_path).await.unwrap();
    let ranged = layered
        .get_opts(
            &history_path,
            GetOptions::new().with_range(Some(GetRange::Bounded(1000..50_000))),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let artifact_types = names(&layered, &format!("{ENTITY}/{PROJECT}/artifacts")).await;
    assert!(!artifact_types.is_empty());
    let versions: Vec<_> = layered
        .list(Some(
            &Path::parse(format!("{ENTITY}/{PROJECT}/artifacts")).unwrap(),
        ))
        .try_collect()
        .await
        .unwrap();
    assert!(!versions.is_empty());
    assert_eq!(graphql_requests(&emu), 0, "{:?}", emu.counters());

    // The same bytes as the live source renders.
    let expected = expected_jsonl(&emu.history_rows(key).unwrap());
    assert_eq!(layered_bytes[0], expected);
    assert_eq!(head.size, expected.len() as u64);
    assert_eq!(&ranged[..], &expected[1000..50_000]);
    for (i, name) in [
        "history.jsonl",
        "system.jsonl",
        "summary.json",
        "config.json",
        "metadata.json",
    ]
    .iter()
    .enumerate()
    {
        let live_bytes = get(&live, &format!("{run_dir}/{name}")).await;
        assert_eq!(layered_bytes[i], live_bytes, "{name}");
    }
    let mut live_versions: Vec<_> = live
        .list(Some(
            &Path::parse(format!("{ENTITY}/{PROJECT}/artifacts")).unwrap(),
        ))
        .try_collect()
        .await
        .unwrap();
    let mut mirrored_versions = versions.clone();
    live_versions.sort_by(|a, b| a.location.cmp(&b.location));
    mirrored_versions.sort_by(|a, b| a.location.cmp(&b.location));
    let sizes = |v: &[object_store::ObjectMeta]| {
        v.iter()
            .map(|m| (m.location.to_string(), m.size))
            .collect::<Vec<_>>()
    };
    assert_eq!(sizes(&mirrored_versions), sizes(&live_versions));

    // A run created after the sync is not in the mirror: served live, correctly.
    let fresh = RunKey::new(ENTITY, PROJECT, "freshrun1");
    assert!(emu.create_run(&fresh));
    emu.append_history(
        &fresh,
        &[
            r#"{"_step":0,"x":NaN}"#.to_owned(),
            r#"{"_step":1,"x":1}"#.to_owned(),
        ],
    )
    .unwrap();
    emu.reset_counters();
    let fresh_history = get(
        &layered,
        &format!("{ENTITY}/{PROJECT}/freshrun1/history.jsonl"),
    )
    .await;
    assert_eq!(
        &fresh_history[..],
        b"{\"_step\":0,\"x\":NaN}\n{\"_step\":1,\"x\":1}\n"
    );
    assert!(graphql_requests(&emu) > 0);

    // A run whose last job failed is pending: served live, never as a partial mirror copy.
    let grown = &runs[0];
    let last = emu.run_info(grown).unwrap().last_step.unwrap();
    emu.append_history(grown, &[format!(r#"{{"_step":{},"late":true}}"#, last + 1)])
        .unwrap();
    emu.set_poisoned(grown, true);
    let report = sync(&engine, &format!("{ENTITY}/{PROJECT}")).await;
    assert_eq!(report.runs_failed, 1, "{report:#?}");
    emu.set_poisoned(grown, false);
    emu.reset_counters();
    let grown_history = get(
        &layered,
        &format!("{ENTITY}/{PROJECT}/{}/history.jsonl", grown.name),
    )
    .await;
    assert_eq!(
        grown_history,
        expected_jsonl(&emu.history_rows(grown).unwrap())
    );
    assert!(graphql_requests(&emu) > 0);

    // Once synced again, back to zero calls.
    let report = sync(&engine, &format!("{ENTITY}/{PROJECT}")).await;
    assert!(report.is_success(), "{report:#?}");
    emu.reset_counters();
    let again = get(
        &layered,
        &format!("{ENTITY}/{PROJECT}/{}/history.jsonl", grown.name),
    )
    .await;
    assert_eq!(again, grown_history);
    assert_eq!(graphql_requests(&emu), 0);
}

/// A run file re-uploaded after the sync: the mirror still lists the old size (its listing is
/// fresh as of the last job), but a read must serve the file as W&B has it now instead of
/// failing on the size mismatch until the next sync.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_file_changed_after_the_sync_is_read_as_it_is_now() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(1)
        .steps(10)
        .keys(2)
        .files(3)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let report = sync(&engine, &format!("{ENTITY}/{PROJECT}")).await;
    assert!(report.is_success(), "{report:#?}");
    let layered = WandbStore::builder(client(&emu))
        .with_source(Arc::new(Layered::new(
            Arc::new(MirrorSource::new(db.mirror.clone())),
            Arc::new(LiveSource::new(client(&emu), LiveOptions::default())),
        )))
        .build();
    let key = &emu.runs(ENTITY, PROJECT)[0];
    let path = format!("{ENTITY}/{PROJECT}/{}/output.log", key.name);
    let synced = emu.run_file_bytes(key, "output.log").unwrap();
    assert_eq!(get(&layered, &path).await, synced);

    let grown: Vec<u8> = synced
        .iter()
        .chain(b"and one more line\n")
        .copied()
        .collect();
    emu.put_run_file(key, "output.log", grown.clone()).unwrap();
    let stale = layered.head(&Path::parse(&path).unwrap()).await.unwrap();
    assert_eq!(
        stale.size,
        synced.len() as u64,
        "listings are as of the sync"
    );
    let read = layered
        .get(&Path::parse(&path).unwrap())
        .await
        .unwrap_or_else(|e| panic!("get {path}: {e}"));
    assert_eq!(read.meta.size, grown.len() as u64);
    assert_eq!(read.bytes().await.unwrap(), grown);
    let tail = layered
        .get_opts(
            &Path::parse(&path).unwrap(),
            GetOptions::new().with_range(Some(GetRange::Suffix(18))),
        )
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&tail[..], b"and one more line\n");
}

/// A mirrored `history.jsonl` of several read pieces (4 MiB each, several statements in flight
/// per reader): the whole file and ranges across piece boundaries come back in order, byte for
/// byte, from the mirror alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_mirrored_streams_are_read_in_parallel_pieces_in_order() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(1)
        .steps(40_000)
        .keys(20)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let options = SyncOptions {
        artifacts: false,
        ..SyncOptions::default()
    };
    let report = sync(
        &engine(client(&emu), &db.mirror, options),
        &format!("{ENTITY}/{PROJECT}"),
    )
    .await;
    assert!(report.is_success(), "{report:#?}");
    let store = WandbStore::builder(client(&emu))
        .with_source(Arc::new(MirrorSource::new(db.mirror.clone())))
        .build();
    let key = &emu.runs(ENTITY, PROJECT)[0];
    let expected = expected_jsonl(&emu.history_rows(key).unwrap());
    let piece = 4 << 20;
    assert!(
        expected.len() > 3 * piece,
        "the file spans several pieces: {} bytes",
        expected.len()
    );
    emu.reset_counters();
    let path = format!("{ENTITY}/{PROJECT}/{}/history.jsonl", key.name);
    let whole = get(&store, &path).await;
    assert!(whole == expected, "the whole file differs");
    let location = Path::parse(&path).unwrap();
    for range in [
        piece - 7..piece + 11,
        3..2 * piece + 1,
        piece..3 * piece,
        expected.len() - piece - 5..expected.len(),
    ] {
        let got = store
            .get_opts(
                &location,
                GetOptions::new().with_range(Some(GetRange::Bounded(
                    range.start as u64..range.end as u64,
                ))),
            )
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            got[..] == expected[range.clone()],
            "range {range:?} differs"
        );
    }
    assert_eq!(graphql_requests(&emu), 0, "{:?}", emu.counters());
}
