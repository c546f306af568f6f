//! Sync-engine cases found in a correctness review, against the emulator and a throwaway
//! Postgres: each test failed before its fix.

mod sync_support;

use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "review";

fn seeded(runs: u64, steps: u64) -> Emulator {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(runs)
        .steps(steps)
        .keys(8)
        .files(2);
    Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator starts")
}

fn run_key(emu: &Emulator, index: usize) -> RunKey {
    emu.runs(ENTITY, PROJECT)[index].clone()
}

/// Rows `0..n` unlike the seeded ones (other keys, other values).
fn other_rows(n: i64) -> Vec<String> {
    (0..n)
        .map(|s| format!(r#"{{"_step":{s},"second_life":{},"nan":NaN}}"#, s * 7))
        .collect()
}

/// A run deleted and created again under the same id with a *longer* history: the mirrored
/// last step is not past W&B's, so only a shrinking history used to trigger a re-fetch, and
/// the mirror kept the old run's rows below its last step under the new run's tail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recreated_under_the_same_id_is_fetched_again() {
    let emu = seeded(3, 100);
    let db = database().await;
    let engine = engine(client(&emu), &db.mirror, SyncOptions::default());
    let target = format!("{ENTITY}/{PROJECT}");
    assert!(sync(&engine, &target).await.is_success());

    let run = run_key(&emu, 1);
    assert!(emu.delete_run(&run));
    assert!(emu.create_run(&run));
    emu.append_history(&run, &other_rows(250)).unwrap();
    emu.set_state(&run, "finished").unwrap();
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("created again")),
        "{report:#?}"
    );
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;

    // The next sync has nothing left to do for it.
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!((report.rows, report.warnings.len()), (0, 0), "{report:#?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}
