//! Artifacts end-to-end with the real wandb SDK (0.31.0): `log_artifact` twice (the unchanged
//! file is not uploaded again), a model, `use_artifact`; then, in a new process, downloads by
//! `latest`/`v0`/custom alias, listings, logged/used artifacts, files and the manifest. The
//! emulator's own state and request log are checked against what the SDK did.

mod support;

use std::time::Instant;

use support::{Sandbox, TEST_KEY};
use wandb_emulator::artifacts::manifest::Manifest;
use wandb_emulator::{Emulator, EmulatorConfig, Listener, RouteKind, RunKey};

const ENTITY: &str = "art-user";
const PROJECT: &str = "arts";

/// The bytes `scenarios/artifacts.py` logs (kept in sync by the byte comparisons below).
fn a0() -> Vec<u8> {
    "alpha — the unchanged file\n".repeat(3).into_bytes()
}
fn b0() -> Vec<u8> {
    b"beta version zero\n".to_vec()
}
fn b1() -> Vec<u8> {
    b"beta version one, longer than before\n".repeat(5)
}

fn count(records: &[wandb_emulator::RequestRecord], pred: impl Fn(&str) -> bool) -> usize {
    records
        .iter()
        .filter(|r| r.kind == RouteKind::Upload && pred(&r.path))
        .count()
}

