//! State survives a restart with the same `--data-dir`: written runs, appended rows to seeded
//! runs, uploaded bytes, edits, and signed URLs (the signing secret persists). Seeds are not
//! re-applied.

mod support;

use serde_json::json;
use support::TEST_KEY;
use support::gql::Gql;
use wandb_emulator::{Emulator, EmulatorConfig, RunKey, SeedSpec};

fn config(dir: &std::path::Path) -> EmulatorConfig {
    EmulatorConfig::default()
        .api_key(TEST_KEY)
        .data_dir(dir)
        .seed(
            SeedSpec::new("emulator", "seeded")
                .runs(3)
                .steps(20)
                .keys(4)
                .files(4)
                .bigfile(0),
        )
}

#[tokio::test]
async fn restart_keeps_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = Emulator::start_with(config(dir.path())).expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    let seeded = emu.runs("emulator", "seeded");
    assert_eq!(seeded.len(), 3);
    emu.append_history(&seeded[1], &["{\"_step\":20,\"late\":NaN}".to_string()])
        .expect("append");
    emu.set_tags(&seeded[2], &["kept"]).expect("tags");
    let written = RunKey::new("emulator", "other", "w1");
    gql.data(
        "mutation { upsertBucket(input: {name: \"w1\", modelName: \"other\", config: \"{\\\"a\\\":{\\\"value\\\":1}}\"}) { bucket { id } } }",
        json!({}),
    )
    .await;
    emu.put_run_file(&written, "out/model.bin", vec![7u8; 5000])
        .expect("file");
    let resp = gql
        .http
        .post(format!("{}/files/emulator/other/w1/file_stream", emu.base_url()))
        .header("Authorization", gql.basic())
        .body(json!({"files": {"wandb-history.jsonl": {"offset": 0, "content": ["{\"_step\":0,\"v\":Infinity}"]}}, "complete": true, "exitcode": 0}).to_string())
        .send()
        .await
        .expect("file_stream");
    assert_eq!(resp.status(), 200);
    let data = gql
        .data("query { project(name: \"other\", entityName: \"emulator\") { run(name: \"w1\") { files { edges { node { name directUrl } } } } } }", json!({}))
        .await;
    let direct = data["project"]["run"]["files"]["edges"][0]["node"]["directUrl"]
        .as_str()
        .expect("url")
        .to_string();
    let before: Vec<_> = [&seeded[0], &seeded[1], &seeded[2], &written]
        .iter()
        .map(|k| emu.run_info(k).expect("run"))
        .collect();
    let rows_before = emu.history_rows(&seeded[1]).expect("rows");
    emu.shutdown();

    let emu = Emulator::start_with(config(dir.path())).expect("restarted emulator");
    assert_eq!(
        emu.runs("emulator", "seeded"),
        seeded,
        "seeds are not applied twice"
    );
    let after: Vec<_> = [&seeded[0], &seeded[1], &seeded[2], &written]
        .iter()
        .map(|k| emu.run_info(k).expect("run"))
        .collect();
    assert_eq!(before, after);
    assert_eq!(emu.history_rows(&seeded[1]).expect("rows"), rows_before);
    assert_eq!(rows_before.len(), 21);
    assert_eq!(
        emu.history_rows(&written).expect("rows"),
        ["{\"_step\":0,\"v\":Infinity}"]
    );
    assert_eq!(
        emu.run_file_bytes(&written, "out/model.bin")
            .expect("bytes")
            .as_ref(),
        &[7u8; 5000][..]
    );
    assert_eq!(after[3].state, "finished");
    // The direct listener moved to a new port; the signature (path + secret) is still valid.
    let moved = direct.replacen(
        direct
            .split('/')
            .take(3)
            .collect::<Vec<_>>()
            .join("/")
            .as_str(),
        emu.direct_base_url(),
        1,
    );
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    let resp = gql.get(&moved, false, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.expect("bytes").len(), 5000);
}
