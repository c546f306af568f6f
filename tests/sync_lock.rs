//! One sync writes a project at a time: a second sync of the same project into the same
//! mirror (another process, another machine on a shared database) leaves it alone with a clear
//! error instead of interleaving with the first.

mod sync_support;

use std::time::Duration;

use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, FaultScope, FaultSettings, LatencyFault, SeedSpec};
use wandbfs::mirror::{ConnectOptions, Mirror};
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

    // Another sync holds the project (its lock is a server-side session lock, so a guard taken
    // through a second mirror connection stands for any other process): both target kinds
    // leave it alone.
    let other_process = Mirror::connect_config(db.config.clone(), &ConnectOptions::default())
        .await
        .unwrap();
    let held = other_process
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

    // Released (the holder finished), the next sync catches up.
    held.release().await;
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
            !first.is_finished(),
            "the slow sync finished without being seen holding the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = sync(&engine, &target).await;
    assert!(busy(&second), "{second:#?}");
    let first = first.await.unwrap();
    assert!(first.is_success(), "{first:#?}");
    emu.set_faults(FaultSettings::default());
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

/// Syncs that follow each other in one process never find the lock still held by the one
/// before: a finished sync has released it on the server before it returns (a `--watch` round,
/// a script syncing twice, the mount's background sync all do this).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_syncs_in_one_process_are_never_busy() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(2)
        .steps(20)
        .keys(3)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let run_target = format!("{target}/{}", emu.runs(ENTITY, PROJECT)[0].name);
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    for round in 0..100 {
        for t in [&target, &run_target] {
            let report = sync(&engine, t).await;
            assert!(!busy(&report), "round {round}, {t}: {report:#?}");
            assert!(report.is_success(), "round {round}, {t}: {report:#?}");
        }
    }
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

/// A lock dropped without an explicit release (a sync future cancelled mid-way) is released in
/// the background, and the next attempt in the process waits for that instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lock_is_free_for_the_next_attempt_in_the_process() {
    let db = database().await;
    let project = db
        .mirror
        .upsert_project(&wandbfs::mirror::ProjectRecord {
            entity: ENTITY.to_owned(),
            name: "dropped".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    for round in 0..200 {
        let lock = db.mirror.try_lock_project_sync(project).await.unwrap();
        let lock = lock.unwrap_or_else(|| panic!("round {round}: the lock was still held"));
        if round % 2 == 0 {
            drop(lock);
        } else {
            lock.release().await;
        }
    }
    // And a lock that is really held is still refused.
    let held = db.mirror.try_lock_project_sync(project).await.unwrap();
    assert!(held.is_some());
    assert!(
        db.mirror
            .try_lock_project_sync(project)
            .await
            .unwrap()
            .is_none()
    );
}

/// With a wait, a sync queues for the lock instead of being turned away: behind another
/// process (the server's lock queue) and behind a sync of its own process; a lock still held
/// when the wait ends is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_lock_is_taken_when_the_holder_releases_it() {
    let db = database().await;
    let project = db
        .mirror
        .upsert_project(&wandbfs::mirror::ProjectRecord {
            entity: ENTITY.to_owned(),
            name: "queued".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
    let other_process = Mirror::connect_config(db.config.clone(), &ConnectOptions::default())
        .await
        .unwrap();
    for holder in [&other_process, &db.mirror] {
        let held = holder
            .try_lock_project_sync(project)
            .await
            .unwrap()
            .unwrap();
        let waiter = {
            let mirror = db.mirror.clone();
            tokio::spawn(async move {
                mirror
                    .lock_project_sync(project, Duration::from_secs(600))
                    .await
            })
        };
        held.release().await;
        let got = waiter.await.unwrap().unwrap();
        got.expect("taken once released").release().await;
    }
    let held = other_process
        .try_lock_project_sync(project)
        .await
        .unwrap()
        .unwrap();
    let refused = db
        .mirror
        .lock_project_sync(project, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(refused.is_none(), "still held after the wait");
    held.release().await;
}
