//! The W&B client against the real emulator (`wandb-emulator`, started in-process): every typed
//! operation on seeded data and on data logged by the real SDK, API-call counts from the
//! emulator's counters, and retry behaviour under its fault injection.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use secrecy::SecretString;
use wandb_emulator::{
    Emulator, EmulatorConfig, ErrorBurst, FaultScope, Listener, RateLimitFault, RequestFault,
    RouteKind, RunKey, SeedSpec,
};
use wandbfs::client::{
    ByteRange, Client, ClientConfig, Environment, Error, FileLocation, Overrides, RateLimitConfig,
    RetryConfig, RunFields, RunFilesQuery, RunsQuery, settings,
};

const PROJECT: &str = "proj";

fn config() -> ClientConfig {
    ClientConfig {
        retry: RetryConfig {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(2),
            total_timeout: Duration::from_secs(60),
        },
        rate: RateLimitConfig {
            requests_per_second: 0.0,
            burst: 1,
            honour_server_headers: true,
        },
        ..ClientConfig::default()
    }
}

fn client_with_key(emu: &Emulator, key: &str) -> Client {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(SecretString::from(key.to_owned())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).expect("settings");
    Client::new(settings, config()).expect("client")
}

fn seeded() -> Emulator {
    let spec = SeedSpec::new("emulator", PROJECT)
        .runs(12)
        .steps(250)
        .keys(6)
        .files(5)
        .bigfile(8 << 20);
    Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator starts")
}

