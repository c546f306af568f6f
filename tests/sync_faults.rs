//! Error isolation: a project synced through a storm of 429s, 5xx bursts, connection resets
//! and truncated bodies, with one poisoned run whose history always answers 502. Every other
//! run is mirrored exactly; the poisoned one is recorded (attempts, last error), reported, then
//! skipped by later syncs until retried.

mod sync_support;

use std::time::Duration;

use sync_support::*;
use wandb_emulator::{
    Emulator, EmulatorConfig, ErrorBurst, FaultScope, FaultSettings, RateLimitFault, RequestFault,
    SeedSpec,
};
use wandbfs::client::{Client, Environment, Overrides, RetryConfig, settings};
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "stormy";

/// Enough attempts that a non-poisoned request cannot plausibly fail every one of them under
/// the storm below (≈ 0.3¹² per request), with waits short enough for a test.
fn patient_client(emu: &Emulator) -> Client {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(secrecy::SecretString::from(emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).expect("settings");
    let mut config = client_config();
    config.retry = RetryConfig {
        max_attempts: 12,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        max_retry_after: Duration::from_millis(50),
        total_timeout: Duration::from_secs(60),
    };
    Client::new(settings, config).expect("client")
}

fn storm() -> FaultSettings {
    FaultSettings {
        rate_limit: Some(RateLimitFault {
            fraction: 0.2,
            retry_after: "0.01".into(),
            scope: FaultScope::Graphql,
        }),
        error_burst: Some(ErrorBurst {
            remaining: 6,
            status: 503,
            scope: FaultScope::Graphql,
        }),
        reset: Some(RequestFault::fraction(0.04, FaultScope::Graphql)),
        truncate: Some(RequestFault::fraction(0.04, FaultScope::Graphql)),
        ..FaultSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_run_fails_alone_under_a_storm() {
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(10)
        .steps(400)
        .keys(6)
        .files(3)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let poisoned = emu.runs(ENTITY, PROJECT)[4].clone();
    emu.set_poisoned(&poisoned, true);
    emu.set_faults({
        let mut f = storm();
        f.poisoned_runs.insert(poisoned.clone());
        f
    });
    let db = database().await;
    let options = SyncOptions {
        max_run_failures: 1,
        history_page_rows: 100,
        ..SyncOptions::default()
    };
    let engine = engine(patient_client(&emu), &db.mirror, options.clone());
    let target = format!("{ENTITY}/{PROJECT}");

    let report = sync(&engine, &target).await;
    assert!(!report.is_success());
    assert_eq!(report.runs_synced, 9, "{report:#?}");
    assert_eq!(report.runs_failed, 1, "{report:#?}");
    let failure = &report.failures[0];
    assert_eq!(failure.run, format!("{poisoned}"));
    assert!(!failure.skipped && failure.consecutive_failures == 1);
    // The last of its attempts met either the poison (502) or the storm (429).
    assert!(failure.error.contains("HistoryPage"), "{}", failure.error);
    assert!(
        report.api.retries > 10,
        "the storm was real: {:?}",
        report.api
    );
    let counters = emu.counters();
    assert!(counters.total.errors > 10, "{counters:?}");
    assert_mirror_matches_except(&emu, &db, ENTITY, PROJECT, &[&poisoned.name]).await;
    let run = db
        .mirror
        .resolve_run(ENTITY, PROJECT, &poisoned.name)
        .await
        .unwrap()
        .unwrap();
    let state = db.mirror.run_sync_state(run).await.unwrap();
    assert_eq!((state.attempts, state.consecutive_errors), (1, 1));
    assert!(state.last_error.unwrap().contains("HistoryPage"));

    // The next sync does not spend the retry budget on it again, and still reports it.
    emu.set_faults({
        let mut f = FaultSettings::default();
        f.poisoned_runs.insert(poisoned.clone());
        f
    });
    emu.reset_counters();
    let report = sync(&engine, &target).await;
    assert!(!report.is_success());
    assert_eq!(
        (report.runs_failed, report.runs_skipped),
        (0, 1),
        "{report:#?}"
    );
    assert!(report.failures[0].skipped);
    assert_eq!(emu.counters().operation("HistoryPage"), 0);

    // Healed and retried on request: everything matches.
    emu.set_poisoned(&poisoned, false);
    let engine = engine.with_options(SyncOptions {
        retry_failed: true,
        ..options
    });
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.runs_synced, 1);
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
    let state = db.mirror.run_sync_state(run).await.unwrap();
    assert_eq!((state.attempts, state.consecutive_errors), (2, 0));
}
