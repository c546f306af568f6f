//! The real SDK (0.31.0) against parquet history exports: `scan_history()` of a run whose first
//! rows are exported (three files) and whose resumed tail is live still returns every row with
//! the logged values, and really reads the files (signed downloads on the direct listener).

mod support;

use support::{Sandbox, TEST_KEY};
use wandb_emulator::export::{ExportConfig, ParquetExports};
use wandb_emulator::{Emulator, EmulatorConfig, Listener, RouteKind, RunKey};

#[test]
fn sdk_scan_history_reads_exports_and_the_live_tail() {
    let emu = Emulator::start_with(
        EmulatorConfig::default()
            .api_key(TEST_KEY)
            .entity("sdk-user"),
    )
    .expect("emulator");
    // Exports exist from the start but only cover what was logged when first built.
    let exports = ParquetExports::install(&emu, ExportConfig::immediate().rows_per_file(100));
    let sandbox = Sandbox::new();
    let manifest = sandbox.path("manifest.json");
    let manifest_arg = manifest.to_str().expect("utf8 path");
    let env = [("SCENARIO_PROJECT", "exports")];
    sandbox.run_ok(
        "exports_write.py",
        &[manifest_arg, "write"],
        emu.base_url(),
        TEST_KEY,
        &env,
    );

    let manifest_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let key = RunKey::new(
        "sdk-user",
        "exports",
        manifest_json["id"].as_str().expect("id"),
    );
    assert_eq!(emu.run_info(&key).expect("run").state, "finished");
    let export = exports
        .prepare(emu.app(), &key)
        .expect("the finished run is exported");
    assert_eq!((export.files.len(), export.rows()), (3, 300));

    // The run resumes and logs 50 more steps: they are live, the export stays a snapshot.
    sandbox.run_ok(
        "exports_write.py",
        &[manifest_arg, "resume"],
        emu.base_url(),
        TEST_KEY,
        &env,
    );
    assert_eq!(emu.run_info(&key).expect("run").history_line_count, 350);

    emu.reset_counters();
    let out = sandbox.run_ok(
        "exports_read.py",
        &[manifest_arg, "300"],
        emu.base_url(),
        TEST_KEY,
        &[],
    );
    eprintln!("{out}");
    assert!(out.contains("read 350 rows (300 exported)"), "{out}");
    let counters = emu.counters();
    assert!(
        counters.operation("RunParquetHistory") >= 1,
        "{:?}",
        counters.by_operation
    );
    let downloads: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Direct && r.kind == RouteKind::SignedDownload)
        .collect();
    assert!(
        downloads.len() >= 3,
        "the SDK downloaded the three files: {downloads:?}"
    );
    assert!(
        downloads
            .iter()
            .all(|r| r.status == 200 && !r.authorization_present)
    );
}
