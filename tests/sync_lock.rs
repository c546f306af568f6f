//! One sync writes a project at a time: a second sync of the same project into the same
//! mirror (another process, another machine on a shared database) leaves it alone with a clear
//! error instead of interleaving with the first.

mod sync_support;

use std::time::Duration;

use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, FaultScope, FaultSettings, LatencyFault, SeedSpec};
use wandbfs::sync::{SyncOptions, SyncReport};

const ENTITY: &str = "emulator";
const PROJECT: &str = "locked";

fn busy(report: &SyncReport) -> bool {
    report.projects.iter().any(|p| {
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("another `wandbfs sync` is syncing emulator/locked"))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sync_of_a_project_leaves_it_to_the_first() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(4)
        .steps(200)
        .keys(5)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let run_target = format!("{target}/{}", emu.runs(ENTITY, PROJECT)[0].name);
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    assert!(sync(&engine, &target).await.is_success());
    let project = db
        .mirror
        .resolve_project(ENTITY, PROJECT)
        .await
        .unwrap()
        .expect("project mirrored");

    // Another sync holds the project (its lock is a server-side session lock, so a guard from
    // this process stands for any other process): both target kinds leave it alone.
    let held = db
        .mirror
        .try_lock_project_sync(project)
        .await
        .unwrap()
        .expect("the lock is free between syncs");
    assert!(
        db.mirror
            .try_lock_project_sync(project)
            .await
            .unwrap()
            .is_none(),
        "a second session cannot take it"
    );
    emu.append_history(
        &emu.runs(ENTITY, PROJECT)[0],
        &(200..260)
            .map(|s| format!(r#"{{"_step":{s},"loss":0.5}}"#))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for t in [&target, &run_target] {
        let report = sync(&engine, t).await;
        assert!(busy(&report), "{report:#?}");
        assert_eq!((report.rows, report.runs_synced), (0, 0), "{report:#?}");
    }

    // Released (the holder finished, or died: its connection closes either way), the next
    // sync catches up.
    drop(held);
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.rows, 60, "{report:#?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // Two engines at once: while a slow sync (50 ms per request) holds the project, the other
    // is turned away; the first completes and the mirror is exact.
    emu.set_faults(FaultSettings {
        latency: Some(LatencyFault {
            delay: Duration::from_millis(50),
            scope: FaultScope::All,
        }),
        ..FaultSettings::default()
    });
    let slow = self::engine(
        client(&emu),
        &db.mirror,
        SyncOptions {
            full: true,
            ..SyncOptions::default()
        },
    );
    let first = {
        let target = target.clone();
        tokio::spawn(async move { sync(&slow, &target).await })
    };
    // Wait for it to hold the lock, looking at pg_locks (taking the lock to test it could turn
    // the slow sync away instead).
    let observer = db.mirror.pool().get().await.unwrap();
    let mut waited = Duration::ZERO;
    loop {
        let held: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
                 AND objsubid = 2 AND classid::bigint = $1 AND objid::bigint = $2",
                &[&0x7761_6e64_i64, &project.0],
            )
            .await
            .unwrap()
            .get(0);
        if held == 1 {
            break;
        }
        assert!(
            waited < Duration::from_secs(30),
            "the slow sync never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        waited += Duration::from_millis(5);
    }
    let second = sync(&engine, &target).await;
    assert!(busy(&second), "{second:#?}");
    let first = first.await.unwrap();
    assert!(first.is_success(), "{first:#?}");
    emu.set_faults(FaultSettings::default());
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}