fn key(entity: &str, run: &str) -> RunKey {
    RunKey {
        entity: entity.to_owned(),
        project: PROJECT.to_owned(),
        name: run.to_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_operation_on_seeded_data() {
    let emu = seeded();
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();

    let viewer = c.viewer().await.unwrap();
    assert_eq!(viewer.entity.as_deref(), Some(entity.as_str()));
    assert_eq!(c.get_viewer().await.unwrap().entity, viewer.entity);
    emu.reset_counters();
    assert_eq!(c.default_entity().await.unwrap(), entity);
    assert_eq!(c.clone().default_entity().await.unwrap(), entity);
    assert_eq!(
        emu.counters().operation("GetDefaultEntity"),
        1,
        "cached across clones"
    );
    c.server_features().await.unwrap();

    let projects: Vec<_> = c.projects(&entity).try_collect().await.unwrap();
    assert!(projects.iter().any(|p| p.name == PROJECT), "{projects:?}");
    assert!(c.project(&entity, PROJECT).await.unwrap().is_some());
    assert!(
        c.project(&entity, "no-such-project")
            .await
            .unwrap()
            .is_none()
    );

    // Listing: 12 runs at 5 per page = 3 Runs calls, every run exactly once.
    emu.reset_counters();
    let runs: Vec<_> = c
        .runs(&RunsQuery::new(&entity, PROJECT).per_page(5))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(emu.counters().operation("Runs"), 3);
    let listed: BTreeSet<_> = runs.iter().map(|r| r.name.clone()).collect();
    let truth: BTreeSet<_> = emu
        .runs(&entity, PROJECT)
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(listed, truth);
    assert_eq!(runs.len(), truth.len());
    let running: BTreeSet<_> = c
        .runs(&RunsQuery::new(&entity, PROJECT).filters(r#"{"state": "running"}"#))
        .map_ok(|r| r.name)
        .try_collect()
        .await
        .unwrap();
    let truth_running: BTreeSet<_> = emu
        .runs(&entity, PROJECT)
        .into_iter()
        .filter(|k| emu.run_info(k).unwrap().state == "running")
        .map(|k| k.name)
        .collect();
    assert_eq!(running, truth_running);
    assert!(!running.is_empty());
    let missing = c
        .runs_page(&RunsQuery::new(&entity, "nope"), None)
        .await
        .unwrap_err();
    assert!(missing.is_not_found(), "{missing}");

    // One run in full, its history and files.
    let name = runs[0].name.clone();
    let k = key(&entity, &name);
    let info = emu.run_info(&k).unwrap();
    let run = c
        .run(&entity, PROJECT, &name, RunFields::Full, true)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(run.config.as_deref(), Some(info.config.as_str()));
    assert_eq!(run.summary_metrics.as_deref(), Some(info.summary.as_str()));
    assert_eq!(run.updated_at.as_deref(), Some(info.updated_at.as_str()));
    assert_eq!(run.last_step(), info.last_step);
    assert!(
        c.run(&entity, PROJECT, "nope", RunFields::Full, false)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        c.run_state(&entity, PROJECT, &name)
            .await
            .unwrap()
            .as_deref(),
        Some(info.state.as_str())
    );
    let keys = c
        .history_keys(&entity, PROJECT, &name)
        .await
        .unwrap()
        .unwrap();
    let last = keys.last_step.unwrap();
    assert_eq!(Some(last), info.last_step);

    emu.reset_counters();
    let mut rows = Vec::new();
    let mut lo = 0;
    while lo <= last {
        let hi = (lo + 100).min(last + 1);
        rows.extend(
            c.history_page(&entity, PROJECT, &name, lo, hi)
                .await
                .unwrap(),
        );
        lo = hi;
    }
    assert_eq!(
        rows,
        emu.history_rows(&k).unwrap(),
        "every row, unsampled, in order"
    );
    assert_eq!(emu.counters().operation("HistoryPage"), 3);
    let events = c.events(&entity, PROJECT, &name, 100_000).await.unwrap();
    assert_eq!(events, emu.events_rows(&k).unwrap());
    let parquet = c
        .parquet_history(&entity, PROJECT, &name, &["_step"])
        .await
        .unwrap();
    assert!(parquet.parquet_urls.len() <= 1);

    // Files: listing, single lookup, bytes by url and directUrl.
    let files: Vec<_> = c
        .run_files(&RunFilesQuery::new(&entity, PROJECT, &name).per_page(2))
        .try_collect()
        .await
        .unwrap();
    let names: BTreeSet<_> = files.iter().map(|f| f.name.clone()).collect();
    let truth: BTreeSet<_> = info.files.iter().map(|f| f.0.clone()).collect();
    assert_eq!(names, truth);
    let page = c
        .run_files_page(&RunFilesQuery::new(&entity, PROJECT, &name), None)
        .await
        .unwrap();
    assert_eq!(page.file_count, Some(info.files.len() as i64));
    let pattern: Vec<_> = c
        .run_files(&RunFilesQuery::new(&entity, PROJECT, &name).pattern("media/%"))
        .try_collect()
        .await
        .unwrap();
    assert!(!pattern.is_empty() && pattern.iter().all(|f| f.name.starts_with("media/")));
    assert!(
        c.run_file(&entity, PROJECT, &name, "nope.txt")
            .await
            .unwrap()
            .is_none()
    );
    let small = files.iter().find(|f| f.name == "config.yaml").unwrap();
    let truth_bytes = emu.run_file_bytes(&k, "config.yaml").unwrap();
    let by_url = c
        .download_bytes(
            &FileLocation::Authenticated(small.url.clone().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_url, truth_bytes);
    let by_direct = c
        .download_bytes(
            &FileLocation::Direct(small.direct_url.clone().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(by_direct, truth_bytes);
    emu.reset_counters();
    let head = c
        .head(&FileLocation::Direct(small.direct_url.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(head.size, truth_bytes.len() as u64);
    emu.reset_counters();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranged_reads_of_a_big_file_cost_one_request_and_only_the_range() {
    let emu = seeded();
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();
    // The seed puts the big file on the first run.
    let (k, big) = {
        let mut found = None;
        for k in emu.runs(&entity, PROJECT) {
            let files: Vec<_> = c
                .run_files(&RunFilesQuery::new(&entity, PROJECT, &k.name))
                .try_collect()
                .await
                .unwrap();
            if let Some(f) = files.into_iter().find(|f| f.name.starts_with("large/")) {
                found = Some((k, f));
                break;
            }
        }
        found.expect("a run with the big file")
    };
    let size = big.size_bytes.unwrap();
    for location in [
        FileLocation::Authenticated(big.url.clone().unwrap()),
        FileLocation::Direct(big.direct_url.clone().unwrap()),
    ] {
        for (range, expect) in [
            (
                ByteRange::Bounded(1_000_000..1_004_096),
                1_000_000..1_004_096,
            ),
            (ByteRange::Offset(size - 10), size - 10..size),
            (ByteRange::Suffix(4096), size - 4096..size),
        ] {
            emu.reset_counters();
            let bytes = c.download_bytes(&location, Some(range)).await.unwrap();
            let truth = emu
                .run_file_range(&k, &big.name, expect.start, expect.end)
                .unwrap();
            assert_eq!(bytes, truth);
            let counters = emu.counters();
            assert_eq!(counters.total.requests, 1, "{location:?}");
            assert!(counters.total.bytes_sent <= expect.end - expect.start + 1024);
        }
    }
    // Credentials: never on the signed-URL listener; always on the API listener.
    for record in emu.requests() {
        match record.listener {
            Listener::Direct => assert!(!record.authorization_present, "{record:?}"),
            Listener::Main => assert!(record.authorization_present, "{record:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_under_injected_faults() {
    let emu = seeded();
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();
    let truth = emu.runs(&entity, PROJECT).len();

    // 429 storm on GraphQL: half of all requests, Retry-After 0.05 s.
    emu.reset_counters();
    emu.update_faults(|f| {
        f.rate_limit = Some(RateLimitFault {
            fraction: 0.5,
            retry_after: "0.05".into(),
            scope: FaultScope::Graphql,
        })
    });
    let mut c_patient = config();
    c_patient.retry.max_attempts = 30;
    let patient = {
        let overrides = Overrides {
            base_url: Some(emu.base_url().to_owned()),
            api_key: Some(SecretString::from(emu.api_key())),
            ..Overrides::default()
        };
        Client::new(
            settings::resolve(&overrides, &Environment::isolated()).unwrap(),
            c_patient,
        )
        .unwrap()
    };
    let runs: Vec<_> = patient
        .runs(&RunsQuery::new(&entity, PROJECT).per_page(2))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(runs.len(), truth);
    assert!(
        emu.counters().route(RouteKind::Graphql) > 6,
        "some requests were rate limited"
    );
    emu.update_faults(|f| f.rate_limit = None);

    // A burst of 503s, then connection resets: both ride out.
    emu.update_faults(|f| {
        f.error_burst = Some(ErrorBurst {
            remaining: 3,
            status: 503,
            scope: FaultScope::Graphql,
        })
    });
    emu.reset_counters();
    c.viewer().await.unwrap();
    // Faulted requests are answered before the emulator parses the operation, so count routes.
    assert_eq!(emu.counters().route(RouteKind::Graphql), 4);
    emu.update_faults(|f| f.reset = Some(RequestFault::next(2, FaultScope::Graphql)));
    c.viewer().await.unwrap();

    // Truncated download bodies resume.
    let name = runs[0].name.clone();
    let file = c
        .run_file(&entity, PROJECT, &name, "config.yaml")
        .await
        .unwrap()
        .unwrap();
    emu.update_faults(|f| f.truncate = Some(RequestFault::next(1, FaultScope::Downloads)));
    let bytes = c
        .download_bytes(
            &FileLocation::Direct(file.direct_url.clone().unwrap()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        bytes,
        emu.run_file_bytes(&key(&entity, &name), "config.yaml")
            .unwrap()
    );
    let signed: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.kind == RouteKind::SignedDownload)
        .collect();
    assert_eq!(
        signed.len(),
        2,
        "one truncated transfer, one resumed transfer: {signed:?}"
    );
    assert_eq!(signed[0].fault.as_deref(), Some("truncate"));

    // A poisoned run fails after exactly max_attempts, naming the operation and the status.
    emu.set_faults(Default::default());
    emu.set_poisoned(&key(&entity, &name), true);
    emu.reset_counters();
    let err = c
        .history_page(&entity, PROJECT, &name, 0, 100)
        .await
        .unwrap_err();
    match &err {
        Error::RetriesExhausted {
            operation,
            attempts,
            last_status,
            ..
        } => {
            assert_eq!(operation, "HistoryPage");
            assert_eq!(*attempts, 5);
            assert_eq!(*last_status, Some(502));
        }
        other => panic!("{other}"),
    }
    assert_eq!(emu.counters().route(RouteKind::Graphql), 5);

    // A wrong key: Unauthenticated, one request, no retry, and the key is in no log line.
    emu.reset_counters();
    let wrong = "local-wrongwrongwrongwrongwrongwrongwrongwrong";
    let err = client_with_key(&emu, wrong).viewer().await.unwrap_err();
    assert!(matches!(err, Error::Unauthenticated { .. }), "{err}");
    assert_eq!(emu.counters().total.requests, 1);
    assert!(!err.to_string().contains(wrong));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_signed_urls_are_refetched_by_the_caller() {
    let emu = seeded();
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();
    let name = emu.runs(&entity, PROJECT)[0].name.clone();
    let file = c
        .run_file(&entity, PROJECT, &name, "config.yaml")
        .await
        .unwrap()
        .unwrap();
    emu.revoke_signed_urls();
    let err = c
        .download_bytes(
            &FileLocation::Direct(file.direct_url.clone().unwrap()),
            None,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UrlExpired { .. }), "{err}");
    let fresh = c
        .run_file(&entity, PROJECT, &name, "config.yaml")
        .await
        .unwrap()
        .unwrap();
    let bytes = c
        .download_bytes(&FileLocation::Direct(fresh.direct_url.unwrap()), None)
        .await
        .unwrap();
    assert_eq!(
        bytes,
        emu.run_file_bytes(&key(&entity, &name), "config.yaml")
            .unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_and_delete_run_files() {
    let emu = seeded();
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();
    let name = emu.runs(&entity, PROJECT)[0].name.clone();
    let created = c
        .create_run_files(&entity, PROJECT, &name, &["notes/new.txt".to_owned()])
        .await
        .unwrap();
    assert_eq!(created.files.len(), 1);
    let target = created.files[0].upload_url.clone().unwrap();
    c.upload(
        &target,
        &created.upload_headers,
        bytes::Bytes::from_static(b"hello"),
    )
    .await
    .unwrap();
    assert!(
        emu.requests()
            .iter()
            .filter(|r| r.kind == RouteKind::Upload)
            .all(|r| !r.authorization_present)
    );
    let file = c
        .run_file(&entity, PROJECT, &name, "notes/new.txt")
        .await
        .unwrap()
        .expect("uploaded file is listed");
    assert_eq!(file.size_bytes, Some(5));
    let page = c
        .run_files_page(&RunFilesQuery::new(&entity, PROJECT, &name), None)
        .await
        .unwrap();
    assert!(
        c.delete_files(&[file.id], page.project_internal_id)
            .await
            .unwrap()
    );
    assert!(
        c.run_file(&entity, PROJECT, &name, "notes/new.txt")
            .await
            .unwrap()
            .is_none()
    );
}

/// Logs an artifact with the real SDK (0.31.0) into the emulator; returns the run id.
fn log_artifact_with_sdk(emu: &Emulator, dir: &std::path::Path) -> String {
    let python = std::env::var("WANDBFS_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        std::path::Path::new(&python).exists(),
        "the pinned SDK venv is required: {python} (set WANDBFS_PYTHON)"
    );
    let script = r#"
import os, wandb
run = wandb.init(project="arts", entity=os.environ["EMU_ENTITY"])
with open("a.txt", "w") as f:
    f.write("hello a\n")
os.makedirs("sub", exist_ok=True)
with open("sub/b.bin", "wb") as f:
    f.write(bytes(range(256)) * 4)
art = wandb.Artifact("ds", type="dataset")
art.add_file("a.txt")
art.add_file("sub/b.bin", name="sub/b.bin")
run.log_artifact(art, aliases=["best"])
run.finish()
print("RUN_ID=" + run.id)
"#;
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir)
        .env("WANDB_DIR", dir)
        .env("WANDB_CONFIG_DIR", dir.join("cfg"))
        .env("WANDB_CACHE_DIR", dir.join("cache"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDB_SILENT", "true")
        .env("EMU_ENTITY", emu.entity())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "SDK failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("RUN_ID="))
        .expect("run id printed")
        .trim()
        .to_owned()
}

// Artifacts logged by the real SDK, read back through every artifact operation of the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_logged_by_the_real_sdk() {
    let emu = Emulator::start().expect("emulator starts");
    let dir = tempfile::tempdir().unwrap();
    let run_id = log_artifact_with_sdk(&emu, dir.path());
    let c = client_with_key(&emu, &emu.api_key());
    let entity = emu.entity();

    let types: Vec<_> = c
        .artifact_types(&entity, "arts")
        .try_collect()
        .await
        .unwrap();
    assert!(types.iter().any(|t| t.name == "dataset"), "{types:?}");
    assert!(
        c.artifact_type(&entity, "arts", "dataset")
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        c.artifact_type(&entity, "arts", "model")
            .await
            .unwrap()
            .is_none()
    );
    let collections: Vec<_> = c
        .artifact_collections(&entity, "arts", "dataset", &Default::default())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        collections
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["ds"]
    );
    assert_eq!(collections[0].typename, "ArtifactSequence");
    assert!(
        c.artifact_collection(&entity, "arts", "dataset", "ds")
            .await
            .unwrap()
            .is_some()
    );
    let versions: Vec<_> = c
        .artifact_versions(&entity, "arts", "dataset", "ds", None)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].version.as_deref(), Some("v0"));
    let artifact = &versions[0].artifact;
    let aliases: BTreeSet<_> = artifact.aliases.iter().map(|a| a.alias.as_str()).collect();
    assert!(
        aliases.contains("latest") && aliases.contains("best"),
        "{aliases:?}"
    );
    for name in ["ds:latest", "ds:best", "ds:v0"] {
        let m = c
            .artifact_membership(&entity, "arts", name)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.artifact.id, artifact.id, "{name}");
        assert_eq!(m.version_index, Some(0));
    }
    assert!(
        c.artifact_membership(&entity, "arts", "ds:v9")
            .await
            .unwrap()
            .is_none()
    );

    let files: Vec<_> = c
        .artifact_files(&entity, "arts", "ds", "v0", &[])
        .try_collect()
        .await
        .unwrap();
    let names: BTreeSet<_> = files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, BTreeSet::from(["a.txt", "sub/b.bin"]));
    for f in &files {
        let bytes = c
            .download_bytes(&FileLocation::Direct(f.direct_url.clone().unwrap()), None)
            .await
            .unwrap();
        assert_eq!(
            bytes.as_ref(),
            std::fs::read(dir.path().join(&f.name)).unwrap()
        );
    }
    let one: Vec<_> = c
        .artifact_files(&entity, "arts", "ds", "v0", &["a.txt".to_owned()])
        .try_collect()
        .await
        .unwrap();
    assert_eq!(one.len(), 1);
    let urls: Vec<_> = c
        .artifact_file_urls(&entity, "arts", "ds", "v0")
        .try_collect()
        .await
        .unwrap();
    assert_eq!(urls.len(), 2);
    assert!(urls.iter().all(|f| f.direct_url.is_some()));

    let manifest = c.artifact_manifest(&artifact.id).await.unwrap();
    let keys: BTreeSet<_> = manifest.entries.keys().map(String::as_str).collect();
    assert_eq!(keys, names);
    assert_eq!(manifest.entries["a.txt"].size, Some(8));
    if artifact
        .digest_algorithm
        .as_deref()
        .unwrap_or("MANIFEST_MD5")
        == "MANIFEST_MD5"
    {
        assert_eq!(Some(manifest.md5_digest()), artifact.digest);
    }
    let logged: Vec<_> = c
        .run_output_artifacts(&entity, "arts", &run_id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        logged.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        [artifact.id.as_str()]
    );
    let used: Vec<_> = c
        .run_input_artifacts(&entity, "arts", &run_id)
        .try_collect()
        .await
        .unwrap();
    assert!(used.is_empty());
    let by_id = c.artifact_by_id(&artifact.id).await.unwrap().unwrap();
    assert_eq!(by_id.sequence_name.as_deref(), Some("ds"));
    for record in emu.requests() {
        if record.listener == Listener::Direct {
            assert!(!record.authorization_present, "{record:?}");
        }
    }
}
