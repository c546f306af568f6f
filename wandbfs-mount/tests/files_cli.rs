//! `wandbfs ls`/`cat`/`stat`/`cp` — the tree without FUSE — serve the mount's bytes: every file
//! of a run (uploaded, synthetic, tables), the project tables and an artifact version are
//! byte-identical to what a real kernel mount of the same mirror serves; a run the mirror does
//! not hold is read from W&B (and not with `--offline`); errors are one line with a hint.

mod mount_support;

use std::path::Path;

use mount_support::*;
use wandb_emulator::{EmulatorConfig, RunKey, SeedSpec};

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "proj")
        .runs(3)
        .steps(1_500)
        .keys(6)
        .files(4)
        .bigfile(5 << 20)
        .artifacts(2)
        .artifact_bigfile(2 << 20)
}

fn wandbfs(env: &Env, args: &[&str]) -> std::process::Output {
    env.command().args(args).output().expect("wandbfs runs")
}

#[track_caller]
fn ok(env: &Env, args: &[&str]) -> Vec<u8> {
    let out = wandbfs(env, args);
    assert!(out.status.success(), "wandbfs {args:?}: {}", text(&out));
    out.stdout
}

/// Every file below `local` equals the file at the same place below `mounted`, and the two
/// trees hold the same files (symbolic links — artifact aliases — are the mount's alone).
#[track_caller]
fn same_tree(local: &Path, mounted: &Path) {
    let files = |dir: &Path| -> Vec<String> {
        walk(dir)
            .into_iter()
            .filter(|rel| !dir.join(rel).is_symlink())
            .collect()
    };
    let (ours, theirs) = (files(local), files(mounted));
    assert_eq!(ours, theirs, "{} vs {}", local.display(), mounted.display());
    for rel in ours.iter().filter(|r| !r.ends_with('/')) {
        let a = std::fs::read(local.join(rel)).unwrap();
        let b = std::fs::read(mounted.join(rel)).unwrap();
        assert!(
            a == b,
            "{rel}: {} bytes copied, {} mounted, or other bytes",
            a.len(),
            b.len()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tree_without_fuse_is_the_mounted_tree() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "proj");
    env.sync("alice/proj");
    // A run W&B has and the mirror does not.
    let extra = RunKey::new("alice", "proj", "late0run");
    env.emu.create_run(&extra);
    let rows: Vec<String> = (0..30)
        .map(|s| format!("{{\"_step\":{s},\"loss\":{}}}", 1.0 / f64::from(s + 1)))
        .collect();
    env.emu.append_history(&extra, &rows).unwrap();

    // Before any mount: the unsynced run comes from W&B, and --offline says it is not there.
    let late = ok(&env, &["cat", "alice/proj/late0run/history.jsonl"]);
    assert_eq!(String::from_utf8_lossy(&late).lines().count(), 30);
    let out = wandbfs(
        &env,
        &["cat", "--offline", "alice/proj/late0run/history.jsonl"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    // (Env logs at debug level; the error is still one line.)
    assert!(
        err.lines()
            .any(|l| l.starts_with("error: alice/proj/late0run/history.jsonl: no such")),
        "{err}"
    );
    assert!(
        err.contains("hint: `wandbfs ls alice/proj/late0run`"),
        "{err}"
    );
    // --no-mirror: the API alone, same bytes as through the mirror.
    let first = format!("alice/proj/{}/history.jsonl", runs[0].name);
    assert_eq!(
        ok(&env, &["cat", "--no-mirror", &first]),
        ok(&env, &["cat", &first])
    );

    let mount = env.mount(&[]);
    let project = mount.join("alice/proj");

    // ls -l: the same entries with the same sizes.
    let listing = String::from_utf8(ok(&env, &["ls", "-l", "alice/proj"])).unwrap();
    let mut listed: Vec<String> = Vec::new();
    for line in listing.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields[2].trim_end_matches('/');
        let meta = std::fs::metadata(project.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        if fields[0] != "-" {
            assert_eq!(
                fields[0].parse::<u64>().unwrap(),
                meta.len(),
                "size of {name}"
            );
        } else {
            assert!(meta.is_dir(), "{name}");
        }
        listed.push(name.to_owned());
    }
    listed.sort();
    let mut mounted: Vec<String> = std::fs::read_dir(&project)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    mounted.sort();
    assert_eq!(listed, mounted);

    // cat: the project tables.
    for table in ["runs.parquet", "runs.jsonl"] {
        let bytes = ok(&env, &["cat", &format!("alice/proj/{table}")]);
        assert!(
            bytes == std::fs::read(project.join(table)).unwrap(),
            "{table}"
        );
    }
    // cp -r of every run: uploaded files, synthetic files and tables, byte for byte. The
    // mount syncs a run on first access (the CLI does not): let it, so both read one mirror.
    std::fs::read_dir(project.join("late0run"))
        .unwrap()
        .for_each(drop);
    let out_dir = tempfile::tempdir().unwrap();
    for run in runs.iter().map(|r| r.name.as_str()).chain(["late0run"]) {
        let dest = out_dir.path().join(run);
        ok(
            &env,
            &[
                "cp",
                "-r",
                &format!("alice/proj/{run}"),
                dest.to_str().unwrap(),
            ],
        );
        same_tree(&dest, &project.join(run));
        assert!(dest.join("history.parquet").is_file(), "{run}");
    }
    // An artifact version.
    let versions = project.join("artifacts/model/model-1");
    let dest = out_dir.path().join("model-v0");
    ok(
        &env,
        &[
            "cp",
            "-r",
            "alice/proj/artifacts/model/model-1/v0",
            dest.to_str().unwrap(),
        ],
    );
    same_tree(&dest, &versions.join("v0"));
    // cp of one file into a directory; stat of a file and of a folder.
    let big = format!("alice/proj/{}/large/blob-1GiB.bin", runs[0].name);
    ok(&env, &["cp", &big, out_dir.path().to_str().unwrap()]);
    let mounted_big = project.join(&runs[0].name).join("large/blob-1GiB.bin");
    assert!(
        std::fs::read(out_dir.path().join("blob-1GiB.bin")).unwrap()
            == std::fs::read(&mounted_big).unwrap()
    );
    let stat: serde_json::Value =
        serde_json::from_slice(&ok(&env, &["stat", "--json", &big])).unwrap();
    assert_eq!(stat["type"], "file");
    assert_eq!(
        stat["size"].as_u64(),
        Some(std::fs::metadata(&mounted_big).unwrap().len())
    );
    let stat: serde_json::Value =
        serde_json::from_slice(&ok(&env, &["stat", "--json", "alice/proj"])).unwrap();
    assert_eq!(stat["type"], "directory");

    // A reader that stops early is not an error.
    let (code, _, stderr) = sh(&format!(
        "set -o pipefail; env WANDB_BASE_URL={} WANDB_API_KEY=$(cat {}) WANDBFS_DATABASE_URL='{}' \
         HOME={} {} cat {first} | head -c 10 >/dev/null",
        env.emu.base_url(),
        write_key(&env).display(),
        env.db_url,
        env.home.path().display(),
        WANDBFS,
    ));
    assert_eq!(code, 0, "{stderr}");

    // Folders need -r; missing paths name themselves.
    let out = wandbfs(&env, &["cp", &format!("alice/proj/{}", runs[0].name), "x"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is a folder") && err.contains("hint: copy folders with -r"),
        "{err}"
    );
    let out = wandbfs(&env, &["ls", "alice/nope"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    mount.unmount();
}

/// The emulator's key in a file (the shell line above keeps it out of argv).
fn write_key(env: &Env) -> std::path::PathBuf {
    let path = env.home.path().join("key");
    std::fs::write(&path, env.emu.api_key()).unwrap();
    path
}
