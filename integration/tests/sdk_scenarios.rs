//! End-to-end with the real wandb SDK (0.31.0): write runs, resume one, read everything back in
//! a new process — also under a 30 % storm of 429s — and check credentials never reach the
//! direct (signed-URL) listener or the request log.

mod support;

use support::{Sandbox, TEST_KEY};
use wandb_emulator::{
    Emulator, EmulatorConfig, FaultScope, FaultSettings, Listener, RateLimitFault, RouteKind,
    RunKey,
};

#[test]
fn sdk_writes_resumes_and_reads_back() {
    let emu = Emulator::start_with(
        EmulatorConfig::default()
            .api_key(TEST_KEY)
            .entity("e2e-user"),
    )
    .expect("emulator");
    let sandbox = Sandbox::new();
    let manifest = sandbox.path("manifest.json");
    let manifest_arg = manifest.to_str().expect("utf8 path");
    let env = [("SCENARIO_PROJECT", "e2e")];

    sandbox.run_ok(
        "write_runs.py",
        &[manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &env,
    );
    sandbox.run_ok(
        "resume_run.py",
        &[manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &env,
    );

    // Server-side ground truth agrees with what the SDK wrote.
    let manifest_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let main = RunKey::new(
        "e2e-user",
        "e2e",
        manifest_json["main"].as_str().expect("main id"),
    );
    let info = emu.run_info(&main).expect("main run exists");
    assert_eq!(info.state, "finished");
    assert_eq!(info.history_line_count, 2100);
    assert_eq!(info.last_step, Some(2099));
    assert!(
        info.files
            .iter()
            .any(|(n, size, _)| n == "sub/dir/data.bin" && *size == 70_000),
        "{:?}",
        info.files
    );
    assert_eq!(emu.runs("e2e-user", "e2e").len(), 6);
    let artifact = emu
        .artifact_version("e2e-user", "e2e", "main-dataset:first-cut")
        .expect("the main run logged its artifact");
    assert_eq!(
        (
            artifact.version,
            artifact.file_count,
            artifact.aliases.clone()
        ),
        (Some(0), 2, vec!["first-cut".to_string(), "latest".into()])
    );
    assert_eq!(artifact.created_by, Some(main.clone()));
    let writes = emu.counters();
    assert!(
        writes.operation("UpsertBucket") >= 6,
        "{:?}",
        writes.by_operation
    );
    assert_eq!(
        writes.operation("RunResumeStatus"),
        1,
        "{:?}",
        writes.by_operation
    );
    assert!(writes.operation("CreateRunFiles") >= 1 && writes.route(RouteKind::Upload) >= 6);
    assert!(writes.route(RouteKind::FileStream) >= 6);
    assert_eq!(
        writes.operation("MarkRunFilesUploaded"),
        1,
        "run.upload_file() commits the file"
    );

    emu.reset_counters();
    sandbox.run_ok(
        "read_runs.py",
        &[manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &[],
    );
    let reads = emu.counters();
    assert!(
        reads.operation("Runs") >= 3,
        "paged listing: {:?}",
        reads.by_operation
    );
    assert!(
        reads.operation("HistoryPage") >= 3,
        "{:?}",
        reads.by_operation
    );
    assert!(
        reads.route(RouteKind::Download) >= 2,
        "file.download() goes through the authenticated url"
    );

    // The direct listener served the directUrl fetches and never saw a credential; every
    // authenticated route did.
    let records = emu.requests();
    let direct: Vec<_> = records
        .iter()
        .filter(|r| r.listener == Listener::Direct)
        .collect();
    assert!(direct.len() >= 2, "directUrl fetched: {direct:?}");
    assert!(
        direct.iter().all(|r| !r.authorization_present),
        "credentials reached the direct listener: {direct:?}"
    );
    assert!(
        records
            .iter()
            .filter(|r| matches!(r.kind, RouteKind::Graphql | RouteKind::Download))
            .all(|r| r.authorization_present)
    );
    let log_text = serde_json::to_string(&records).expect("serialise log");
    assert!(
        !log_text.contains(TEST_KEY) && !log_text.contains("TestKey0123"),
        "the request log holds the key"
    );

    // 30 % of GraphQL requests answered 429 with Retry-After: 0.2 — the SDK retries and the
    // whole read scenario still passes.
    emu.reset_counters();
    emu.set_faults(FaultSettings {
        rate_limit: Some(RateLimitFault {
            fraction: 0.3,
            retry_after: "0.2".into(),
            scope: FaultScope::Graphql,
        }),
        ..FaultSettings::default()
    });
    sandbox.run_ok(
        "read_runs.py",
        &[manifest_arg],
        emu.base_url(),
        TEST_KEY,
        &[],
    );
    let stormy = emu.requests();
    let limited = stormy.iter().filter(|r| r.status == 429).count();
    let graphql = stormy
        .iter()
        .filter(|r| r.kind == RouteKind::Graphql)
        .count();
    assert!(
        limited >= 5,
        "only {limited} of {graphql} GraphQL requests were rate limited"
    );
    assert!(
        stormy
            .iter()
            .filter(|r| r.status == 429)
            .all(|r| r.kind == RouteKind::Graphql && r.fault.as_deref() == Some("rate_limit")),
        "429s are scoped to GraphQL"
    );
    eprintln!("429 storm: {limited} of {graphql} GraphQL requests limited, read scenario passed");
    emu.set_faults(FaultSettings::default());
}
