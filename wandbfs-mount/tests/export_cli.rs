//! `wandbfs export` as a real process: a project synced from the emulator is exported as
//! parquet and as JSON Lines, then read back with pyarrow and Python's json (the stack users
//! have): row counts, ints vs floats, NaN/±Infinity, flattened config and summary, one history
//! dataset. JSON Lines history files equal the mirror's `history.jsonl` byte for byte.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use wandb_emulator::{Emulator, RunEdit, RunKey};
use wandbfs::mirror::Stream;
use wandbfs::mirror::testing::{TestDatabase, fresh_database, shared_cluster};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");
const ENTITY: &str = "emulator";
const PROJECT: &str = "exported";

fn wandbfs(emu: &Emulator, db: &TestDatabase, home: &Path, args: &[&str]) -> Output {
    let url = shared_cluster()
        .expect("cluster")
        .cluster()
        .connection_string(&db.name);
    Command::new(WANDBFS)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDBFS_DATABASE_URL", url)
        .stdin(Stdio::null())
        .output()
        .expect("wandbfs runs")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The SDK's Python (`$WANDBFS_PYTHON`, else `<repo>/.venv/bin/python`); the test fails (never
/// skips) without it.
fn python() -> PathBuf {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        path.exists(),
        "Python with pyarrow is missing at {} — set WANDBFS_PYTHON or create the venv",
        path.display()
    );
    path
}

fn alpha_row(step: i64) -> String {
    let special = match step % 50 {
        7 => "NaN".to_string(),
        19 => "Infinity".to_string(),
        33 => "-Infinity".to_string(),
        _ => format!("{:?}", step as f64 * 0.125),
    };
    let img = if step == 5 {
        r#","img":{"_type":"image-file","path":"media/x.png","width":8}"#
    } else {
        ""
    };
    format!(
        r#"{{"_step":{step},"loss":{:?},"epoch":{},"special":{special},"tag":"s{}","nested":{{"a":{step},"b":{{"c":{:?}}}}}{img}}}"#,
        1.0 / (step as f64 + 1.0),
        step / 100,
        step % 3,
        step as f64 * 0.25,
    )
}

fn run_with(emu: &Emulator, name: &str, rows: Vec<String>, config: &str, summary: &str) -> RunKey {
    let key = RunKey::new(ENTITY, PROJECT, name);
    emu.create_run(&key);
    if !rows.is_empty() {
        emu.append_history(&key, &rows).expect("append");
    }
    emu.update_run(
        &key,
        RunEdit {
            state: Some("finished".into()),
            config: Some(config.into()),
            summary: Some(summary.into()),
            tags: Some(vec!["t1".into(), "t2".into()]),
            ..RunEdit::default()
        },
    )
    .expect("edit");
    key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_reads_back_with_pyarrow_and_json() {
    let emu = Emulator::start().expect("emulator");
    let alpha = run_with(
        &emu,
        "alpha",
        (0..3000).map(alpha_row).collect(),
        r#"{"lr":{"value":0.02},"batch_size":{"value":32},"opt":{"value":{"name":"adam","betas":[0.9,0.999]}},"_wandb":{"value":{"cli_version":"0.31.0"}}}"#,
        r#"{"loss":0.001,"best":NaN,"nested":{"x":1}}"#,
    );
    emu.put_run_file(&alpha, "media/x.png", b"12345".to_vec())
        .expect("file");
    let beta = run_with(
        &emu,
        "beta",
        (0..500)
            .map(|s| format!(r#"{{"_step":{s},"loss":{:?},"only_beta":"b"}}"#, s as f64))
            .collect(),
        r#"{"lr":{"value":0.1},"batch_size":{"value":64}}"#,
        r#"{"loss":0.5}"#,
    );
    run_with(&emu, "empty", Vec::new(), "{}", "{}");

    let db = fresh_database().await.expect("throwaway Postgres");
    let home = tempfile::tempdir().expect("home");
    ok(wandbfs(
        &emu,
        &db,
        home.path(),
        &["sync", &format!("{ENTITY}/{PROJECT}"), "--quiet"],
    ));
    emu.reset_counters();

    let out = tempfile::tempdir().expect("out");
    let parquet_dir = out.path().join("pq");
    let jsonl_dir = out.path().join("jl");
    let target = format!("{ENTITY}/{PROJECT}");
    for (format, dir) in [("parquet", &parquet_dir), ("jsonl", &jsonl_dir)] {
        let report = ok(wandbfs(
            &emu,
            &db,
            home.path(),
            &[
                "export",
                &target,
                "--format",
                format,
                "--output-dir",
                dir.to_str().expect("utf8"),
                "--json",
            ],
        ));
        let report: serde_json::Value =
            serde_json::from_slice(&report.stdout).expect("json report");
        assert_eq!(report["history"]["rows"], 3500, "{report}");
        assert_eq!(report["tables"]["runs"], 3, "{report}");
    }
    assert_eq!(
        emu.counters().total.requests,
        0,
        "exports read the mirror only"
    );

    // JSON Lines history is history.jsonl, byte for byte.
    for key in [&alpha, &beta] {
        let run = db
            .mirror
            .resolve_run(ENTITY, PROJECT, &key.name)
            .await
            .expect("resolve")
            .expect("mirrored");
        let len = db
            .mirror
            .stream_len(run, Stream::History)
            .await
            .expect("len");
        let mirrored = db
            .mirror
            .read_stream(run, Stream::History, 0, len as usize)
            .await
            .expect("read");
        let exported = std::fs::read(
            jsonl_dir
                .join("history")
                .join(format!("{}.jsonl", key.name)),
        )
        .expect("file");
        assert!(
            exported == mirrored.as_ref(),
            "{key}: history.jsonl differs"
        );
    }

    let check = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/export_check.py"))
        .args([
            parquet_dir.to_str().expect("utf8"),
            jsonl_dir.to_str().expect("utf8"),
            &alpha.name,
            &beta.name,
        ])
        .output()
        .expect("python runs");
    let check = ok(check);
    eprintln!("{}", String::from_utf8_lossy(&check.stdout));

    // Re-exporting replaces an earlier export; an unrelated non-empty directory is refused.
    ok(wandbfs(
        &emu,
        &db,
        home.path(),
        &[
            "export",
            &target,
            "--output-dir",
            parquet_dir.to_str().expect("utf8"),
        ],
    ));
    let stranger = out.path().join("stranger");
    std::fs::create_dir(&stranger).expect("mkdir");
    std::fs::write(stranger.join("notes.txt"), "mine").expect("write");
    let refused = wandbfs(
        &emu,
        &db,
        home.path(),
        &[
            "export",
            &target,
            "--output-dir",
            stranger.to_str().expect("utf8"),
        ],
    );
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not empty"));
    assert_eq!(
        std::fs::read_to_string(stranger.join("notes.txt")).expect("kept"),
        "mine"
    );
    let missing = wandbfs(
        &emu,
        &db,
        home.path(),
        &[
            "export",
            "emulator/nope",
            "--output-dir",
            out.path().join("x").to_str().expect("utf8"),
        ],
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("not in the mirror"));
}