#[test]
fn sdk_logs_artifacts_and_reads_them_back() {
    let started = Instant::now();
    let emu = Emulator::start_with(EmulatorConfig::default().api_key(TEST_KEY).entity(ENTITY))
        .expect("emulator");
    let sandbox = Sandbox::new();
    let manifest = sandbox.path("manifest.json");
    let manifest_arg = manifest.to_str().expect("utf8 path");
    let env = [("SCENARIO_PROJECT", PROJECT)];

    sandbox.run_ok(
        "artifacts.py",
        &["log", manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &env,
    );
    let runs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let run = |k: &str| RunKey::new(ENTITY, PROJECT, runs[k].as_str().expect("run id"));

    // --- The write path, as the request log saw it.
    let writes = emu.requests();
    let ops = emu.counters();
    assert_eq!(ops.operation("CreateArtifact"), 3, "{:?}", ops.by_operation);
    assert_eq!(ops.operation("CommitArtifact"), 3, "{:?}", ops.by_operation);
    assert_eq!(
        ops.operation("CreateArtifactManifest"),
        6,
        "twice per version"
    );
    assert!(ops.operation("CreateArtifactFiles") >= 3);
    assert_eq!(ops.operation("UseArtifact"), 1, "{:?}", ops.by_operation);
    assert!(
        ops.operation("ArtifactByID") >= 1,
        "wait() reads the version back"
    );
    // The unchanged a.txt was uploaded once for both versions; sub/b.txt changed, so twice.
    assert_eq!(
        count(&writes, |p| p.ends_with("/a.txt")),
        1,
        "a.txt uploads"
    );
    assert_eq!(count(&writes, |p| p.ends_with("/sub/b.txt")), 2);
    assert_eq!(count(&writes, |p| p.ends_with("/weights.bin")), 1);
    assert_eq!(
        count(&writes, |p| p.starts_with("/_upload/artifact/manifest/")),
        3
    );
    assert!(
        writes
            .iter()
            .filter(|r| r.kind == RouteKind::Upload)
            .all(|r| !r.authorization_present && r.status == 200),
        "uploads are signed, unauthenticated and succeed"
    );

    // --- The emulator's state.
    assert_eq!(emu.artifact_types(ENTITY, PROJECT), ["dataset", "model"]);
    let collections = emu.artifact_collections(ENTITY, PROJECT);
    let data = collections
        .iter()
        .find(|c| c.name == "scenario-data")
        .expect("collection");
    assert_eq!(data.versions, [0, 1]);
    assert_eq!(
        data.aliases
            .iter()
            .map(|(a, v)| (a.as_str(), *v))
            .collect::<Vec<_>>(),
        [("candidate", 0), ("latest", 1), ("newest", 1)]
    );
    let bytes = |alias: &str, path: &str| {
        emu.artifact_file_bytes(ENTITY, PROJECT, &format!("scenario-data:{alias}"), path)
            .map(|b| b.to_vec())
    };
    assert_eq!(bytes("v0", "a.txt"), Some(a0()));
    assert_eq!(bytes("v0", "sub/b.txt"), Some(b0()));
    assert_eq!(bytes("latest", "a.txt"), Some(a0()));
    assert_eq!(bytes("newest", "sub/b.txt"), Some(b1()));
    let v0 = emu
        .artifact_version(ENTITY, PROJECT, "scenario-data:v0")
        .expect("v0");
    let v1 = emu
        .artifact_version(ENTITY, PROJECT, "scenario-data:latest")
        .expect("v1");
    assert_eq!(v1.version, Some(1));
    // The stored manifest is the SDK's; its MANIFEST_MD5 digest is the version's digest.
    let stored = emu
        .artifact_manifest(ENTITY, PROJECT, "scenario-data:v1")
        .expect("manifest");
    let parsed = Manifest::parse(stored.as_bytes()).expect("parses");
    assert_eq!(parsed.digest(), v1.digest);
    assert_eq!(
        parsed.entries["a.txt"].birth_artifact_id.as_deref(),
        Some(v0.id.as_str()),
        "the deduplicated file keeps v0 as its birth artifact"
    );
    assert_eq!(v1.size, (a0().len() + b1().len()) as u64);
    let logged: Vec<_> = emu
        .run_output_artifacts(&run("writer1"))
        .into_iter()
        .map(|a| format!("{}:v{}", a.collection, a.version.unwrap_or(99)))
        .collect();
    assert_eq!(logged, ["scenario-data:v1", "scenario-model:v0"]);
    let used: Vec<_> = emu
        .run_input_artifacts(&run("reader"))
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(used, std::slice::from_ref(&v0.id));
    let write_secs = started.elapsed().as_secs_f64();

    // --- Reading back in a new process, with an empty artifact cache (the writer's process
    // cached what it uploaded, which would hide the downloads).
    emu.reset_counters();
    let read_cache = sandbox.path("read-cache");
    let read_cache = read_cache.to_str().expect("utf8 path");
    let out = sandbox.run_ok(
        "artifacts.py",
        &["read", manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &[
            ("SCENARIO_PROJECT", PROJECT),
            ("WANDB_CACHE_DIR", read_cache),
            ("WANDB_DATA_DIR", read_cache),
        ],
    );
    let summary: serde_json::Value = serde_json::from_str(
        out.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .expect("summary line"),
    )
    .expect("summary json");
    assert_eq!(summary["latest_id"], v1.id.as_str());
    assert_eq!(summary["v0_id"], v0.id.as_str());
    assert_eq!(summary["latest_digest"], v1.digest.as_str());
    assert_eq!(summary["v0_digest"], v0.digest.as_str());

    let reads = emu.requests();
    let ops = emu.counters();
    for op in [
        "ArtifactMembershipByName",
        "FetchArtifactManifest",
        "GetArtifactMembershipFileUrls",
        "ArtifactMembershipFiles",
        "ProjectArtifactTypes",
        "ProjectArtifactType",
        "ArtifactTypeArtifactCollections",
        "ProjectArtifacts",
        "RunOutputArtifacts",
        "RunInputArtifacts",
        "ArtifactCollectionAliases",
        "AddAliases",
        "DeleteAliases",
        "UpdateArtifact",
    ] {
        assert!(
            ops.operation(op) >= 1,
            "{op} not used: {:?}",
            ops.by_operation
        );
    }
    // Manifests and files came from the direct listener, never with credentials: three
    // manifests, then a.txt once (v1 and v0 share it: the second time it is in the SDK's
    // cache) and both versions of sub/b.txt. The get_entry() fallback went to the
    // authenticated /artifactsV2 route.
    let direct: Vec<_> = reads
        .iter()
        .filter(|r| r.listener == Listener::Direct)
        .collect();
    let named = |suffix: &str| direct.iter().filter(|r| r.path.ends_with(suffix)).count();
    assert_eq!(
        (
            named("/wandb_manifest.json"),
            named("/a.txt"),
            named("/b.txt")
        ),
        (3, 1, 2),
        "{direct:?}"
    );
    assert!(
        direct.iter().all(|r| r.kind == RouteKind::SignedDownload
            && !r.authorization_present
            && r.status < 300),
        "{direct:?}"
    );
    let fallback: Vec<_> = reads
        .iter()
        .filter(|r| r.path.starts_with("/artifactsV2/"))
        .collect();
    assert_eq!(fallback.len(), 1, "{fallback:?}");
    assert!(
        fallback[0].authorization_present
            && fallback[0].kind == RouteKind::Download
            && fallback[0].status == 200
    );
    // The read scenario ended by moving an alias with `artifact.save()`.
    let data = emu
        .artifact_collections(ENTITY, PROJECT)
        .into_iter()
        .find(|c| c.name == "scenario-data")
        .expect("collection");
    assert_eq!(
        data.aliases
            .iter()
            .map(|(a, v)| (a.as_str(), *v))
            .collect::<Vec<_>>(),
        [("golden", 0), ("latest", 1), ("newest", 1)]
    );
    eprintln!(
        "artifacts SDK scenario: log {write_secs:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
