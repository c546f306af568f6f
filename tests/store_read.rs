//! `WandbStore` reads against the emulator (started in-process) with seeded data: list, get,
//! head and ranges at every level, bytes equal to the emulator's ground truth, the `@` escape
//! for colliding names, preconditions, signed-URL refresh, API calls per operation (emulator
//! counters), and that credentials reach neither signed URLs nor logs.

mod store_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use store_support::*;
use wandb_emulator::{
    Emulator, EmulatorConfig, ErrorBurst, FaultScope, FaultSettings, Listener, RouteKind, RunKey,
    SeedSpec,
};
use wandbfs::store::WandbStore;

fn md5_b64(bytes: &[u8]) -> String {
    use md5::{Digest as _, Md5};
    base64::engine::general_purpose::STANDARD.encode(Md5::digest(bytes))
}

fn names(list: &[object_store::ObjectMeta]) -> Vec<String> {
    list.iter().map(|m| m.location.to_string()).collect()
}

fn parse_time(text: &str) -> DateTime<Utc> {
    wandbfs::client::parse_timestamp(text).expect("emulator timestamps parse")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_level_lists_and_reads_ground_truth() {
    let emu = Emulator::start_with(
        EmulatorConfig::default()
            .api_key(KEY)
            .entity("alice")
            .seed(seed_spec("alice"))
            .seed(
                SeedSpec::new("team-x", "shared")
                    .runs(1)
                    .steps(10)
                    .files(3)
                    .bigfile(0),
            ),
    )
    .expect("emulator");
    let store = store(&emu);
    let runs = emu.runs("alice", PROJECT);
    assert_eq!(runs.len(), 4);

    // Root: the viewer's entity and its teams.
    let root = store.list_with_delimiter(None).await.unwrap();
    let entities: Vec<_> = root.common_prefixes.iter().map(|p| p.to_string()).collect();
    assert_eq!(entities, ["alice", "team-x"]);
    assert!(root.objects.is_empty());

    // Entity: projects.
    let projects = store.list_with_delimiter(Some(&p("alice"))).await.unwrap();
    assert_eq!(projects.common_prefixes, [p("alice/seeded")]);
    let team = store.list_with_delimiter(Some(&p("team-x"))).await.unwrap();
    assert_eq!(team.common_prefixes, [p("team-x/shared")]);

    // Project: runs (no artifacts here, so no `artifacts/`).
    let level = store
        .list_with_delimiter(Some(&p("alice/seeded")))
        .await
        .unwrap();
    let listed: BTreeSet<_> = level
        .common_prefixes
        .iter()
        .map(|p| p.to_string())
        .collect();
    let truth: BTreeSet<_> = runs.iter().map(run_prefix).collect();
    assert_eq!(listed, truth);
    assert!(level.objects.is_empty());

    for key in &runs {
        let info = emu.run_info(key).expect("run info");
        let prefix = run_prefix(key);

        // One level of a run: the synthetic files and the top-level run files; directories
        // for nested names.
        let level = store.list_with_delimiter(Some(&p(&prefix))).await.unwrap();
        let objects: BTreeSet<_> = level
            .objects
            .iter()
            .map(|m| m.location.to_string())
            .collect();
        let mut expected: BTreeSet<String> = [
            "history.jsonl",
            "system.jsonl",
            "summary.json",
            "config.json",
            "metadata.json",
        ]
        .iter()
        .map(|n| format!("{prefix}/{n}"))
        .collect();
        let mut dirs = BTreeSet::new();
        for (name, _, _) in &info.files {
            match name.split_once('/') {
                None => {
                    expected.insert(format!("{prefix}/{name}"));
                }
                Some((dir, _)) => {
                    dirs.insert(format!("{prefix}/{dir}"));
                }
            }
        }
        assert_eq!(objects, expected, "{prefix}");
        let prefixes: BTreeSet<_> = level
            .common_prefixes
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(prefixes, dirs, "{prefix}");

        // Recursive listing: every file with its size and MD5, plus the synthetic files.
        let all = list_all(&store, &prefix).await;
        let by_path: BTreeMap<_, _> = all.iter().map(|m| (m.location.to_string(), m)).collect();
        assert_eq!(all.len(), info.files.len() + 5, "{:?}", names(&all));
        for (name, size, _) in &info.files {
            let path = format!("{prefix}/{name}");
            let meta = by_path
                .get(&path)
                .unwrap_or_else(|| panic!("{path} not listed"));
            let bytes = emu.run_file_bytes(key, name).expect("ground truth");
            assert_eq!(meta.size, *size);
            assert_eq!(
                meta.e_tag.as_deref(),
                Some(md5_b64(&bytes).as_str()),
                "{path}"
            );
            // get = the emulator's bytes; head = the listing's metadata.
            assert_eq!(get_bytes(&store, &path).await, bytes, "{path}");
            let head = store.head(&p(&path)).await.unwrap();
            assert_eq!((head.size, &head.e_tag), (meta.size, &meta.e_tag));
        }

        // Synthetic files: exact sizes in listings and heads, bytes from W&B.
        let history = get_bytes(&store, &format!("{prefix}/history.jsonl")).await;
        assert_eq!(
            history,
            expected_history(&emu, key),
            "{prefix}/history.jsonl"
        );
        assert_eq!(
            history.iter().filter(|b| **b == b'\n').count() as u64,
            info.history_line_count
        );
        for kind in [
            "history.jsonl",
            "system.jsonl",
            "summary.json",
            "config.json",
            "metadata.json",
        ] {
            let path = format!("{prefix}/{kind}");
            let body = get_bytes(&store, &path).await;
            let head = store.head(&p(&path)).await.unwrap();
            let listed = by_path[&path];
            assert_eq!(head.size, body.len() as u64, "{path}");
            assert_eq!(listed.size, body.len() as u64, "{path}");
            assert_eq!(head.e_tag.as_deref(), Some(md5_b64(&body).as_str()));
            assert_eq!(head.last_modified, parse_time(&info.updated_at), "{path}");
        }
        let system = get_bytes(&store, &format!("{prefix}/system.jsonl")).await;
        let events: String = emu
            .events_rows(key)
            .unwrap()
            .iter()
            .map(|r| format!("{r}\n"))
            .collect();
        assert_eq!(system, events.as_bytes());
        let summary = get_bytes(&store, &format!("{prefix}/summary.json")).await;
        assert_eq!(summary, format!("{}\n", info.summary).as_bytes());
        let config: serde_json::Value =
            serde_json::from_slice(&get_bytes(&store, &format!("{prefix}/config.json")).await)
                .unwrap();
        let raw: serde_json::Value = serde_json::from_str(&info.config).unwrap();
        let unwrapped: serde_json::Map<_, _> = raw
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.as_str() != "_wandb")
            .map(|(k, v)| (k.clone(), v["value"].clone()))
            .collect();
        assert_eq!(config, serde_json::Value::Object(unwrapped));
        let metadata: serde_json::Value =
            serde_json::from_slice(&get_bytes(&store, &format!("{prefix}/metadata.json")).await)
                .unwrap();
        assert_eq!(metadata["id"], key.name.as_str());
        assert_eq!(metadata["state"], info.state.as_str());
        assert_eq!(metadata["tags"], serde_json::json!(info.tags));
        assert_eq!(
            metadata["display_name"],
            serde_json::json!(info.display_name)
        );
        assert_eq!(metadata["history_line_count"], info.history_line_count);
        assert_eq!(metadata["last_step"], serde_json::json!(info.last_step));
        assert_eq!(metadata["storage_id"], info.storage_id.as_str());
        assert_eq!(
            metadata["internal_config"]["_wandb"]["cli_version"],
            "0.31.0"
        );
    }

    // Nested pseudo-directories.
    let run0 = run_prefix(&runs[0]);
    let media = store
        .list_with_delimiter(Some(&p(&format!("{run0}/media"))))
        .await
        .unwrap();
    assert!(media.objects.is_empty());
    assert_eq!(media.common_prefixes, [p(&format!("{run0}/media/images"))]);
    let images = store
        .list_with_delimiter(Some(&p(&format!("{run0}/media/images"))))
        .await
        .unwrap();
    assert_eq!(images.objects.len(), 3);
    assert!(images.common_prefixes.is_empty());
    assert_eq!(list_all(&store, &format!("{run0}/media")).await.len(), 3);
    // Listing a file, or a partial name, lists nothing (object_store semantics).
    assert!(
        list_all(&store, &format!("{run0}/output.log"))
            .await
            .is_empty()
    );
    assert!(list_all(&store, &format!("{run0}/medi")).await.is_empty());
    assert!(
        list_all(&store, &format!("{run0}/history.jsonl"))
            .await
            .is_empty()
    );

    // Everything, from the root, lazily: 4 + 1 runs, 5 synthetic files each, every file.
    let everything = list_all(&store, "").await;
    let file_count: usize = emu
        .runs("alice", PROJECT)
        .iter()
        .chain(emu.runs("team-x", "shared").iter())
        .map(|k| emu.run_info(k).unwrap().files.len() + 5)
        .sum();
    assert_eq!(everything.len(), file_count);
    assert_eq!(list_all(&store, "alice").await.len(), file_count - 3 - 5);

    // Ranges of a run file and of history.jsonl: every GetRange kind.
    let big = format!("{run0}/large/blob-1GiB.bin");
    let truth = emu.run_file_bytes(&runs[0], "large/blob-1GiB.bin").unwrap();
    let history_path = format!("{run0}/history.jsonl");
    let history = expected_history(&emu, &runs[0]);
    for (path, truth) in [(&big, &truth[..]), (&history_path, &history[..])] {
        let n = truth.len() as u64;
        let cases = [
            (GetRange::Bounded(10..1000), 10..1000),
            (GetRange::Bounded(n - 5..n + 100), n - 5..n),
            (GetRange::Offset(n - 77), n - 77..n),
            (GetRange::Suffix(123), n - 123..n),
            (GetRange::Suffix(n + 5), 0..n),
        ];
        for (range, expected) in cases {
            let result = store
                .get_opts(&p(path), GetOptions::new().with_range(Some(range.clone())))
                .await
                .unwrap();
            assert_eq!(result.range, expected, "{path} {range}");
            assert_eq!(result.meta.size, n);
            let bytes = result.bytes().await.unwrap();
            assert_eq!(bytes, truth[expected.start as usize..expected.end as usize]);
        }
        let err = store
            .get_opts(
                &p(path),
                GetOptions::new().with_range(Some(GetRange::Offset(n))),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().contains(path.as_str()), "{err}");
        let ranges = store
            .get_ranges(&p(path), &[0..3, 5..9, 100..200])
            .await
            .unwrap();
        assert_eq!(ranges[2], truth[100..200]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_calls_per_operation() {
    let emu = seeded();
    let runs = emu.runs("alice", PROJECT);
    let run = run_prefix(&runs[1]);
    let store = store(&emu);

    // head of a run file: one RunFiles call, no download.
    emu.reset_counters();
    let log = format!("{run}/output.log");
    let meta = store.head(&p(&log)).await.unwrap();
    let c = emu.counters();
    assert_eq!(
        (c.total.requests, c.operation("RunFiles")),
        (1, 1),
        "{:?}",
        c.by_operation
    );

    // A ranged read within the cache TTL: exactly one signed download of exactly the range.
    emu.reset_counters();
    let bytes = get_range(&store, &log, GetRange::Bounded(5..25)).await;
    assert_eq!(bytes.len(), 20);
    let c = emu.counters();
    assert_eq!(c.total.requests, 1, "{:?}", emu.requests());
    assert_eq!(c.route(RouteKind::SignedDownload), 1);
    assert_eq!(c.by_route[&RouteKind::SignedDownload].bytes_sent, 20);
    assert!(meta.size > 25);

    // A failed precondition downloads nothing.
    emu.reset_counters();
    let err = store
        .get_opts(
            &p(&log),
            GetOptions::new().with_if_match(Some("stale".to_owned())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::Precondition { .. }),
        "{err}"
    );
    let err = store
        .get_opts(
            &p(&log),
            GetOptions::new().with_if_none_match(meta.e_tag.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotModified { .. }),
        "{err}"
    );
    store
        .get_opts(
            &p(&log),
            GetOptions::new().with_if_match(meta.e_tag.clone()),
        )
        .await
        .unwrap();
    assert_eq!(emu.counters().route(RouteKind::SignedDownload), 1);

    // head of history.jsonl: one Run and one HistoryPage (120 steps < 1,000 per page); the
    // second head, and the get after it, are served from cache: no call at all.
    emu.reset_counters();
    let history = format!("{run}/history.jsonl");
    let first = store.head(&p(&history)).await.unwrap();
    let c = emu.counters();
    assert_eq!(
        (
            c.total.requests,
            c.operation("Run"),
            c.operation("HistoryPage")
        ),
        (2, 1, 1),
        "{:?}",
        c.by_operation
    );
    emu.reset_counters();
    let second = store.head(&p(&history)).await.unwrap();
    let body = get_bytes(&store, &history).await;
    assert_eq!(emu.counters().total.requests, 0);
    assert_eq!(
        (first.size, second.size),
        (body.len() as u64, body.len() as u64)
    );
    assert_eq!(first.e_tag, second.e_tag);

    // Listing a run directory on a fresh store: RunFiles + Run + HistoryPage + events.
    let fresh = store_support::store(&emu);
    emu.reset_counters();
    fresh.list_with_delimiter(Some(&p(&run))).await.unwrap();
    let c = emu.counters();
    assert_eq!(c.total.requests, 4, "{:?}", c.by_operation);
    for op in ["RunFiles", "Run", "HistoryPage", "RunFullHistory"] {
        assert_eq!(c.operation(op), 1, "{op}: {:?}", c.by_operation);
    }
    // … after which reading any of its files costs one download and no GraphQL.
    emu.reset_counters();
    get_bytes(&fresh, &format!("{run}/config.yaml")).await;
    get_bytes(&fresh, &format!("{run}/summary.json")).await;
    let c = emu.counters();
    assert_eq!((c.total.requests, c.route(RouteKind::Graphql)), (1, 0));

    // History pages follow `history_page_steps`: 120 steps at 50 per page = 3 pages, each
    // asking for samples = window (never downsampled).
    let paged = builder(&emu).with_history_page_steps(50).build();
    emu.reset_counters();
    assert_eq!(get_bytes(&paged, &history).await, body);
    assert_eq!(emu.counters().operation("HistoryPage"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_synthetic_files_revalidate_after_the_ttl() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[2].clone();
    let history = format!("{}/history.jsonl", run_prefix(&key));
    let store = builder(&emu)
        // Long enough that the steps meant to fall inside it do on a loaded 2-core machine.
        .with_cache_ttl(Duration::from_secs(2))
        .build();
    let before = get_bytes(&store, &history).await;

    // Past the TTL, an unchanged run costs one Run call and no history page.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    emu.reset_counters();
    assert_eq!(
        store.head(&p(&history)).await.unwrap().size,
        before.len() as u64
    );
    let c = emu.counters();
    assert_eq!(
        (c.operation("Run"), c.operation("HistoryPage")),
        (1, 0),
        "{:?}",
        c.by_operation
    );

    // New rows: within the TTL the cached file is still served; after it, re-rendered.
    let rows = [
        r#"{"_step":120,"loss":NaN,"extra":{"n":1}}"#.to_owned(),
        r#"{"_step":121,"loss":0.5,"extra":{"n":2.0}}"#.to_owned(),
    ];
    emu.append_history(&key, &rows).unwrap();
    assert_eq!(
        store.head(&p(&history)).await.unwrap().size,
        before.len() as u64
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let after = get_bytes(&store, &history).await;
    assert_eq!(after, expected_history(&emu, &key));
    assert!(after.ends_with(b"{\"_step\":121,\"loss\":0.5,\"extra\":{\"n\":2.0}}\n"));
    assert_eq!(
        after.len(),
        before.len() + rows.iter().map(|r| r.len() + 1).sum::<usize>()
    );

    // With caching disabled every read asks W&B again.
    let uncached = builder(&emu).with_cache_ttl(Duration::ZERO).build();
    emu.reset_counters();
    uncached.head(&p(&history)).await.unwrap();
    uncached.head(&p(&history)).await.unwrap();
    assert_eq!(emu.counters().operation("Run"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_read_of_a_1gib_file_moves_only_the_range() {
    let emu = Emulator::start_with(
        EmulatorConfig::default().api_key(KEY).entity("alice").seed(
            SeedSpec::new("alice", "big")
                .runs(1)
                .steps(5)
                .files(3)
                .bigfile(1 << 30),
        ),
    )
    .expect("emulator");
    let key = emu.runs("alice", "big")[0].clone();
    let path = format!("{}/large/blob-1GiB.bin", run_prefix(&key));
    let store = store(&emu);

    emu.reset_counters();
    let start = 700 << 20;
    let bytes = get_range(&store, &path, GetRange::Bounded(start..start + (1 << 20))).await;
    let c = emu.counters();
    assert!(c.total.requests <= 2, "{:?}", emu.requests());
    assert_eq!(c.operation("RunFiles"), 1);
    assert_eq!(c.by_route[&RouteKind::SignedDownload].bytes_sent, 1 << 20);
    assert_eq!(
        bytes,
        emu.run_file_range(&key, "large/blob-1GiB.bin", start, start + (1 << 20))
            .unwrap()
    );

    // The tail and a head: one request for the tail, none for the head; no body beyond it.
    emu.reset_counters();
    let tail = get_range(&store, &path, GetRange::Suffix(4096)).await;
    assert_eq!(
        tail,
        emu.run_file_range(&key, "large/blob-1GiB.bin", (1 << 30) - 4096, 1 << 30)
            .unwrap()
    );
    let head = store.head(&p(&path)).await.unwrap();
    assert_eq!(head.size, 1 << 30);
    let c = emu.counters();
    assert_eq!(c.total.requests, 1);
    assert_eq!(c.total.bytes_sent, 4096);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_signed_urls_are_refreshed_once() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[0].clone();
    let path = format!("{}/wandb-metadata.json", run_prefix(&key));
    let truth = emu.run_file_bytes(&key, "wandb-metadata.json").unwrap();
    let store = store(&emu);
    assert_eq!(get_bytes(&store, &path).await, truth);

    // Every URL minted so far is refused: one 403, one RunFiles for a fresh URL, one success.
    emu.revoke_signed_urls();
    emu.reset_counters();
    assert_eq!(get_bytes(&store, &path).await, truth);
    let c = emu.counters();
    assert_eq!(
        c.route(RouteKind::SignedDownload),
        2,
        "{:?}",
        emu.requests()
    );
    assert_eq!(c.by_route[&RouteKind::SignedDownload].errors, 1);
    assert_eq!(c.operation("RunFiles"), 1);

    // A storage host that keeps refusing: the refresh is tried once, then a clear error.
    emu.set_faults(FaultSettings {
        error_burst: Some(ErrorBurst {
            remaining: 2,
            status: 403,
            scope: FaultScope::Downloads,
        }),
        ..FaultSettings::default()
    });
    emu.reset_counters();
    let err = store.get(&p(&path)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&path) && text.contains("refused"), "{text}");
    let c = emu.counters();
    assert_eq!(c.route(RouteKind::SignedDownload), 2);
    assert_eq!(c.operation("RunFiles"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn colliding_names_stay_reachable_through_the_escape() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[3].clone();
    let run = run_prefix(&key);
    emu.put_run_file(&key, "summary.json", "a real file called summary.json")
        .unwrap();
    emu.put_run_file(&key, "@odd.txt", "starts with an at sign")
        .unwrap();
    emu.put_run_file(&key, "history.jsonl/inner.txt", "below a reserved name")
        .unwrap();
    emu.put_run_file(&key, "bad//name.txt", "an empty segment")
        .unwrap();
    emu.put_run_file(&key, "ctl\u{1}.txt", "a control character")
        .unwrap();
    emu.put_run_file(&key, "%41 #[x].txt", "literal percent and specials")
        .unwrap();
    let special = RunKey::new("alice", PROJECT, "artifacts");
    emu.create_run(&special);
    emu.put_run_file(&special, "f.txt", "in the run called artifacts")
        .unwrap();
    let store = store(&emu);

    let level = store.list_with_delimiter(Some(&p(&run))).await.unwrap();
    let objects = names(&level.objects);
    for expected in ["summary.json", "@summary.json", "@@odd.txt", "%41 #[x].txt"] {
        assert!(
            objects.contains(&format!("{run}/{expected}")),
            "{expected}: {objects:?}"
        );
    }
    assert!(
        level
            .common_prefixes
            .contains(&p(&format!("{run}/@history.jsonl"))),
        "{:?}",
        level.common_prefixes
    );
    let all = names(&list_all(&store, &run).await);
    assert!(
        !all.iter().any(|n| n.contains("bad") || n.contains("ctl")),
        "{all:?}"
    );

    assert_eq!(
        get_bytes(&store, &format!("{run}/@summary.json")).await,
        "a real file called summary.json"
    );
    assert_eq!(
        get_bytes(&store, &format!("{run}/summary.json")).await,
        format!("{}\n", emu.run_info(&key).unwrap().summary)
    );
    assert_eq!(
        get_bytes(&store, &format!("{run}/@@odd.txt")).await,
        "starts with an at sign"
    );
    assert_eq!(
        get_bytes(&store, &format!("{run}/@history.jsonl/inner.txt")).await,
        "below a reserved name"
    );
    assert_eq!(
        get_bytes(&store, &format!("{run}/%41 #[x].txt")).await,
        "literal percent and specials"
    );
    // `@odd.txt` unescaped names nothing; neither does a path below a synthetic file.
    for missing in [
        "@odd.txt",
        "history.jsonl/inner.txt",
        "@nothing",
        "A #[x].txt",
    ] {
        let err = store
            .head(&p(&format!("{run}/{missing}")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{missing}: {err}"
        );
    }

    // The run called `artifacts`.
    let project = store
        .list_with_delimiter(Some(&p("alice/seeded")))
        .await
        .unwrap();
    assert!(
        project
            .common_prefixes
            .contains(&p("alice/seeded/@artifacts"))
    );
    assert!(
        !project
            .common_prefixes
            .contains(&p("alice/seeded/artifacts"))
    );
    assert_eq!(
        get_bytes(&store, "alice/seeded/@artifacts/f.txt").await,
        "in the run called artifacts"
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&get_bytes(&store, "alice/seeded/@artifacts/metadata.json").await)
            .unwrap();
    assert_eq!(meta["id"], "artifacts");
    assert!(list_all(&store, "alice/seeded/artifacts").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_and_refused_operations() {
    let emu = seeded();
    let store = store(&emu);
    let run = run_prefix(&emu.runs("alice", PROJECT)[0]);
    for missing in [
        "nobody",
        "nobody/proj/run/history.jsonl",
        "alice/nope/run/file.txt",
        "alice/seeded/nope/history.jsonl",
        "alice/seeded/nope/output.log",
        &format!("{run}/no-such-file"),
        &format!("{run}/media"),
        "alice/seeded",
        "alice/seeded/artifacts/dataset/ds/v0/a.txt",
    ] {
        let err = store.head(&p(missing)).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{missing}: {err}"
        );
        assert!(err.to_string().contains(missing), "{err}");
        let err = store.get(&p(missing)).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{missing}: {err}"
        );
    }
    for empty in [
        "nobody",
        "alice/nope",
        "alice/seeded/nope",
        "alice/seeded/artifacts",
    ] {
        assert!(list_all(&store, empty).await.is_empty(), "{empty}");
        let level = store.list_with_delimiter(Some(&p(empty))).await.unwrap();
        assert!(
            level.objects.is_empty() && level.common_prefixes.is_empty(),
            "{empty}"
        );
    }

    // Object versions do not exist in W&B.
    let err = store
        .get_opts(
            &p(&format!("{run}/output.log")),
            GetOptions::new().with_version(Some("1".to_owned())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotSupported { .. }),
        "{err}"
    );

    // Read-only by default, with a message that says how to enable writes.
    let target = p(&format!("{run}/new.txt"));
    let err = store.put(&target, PutPayload::from("x")).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("with_writes"), "{err}");
    let err = store
        .delete(&p(&format!("{run}/output.log")))
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    let err = store
        .copy(&p(&format!("{run}/output.log")), &target)
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    let err = store.put_multipart(&target).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
    assert!(
        emu.run_file_bytes(&emu.runs("alice", PROJECT)[0], "output.log")
            .is_some()
    );

    // Writable store: synthetic files, artifacts and directories stay read-only; only
    // unconditional writes exist.
    let writable = builder(&emu).with_writes(true).build();
    for path in [
        format!("{run}/history.jsonl"),
        format!("{run}/config.json"),
        "alice/seeded/artifacts/dataset/ds/v0/a.txt".to_owned(),
        "alice/seeded".to_owned(),
    ] {
        let err = writable
            .put(&p(&path), PutPayload::from("x"))
            .await
            .unwrap_err();
        assert!(
            matches!(err, object_store::Error::PermissionDenied { .. }),
            "{path}: {err}"
        );
    }
    let err = writable
        .put_opts(
            &target,
            PutPayload::from("x"),
            object_store::PutMode::Create.into(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::NotImplemented { .. }),
        "{err}"
    );
    assert!(
        emu.run_file_bytes(&emu.runs("alice", PROJECT)[0], "new.txt")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_upload_and_delete_run_files() {
    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[1].clone();
    let run = run_prefix(&key);
    let store = builder(&emu).with_writes(true).build();
    // Warm the caches so the test proves writes invalidate them.
    let before = list_all(&store, &run).await.len();

    let path = p(&format!("{run}/uploads/é/data.bin"));
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    emu.reset_counters();
    let put = store
        .put(&path, PutPayload::from(body.clone()))
        .await
        .unwrap();
    let c = emu.counters();
    assert_eq!(
        (c.operation("CreateRunFiles"), c.route(RouteKind::Upload)),
        (1, 1)
    );
    assert!(
        emu.requests()
            .iter()
            .filter(|r| r.kind == RouteKind::Upload)
            .all(|r| !r.authorization_present),
        "uploads go to signed URLs without credentials"
    );
    assert_eq!(put.e_tag.as_deref(), Some(md5_b64(&body).as_str()));
    assert_eq!(
        emu.run_file_bytes(&key, "uploads/é/data.bin").unwrap(),
        body
    );
    assert_eq!(get_bytes(&store, path.as_ref()).await, body);
    assert_eq!(store.head(&path).await.unwrap().e_tag, put.e_tag);
    assert_eq!(list_all(&store, &run).await.len(), before + 1);

    // A run file named like a synthetic one is written through its escaped path.
    let escaped = p(&format!("{run}/@metadata.json"));
    store.put(&escaped, PutPayload::from("mine")).await.unwrap();
    assert_eq!(emu.run_file_bytes(&key, "metadata.json").unwrap(), "mine");

    store.delete(&path).await.unwrap();
    assert!(emu.run_file_bytes(&key, "uploads/é/data.bin").is_none());
    let err = store.head(&path).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
    let err = store.delete(&path).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");

    // Copy from a synthetic file into a run file, and rename.
    let copy = p(&format!("{run}/copies/history.jsonl"));
    store
        .copy(&p(&format!("{run}/history.jsonl")), &copy)
        .await
        .unwrap();
    assert_eq!(
        emu.run_file_bytes(&key, "copies/history.jsonl").unwrap(),
        expected_history(&emu, &key)
    );
    let renamed = p(&format!("{run}/copies/renamed.jsonl"));
    store.rename(&copy, &renamed).await.unwrap();
    assert!(emu.run_file_bytes(&key, "copies/history.jsonl").is_none());
    assert_eq!(
        emu.run_file_bytes(&key, "copies/renamed.jsonl").unwrap(),
        expected_history(&emu, &key)
    );
    // Renaming a file onto itself keeps it (copy-then-delete would delete it).
    store.rename(&renamed, &renamed).await.unwrap();
    assert_eq!(
        emu.run_file_bytes(&key, "copies/renamed.jsonl").unwrap(),
        expected_history(&emu, &key)
    );

    // Writing into a run that does not exist fails with a clear error and writes nothing.
    let err = store
        .put(&p("alice/seeded/no-such-run/x.txt"), PutPayload::from("x"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-run"), "{err}");
}

/// Captures `tracing` output of the current thread.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A full session — listings, reads, ranges, a refused signed URL, writes, a wrong key —
/// with debug logging captured: the signed-URL listener never sees an Authorization header
/// and no log line, error or `Debug`/`Display` output contains the key.
#[tokio::test(flavor = "current_thread")]
async fn credentials_reach_neither_signed_urls_nor_logs() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let emu = seeded();
    let key = emu.runs("alice", PROJECT)[0].clone();
    let run = run_prefix(&key);
    let store = builder(&emu).with_writes(true).build();
    let mut texts = vec![format!("{store}"), format!("{store:?}")];
    list_all(&store, "alice").await;
    get_bytes(&store, &format!("{run}/history.jsonl")).await;
    get_range(
        &store,
        &format!("{run}/large/blob-1GiB.bin"),
        GetRange::Suffix(1000),
    )
    .await;
    emu.revoke_signed_urls();
    get_bytes(&store, &format!("{run}/output.log")).await;
    store
        .put(&p(&format!("{run}/up.txt")), PutPayload::from("up"))
        .await
        .unwrap();
    let wrong: WandbStore = WandbStore::new(client(
        &emu,
        "local-WrongKey0123456789abcdefghijklmnopqrstuvwxyz",
    ));
    let err = wrong.list_with_delimiter(None).await.unwrap_err();
    assert!(
        matches!(err, object_store::Error::Unauthenticated { .. }),
        "{err}"
    );
    texts.push(err.to_string());
    texts.push(format!("{err:?}"));
    texts.push(
        wrong
            .get(&p(&format!("{run}/output.log")))
            .await
            .unwrap_err()
            .to_string(),
    );

    let direct: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Direct)
        .collect();
    assert!(direct.len() >= 3, "{direct:?}");
    assert!(
        direct.iter().all(|r| !r.authorization_present),
        "{direct:?}"
    );

    let log = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains(&format!("{run}/history.jsonl")),
        "debug log captured: {log}"
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY}"));
    for text in texts.iter().chain([&log]) {
        assert!(!text.contains(KEY), "key leaked: {text}");
        assert!(!text.contains(&basic), "Basic credentials leaked: {text}");
        assert!(
            !text.contains("WrongKey0123456789"),
            "wrong key leaked: {text}"
        );
    }
}
