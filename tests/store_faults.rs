//! `WandbStore` under the emulator's fault injection: 429 storms with `Retry-After`, 5xx
//! bursts, connection resets and truncated bodies are ridden out; a poisoned run fails within
//! the retry budget with a message naming the path; a wrong key is `Unauthenticated` after
//! exactly one request.

mod store_support;

use std::time::Instant;

use object_store::{GetRange, ObjectStore, ObjectStoreExt};
use store_support::*;
use wandb_emulator::{
    ErrorBurst, FaultScope, FaultSettings, RateLimitFault, RequestFault, RouteKind,
};
use wandbfs::store::WandbStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_ridden_out() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[0].clone();
    let run = run_prefix(&key);
    let history = expected_history(&emu, &key);
    let file = emu.run_file_bytes(&key, "large/blob-1GiB.bin").unwrap();

    // A 429 storm on 30 % of every route's requests, honouring a fractional Retry-After. With
    // 10 attempts a request fails only after 10 429s in a row (p ≈ 6e-6).
    emu.set_faults(FaultSettings {
        rate_limit: Some(RateLimitFault {
            fraction: 0.3,
            retry_after: "0.05".into(),
            scope: FaultScope::All,
        }),
        ..FaultSettings::default()
    });
    let mut config = client_config();
    config.retry.max_attempts = 10;
    let store = WandbStore::new(client_with(&emu, KEY, config));
    let listed = list_all(&store, "alice/seeded").await;
    assert_eq!(
        listed.len(),
        4 * 5
            + emu
                .runs("alice", PROJECT)
                .iter()
                .map(|k| emu.run_info(k).unwrap().files.len())
                .sum::<usize>()
    );
    assert_eq!(
        get_bytes(&store, &format!("{run}/history.jsonl")).await,
        history
    );
    assert_eq!(
        get_range(
            &store,
            &format!("{run}/large/blob-1GiB.bin"),
            GetRange::Bounded(1000..500_000)
        )
        .await,
        file[1000..500_000]
    );
    let limited = emu
        .requests()
        .iter()
        .filter(|r| r.fault.as_deref() == Some("rate_limit"))
        .count();
    assert!(limited >= 3, "the storm hit {limited} requests");

    // A burst of 503s on GraphQL, then resets on every route, then a body cut in half.
    for faults in [
        FaultSettings {
            error_burst: Some(ErrorBurst {
                remaining: 3,
                status: 503,
                scope: FaultScope::Graphql,
            }),
            ..FaultSettings::default()
        },
        FaultSettings {
            reset: Some(RequestFault::next(3, FaultScope::All)),
            ..FaultSettings::default()
        },
        FaultSettings {
            truncate: Some(RequestFault::next(1, FaultScope::Downloads)),
            ..FaultSettings::default()
        },
    ] {
        emu.set_faults(faults.clone());
        emu.reset_counters();
        let fresh = store_support::store(&emu);
        assert_eq!(
            get_bytes(&fresh, &format!("{run}/history.jsonl")).await,
            history,
            "{faults:?}"
        );
        assert_eq!(
            get_bytes(&fresh, &format!("{run}/large/blob-1GiB.bin")).await,
            file,
            "{faults:?}"
        );
        let faulted = emu.requests().iter().filter(|r| r.fault.is_some()).count();
        assert!(faulted >= 1, "no fault was applied for {faults:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_run_fails_within_the_retry_budget() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[1].clone();
    let run = run_prefix(&key);
    emu.set_poisoned(&key, true);
    let store = store(&emu);

    emu.reset_counters();
    let start = Instant::now();
    let path = format!("{run}/history.jsonl");
    let err = store.get(&p(&path)).await.unwrap_err();
    let elapsed = start.elapsed();
    let text = err.to_string();
    assert!(
        matches!(err, object_store::Error::Generic { .. }),
        "{err:?}"
    );
    assert!(text.contains(&path), "{text}");
    assert!(
        text.contains("5 attempts") && text.contains("502"),
        "{text}"
    );
    assert_eq!(
        emu.counters().operation("HistoryPage"),
        5,
        "bounded: max_attempts"
    );
    eprintln!("the poisoned run failed after {elapsed:?}");

    // The rest of the run stays readable, and listings report the failure instead of hiding it.
    assert!(
        !get_bytes(&store, &format!("{run}/summary.json"))
            .await
            .is_empty()
    );
    assert!(
        !get_bytes(&store, &format!("{run}/output.log"))
            .await
            .is_empty()
    );
    assert!(store.list_with_delimiter(Some(&p(&run))).await.is_err());

    // Healed: the next read succeeds (failures are not cached).
    emu.set_poisoned(&key, false);
    assert_eq!(get_bytes(&store, &path).await, expected_history(&emu, &key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_is_unauthenticated_without_retries() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[0].clone();
    let run = run_prefix(&key);
    let store = WandbStore::new(client(
        &emu,
        "local-NotTheKey0123456789abcdefghijklmnopqrstuvwxyz",
    ));

    for path in [
        format!("{run}/output.log"),
        format!("{run}/history.jsonl"),
        format!("{run}/metadata.json"),
    ] {
        emu.reset_counters();
        let err = store.head(&p(&path)).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::Unauthenticated { .. }),
            "{path}: {err}"
        );
        assert!(err.to_string().contains(&path), "{err}");
        let c = emu.counters();
        assert_eq!(
            c.total.requests, 1,
            "{path}: 401 is final: {:?}",
            c.by_operation
        );
        assert_eq!(c.route(RouteKind::Graphql), 1);
    }
    emu.reset_counters();
    let err = store.list_with_delimiter(None).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::Unauthenticated { .. }),
        "{err}"
    );
    assert_eq!(emu.counters().total.requests, 1);
}
