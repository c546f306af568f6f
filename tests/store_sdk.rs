//! `WandbStore` against runs logged by the **real** wandb SDK (0.31.0) into the emulator, cross-
//! checked by the SDK itself: `history.jsonl` equals `run.scan_history()` step for step (NaN,
//! ±Infinity, nested dicts, ints vs floats, an image), `config.json` equals `run.config`,
//! `summary.json` equals `run.summary`, `system.jsonl` the system-metrics stream, and the run
//! files equal what the SDK uploaded.

mod store_support;

use object_store::{ObjectStore, ObjectStoreExt};
use store_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

const ENTITY: &str = "sdk-user";
const PROJECT_E2E: &str = "e2e";
const SYNTHETIC: [&str; 5] = [
    "history.jsonl",
    "system.jsonl",
    "summary.json",
    "config.json",
    "metadata.json",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn synthetic_files_match_the_sdk_on_sdk_logged_runs() {
    let emu = Emulator::start_with(
        EmulatorConfig::default().api_key(KEY).entity(ENTITY).seed(
            SeedSpec::new(ENTITY, "generated")
                .runs(2)
                .steps(1500)
                .keys(12)
                .files(3)
                .bigfile(0),
        ),
    )
    .expect("emulator");
    let sandbox = Sandbox::new();
    let manifest = sandbox.path("manifest.json");
    sandbox.run_ok(
        &emulator_scenario("write_runs.py"),
        &[manifest.to_str().expect("utf-8 path")],
        &emu,
        &[("SCENARIO_PROJECT", PROJECT_E2E)],
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let main = RunKey::new(
        ENTITY,
        PROJECT_E2E,
        manifest["main"].as_str().expect("main id"),
    );
    let aux: Vec<RunKey> = manifest["aux"]
        .as_array()
        .expect("aux runs")
        .iter()
        .map(|a| RunKey::new(ENTITY, PROJECT_E2E, a["id"].as_str().expect("aux id")))
        .collect();
    let generated = emu.runs(ENTITY, "generated");

    let store = store(&emu);
    let mut checked = Vec::new();
    for key in [&main, &aux[1], &aux[3], &generated[0]] {
        let prefix = run_prefix(key);
        let dir = sandbox.path(&format!("files-{}", key.name));
        std::fs::create_dir_all(&dir).expect("mkdir");
        for name in SYNTHETIC {
            let bytes = get_bytes(&store, &format!("{prefix}/{name}")).await;
            std::fs::write(dir.join(name), &bytes).expect("write");
        }
        // Byte for byte what W&B holds (row text, key order, number spelling).
        let history = std::fs::read(dir.join("history.jsonl")).expect("read");
        assert_eq!(history, expected_history(&emu, key), "{prefix}");
        let out = sandbox.run_ok(
            &store_script("cross_check.py"),
            &[&prefix, dir.to_str().expect("utf-8 path")],
            &emu,
            &[],
        );
        assert!(out.contains("OK "), "{out}");
        checked.push(format!("{prefix}: {}", out.trim()));
    }
    println!("SDK cross-check:\n{}", checked.join("\n"));
    let main_history =
        std::fs::read_to_string(sandbox.path(&format!("files-{}/history.jsonl", main.name)))
            .expect("read");
    assert_eq!(main_history.lines().count(), 2000, "{checked:?}");
    // The values the scenario logs at awkward steps are there, as bare tokens.
    assert!(main_history.contains("\"nan_metric\":NaN"));
    assert!(main_history.contains("\"inf_metric\":Infinity"));
    assert!(main_history.contains("\"inf_metric\":-Infinity"));
    assert!(main_history.contains("\"_type\":\"image-file\""));
    let failed_meta: serde_json::Value = serde_json::from_slice(
        &std::fs::read(sandbox.path(&format!("files-{}/metadata.json", aux[3].name)))
            .expect("read"),
    )
    .expect("metadata.json is strict JSON here");
    assert_eq!(failed_meta["state"], "failed");

    // Files the SDK uploaded (a saved file in a subfolder, the image, a file uploaded after
    // the run finished) are listed and read back byte for byte.
    let prefix = run_prefix(&main);
    let listed = list_all(&store, &prefix).await;
    let info = emu.run_info(&main).expect("main run");
    assert_eq!(listed.len(), info.files.len() + SYNTHETIC.len());
    for (name, size, _) in &info.files {
        let path = format!("{prefix}/{name}");
        let meta = store
            .head(&p(&path))
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(meta.size, *size, "{path}");
        assert_eq!(
            get_bytes(&store, &path).await,
            emu.run_file_bytes(&main, name).unwrap()
        );
    }
    let names: Vec<_> = info.files.iter().map(|(n, _, _)| n.as_str()).collect();
    for expected in [
        "sub/dir/data.bin",
        "later/notes.txt",
        "wandb-metadata.json",
        "config.yaml",
    ] {
        assert!(names.contains(&expected), "{expected}: {names:?}");
    }
    assert!(
        names
            .iter()
            .any(|n| n.starts_with("media/images/img_1000_")),
        "{names:?}"
    );
    assert_eq!(
        get_bytes(&store, &format!("{prefix}/later/notes.txt")).await,
        "uploaded after the run finished — ünïcode\n"
    );
    let saved = get_bytes(&store, &format!("{prefix}/sub/dir/data.bin")).await;
    let expected: Vec<u8> = (0..70_000u32).map(|i| ((i * 7 + 3) % 256) as u8).collect();
    assert_eq!(saved, expected);

    // The artifact the SDK logged (`log_artifact`, two files, alias `first-cut`): listed under
    // its version, reachable through both aliases, bytes as the SDK uploaded them.
    let collection = format!("{ENTITY}/{PROJECT_E2E}/artifacts/dataset/main-dataset");
    let versions = store
        .list_with_delimiter(Some(&p(&collection)))
        .await
        .unwrap();
    assert_eq!(versions.common_prefixes, [p(&format!("{collection}/v0"))]);
    let files: Vec<_> = list_all(&store, &format!("{collection}/v0"))
        .await
        .into_iter()
        .map(|m| m.location.to_string())
        .collect();
    assert_eq!(
        files,
        [
            format!("{collection}/v0/images/sample.bin"),
            format!("{collection}/v0/labels.csv")
        ]
    );
    let labels: String = std::iter::once("id,label\n".to_owned())
        .chain((0..50).map(|i| format!("{i},{}\n", i % 3)))
        .collect();
    let sample: Vec<u8> = (0..5_000u32).map(|i| ((i * 31 + 7) % 256) as u8).collect();
    for version in ["v0", "latest", "first-cut"] {
        assert_eq!(
            get_bytes(&store, &format!("{collection}/{version}/labels.csv")).await,
            labels.as_bytes()
        );
        assert_eq!(
            get_bytes(&store, &format!("{collection}/{version}/images/sample.bin")).await,
            sample
        );
    }
}
