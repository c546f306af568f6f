//! The mount against runs the **real** wandb SDK wrote, read by the tools researchers use:
//! pandas, polars and DuckDB read `history.jsonl`/`summary.json` from the mount, and the
//! values equal the SDK's own `scan_history()` / `run.summary` / `run.config` (where polars
//! cannot read W&B's `NaN` tokens, the script asserts the error is polars'). Writes through
//! `--allow-write` reach W&B: a file copied into a run is in the SDK's `run.files()` with the
//! right bytes, and `rm` deletes it.

mod mount_support;

use std::path::PathBuf;
use std::process::Command;

use mount_support::*;
use wandb_emulator::EmulatorConfig;

const PROJECT: &str = "sdk-mount";

/// The SDK's Python: `$WANDBFS_PYTHON`, else the repository's `.venv` (the test fails, never
/// skips, when it is missing).
fn python() -> PathBuf {
    let path = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        path.exists(),
        "the SDK's Python is missing at {} — set WANDBFS_PYTHON or create the venv \
         (python3 -m venv .venv && .venv/bin/pip install -r integration/requirements.txt)",
        path.display()
    );
    path
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/mount_python")
        .join(name)
}

/// Runs a Python script with the SDK pointed at the emulator, in an isolated sandbox.
fn run_python(
    env: &Env,
    sandbox: &std::path::Path,
    args: &[&str],
    extra: &[(&str, &str)],
) -> String {
    for sub in ["home", "config", "cache", "work"] {
        std::fs::create_dir_all(sandbox.join(sub)).unwrap();
    }
    let out = Command::new(python())
        .args(args)
        .current_dir(sandbox.join("work"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", sandbox.join("home"))
        .env("WANDB_DIR", sandbox.join("work"))
        .env("WANDB_CONFIG_DIR", sandbox.join("config"))
        .env("WANDB_CACHE_DIR", sandbox.join("cache"))
        .env("WANDB_DATA_DIR", sandbox.join("cache"))
        .env("WANDB_BASE_URL", env.emu.base_url())
        .env("WANDB_API_KEY", env.emu.api_key())
        .env("WANDB_SILENT", "true")
        .env("PROJECT", PROJECT)
        .envs(extra.iter().copied())
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn write_runs(env: &Env, sandbox: &std::path::Path) -> serde_json::Value {
    let manifest = sandbox.join("manifest.json");
    run_python(
        env,
        sandbox,
        &[
            script("write_runs.py").to_str().unwrap(),
            manifest.to_str().unwrap(),
        ],
        &[],
    );
    serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_polars_and_duckdb_read_what_the_sdk_wrote() {
    let env = Env::new(EmulatorConfig::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let manifest = write_runs(&env, sandbox.path());
    let entity = manifest["entity"].as_str().unwrap().to_owned();
    env.sync(&format!("{entity}/{PROJECT}"));
    let mount = env.mount(&[]);
    let project_dir = mount.join(&format!("{entity}/{PROJECT}"));

    // wc -l = logged steps (300 with a gap of 60 step numbers: still 300 rows).
    let awkward = manifest["awkward"].as_str().unwrap();
    let lines = sh_ok(&format!(
        "wc -l < {}",
        project_dir.join(awkward).join("history.jsonl").display()
    ));
    assert_eq!(lines.trim(), "300");

    let out = run_python(
        &env,
        sandbox.path(),
        &[
            script("read_mount.py").to_str().unwrap(),
            project_dir.to_str().unwrap(),
            sandbox.path().join("manifest.json").to_str().unwrap(),
        ],
        &[],
    );
    assert!(out.contains("all ok"), "{out}");
    assert!(out.contains("polars refuses NaN tokens"), "{out}");
    assert!(out.contains("ok clean: polars loss"), "{out}");
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_through_the_mount_reach_w_and_b() {
    let env = Env::new(EmulatorConfig::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let manifest = write_runs(&env, sandbox.path());
    let entity = manifest["entity"].as_str().unwrap().to_owned();
    let clean = manifest["clean"].as_str().unwrap().to_owned();
    env.sync(&format!("{entity}/{PROJECT}"));

    // Read-only by default: the kernel refuses.
    let mount = env.mount(&[]);
    let run_dir = mount.join(&format!("{entity}/{PROJECT}/{clean}"));
    let (code, _, err) = sh(&format!("cp /etc/hostname {}/x.txt", run_dir.display()));
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    mount.unmount();

    let mount = env.mount(&["--allow-write"]);
    let run_dir = mount.join(&format!("{entity}/{PROJECT}/{clean}"));
    let local = sandbox.path().join("upload.bin");
    let payload: Vec<u8> = (0..1_500_000u32).map(|i| (i * 13 % 251) as u8).collect();
    std::fs::write(&local, &payload).unwrap();

    // cp into a new folder of the run: mkdir, then the file; close uploads it.
    sh_ok(&format!("mkdir -p {}/uploads/deep", run_dir.display()));
    sh_ok(&format!(
        "cp {} {}/uploads/deep/data.bin",
        local.display(),
        run_dir.display()
    ));
    let through_mount = std::fs::read(run_dir.join("uploads/deep/data.bin")).unwrap();
    assert_eq!(through_mount, payload);
    // Overwrite a small file in place with a shell redirect.
    sh_ok(&format!(
        "echo 'hello from the mount' > {}/notes.txt",
        run_dir.display()
    ));
    sh_ok(&format!(
        "echo 'second line' >> {}/notes.txt",
        run_dir.display()
    ));

    let check = format!(
        r#"
import hashlib, wandb
api = wandb.Api(timeout=60)
run = api.run("{entity}/{PROJECT}/{clean}")
files = {{f.name: f for f in run.files()}}
print(sorted(files))
f = files["uploads/deep/data.bin"]
print("size", f.size)
f.download(root="dl", replace=True)
print("md5", hashlib.md5(open("dl/uploads/deep/data.bin", "rb").read()).hexdigest())
files["notes.txt"].download(root="dl", replace=True)
print("notes", repr(open("dl/notes.txt").read()))
"#
    );
    let out = run_python(&env, sandbox.path(), &["-c", &check], &[]);
    assert!(out.contains(&format!("size {}", payload.len())), "{out}");
    assert!(out.contains(&format!("md5 {}", md5_hex(&payload))), "{out}");
    assert!(
        out.contains(r"notes 'hello from the mount\nsecond line\n'"),
        "{out}"
    );

    // Synthetic files, artifacts and the levels above runs: EACCES.
    for target in [
        run_dir.join("history.jsonl"),
        mount.join(&format!("{entity}/{PROJECT}/new.txt")),
    ] {
        let (code, _, err) = sh(&format!("echo x > {}", target.display()));
        assert_ne!(code, 0, "{}", target.display());
        assert!(
            err.contains("Permission denied"),
            "{}: {err}",
            target.display()
        );
    }

    // rm deletes it in W&B; mv renames it.
    sh_ok(&format!("rm {}/uploads/deep/data.bin", run_dir.display()));
    sh_ok(&format!(
        "mv {0}/notes.txt {0}/renamed.txt",
        run_dir.display()
    ));
    assert!(!run_dir.join("uploads/deep/data.bin").exists());
    assert_eq!(
        std::fs::read_to_string(run_dir.join("renamed.txt")).unwrap(),
        "hello from the mount\nsecond line\n"
    );
    let names = run_python(
        &env,
        sandbox.path(),
        &[
            "-c",
            &format!(
                "import wandb; print(sorted(f.name for f in wandb.Api(timeout=60).run('{entity}/{PROJECT}/{clean}').files()))"
            ),
        ],
        &[],
    );
    assert!(!names.contains("uploads/deep/data.bin"), "{names}");
    assert!(!names.contains("'notes.txt'"), "{names}");
    assert!(names.contains("renamed.txt"), "{names}");
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_tables_equal_the_sdk_through_the_mount_and_the_store() {
    use object_store::ObjectStoreExt as _;

    let env = Env::new(EmulatorConfig::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let manifest = write_runs(&env, sandbox.path());
    let entity = manifest["entity"].as_str().unwrap().to_owned();
    let project = format!("{entity}/{PROJECT}");
    env.sync(&project);
    let mount = env.mount(&[]);
    let project_dir = mount.join(&project);

    // Every table: stat size = bytes read, and the same file through WandbStore over the
    // mirror (its own table cache), which a local copy keeps for the second reading below.
    let mut tables = vec!["runs.parquet".to_owned(), "runs.jsonl".to_owned()];
    for key in ["awkward", "failed", "clean"] {
        let run = manifest[key].as_str().unwrap();
        tables.push(format!("{run}/history.parquet"));
        tables.push(format!("{run}/system.parquet"));
    }
    let table_cache = tempfile::tempdir().unwrap();
    let store = mirror_store(&env, table_cache.path());
    let copy = tempfile::tempdir().unwrap();
    for rel in &tables {
        let path = project_dir.join(rel);
        let size = std::fs::metadata(&path).unwrap().len();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(size, bytes.len() as u64, "stat size of {rel}");
        assert!(size > 0, "{rel}");
        let location = object_store::path::Path::parse(format!("{project}/{rel}")).unwrap();
        let stored = store.get(&location).await.unwrap().bytes().await.unwrap();
        assert_eq!(
            stored.as_ref(),
            &bytes[..],
            "{rel}: the store's bytes are the mount's"
        );
        let local = copy.path().join(rel);
        std::fs::create_dir_all(local.parent().unwrap()).unwrap();
        std::fs::write(local, &stored).unwrap();
    }
    // The listing shows them with the same sizes.
    let ls = sh_ok(&format!("ls {}", project_dir.display()));
    assert!(ls.lines().any(|l| l == "runs.parquet"), "{ls}");

    // pandas, polars, pyarrow and DuckDB, through the mount and through the store's copy.
    for dir in [project_dir.as_path(), copy.path()] {
        let out = run_python(
            &env,
            sandbox.path(),
            &[
                script("read_tables.py").to_str().unwrap(),
                dir.to_str().unwrap(),
                sandbox.path().join("manifest.json").to_str().unwrap(),
            ],
            &[],
        );
        assert!(out.contains("all ok"), "{out}");
        assert!(out.contains("ok duckdb glob: rows per run"), "{out}");
        assert!(out.contains("ok awkward: polars NaN native"), "{out}");
    }
    mount.unmount();
}

/// `cp` of a file larger than the daemon may hold, into a run: the write streams to a
/// temporary file and the upload streams from it, so the daemon's peak memory stays bounded;
/// the SDK sees the file with its MD5. An existing file opened for appending keeps its bytes;
/// a rename above `--max-rename-copy` is `EXDEV`, and `mv` copies and deletes instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_writes_stream_in_bounded_memory() {
    use md5::Digest as _;
    use std::io::Write as _;

    let env = Env::new(EmulatorConfig::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let manifest = write_runs(&env, sandbox.path());
    let entity = manifest["entity"].as_str().unwrap().to_owned();
    let clean = manifest["clean"].as_str().unwrap().to_owned();
    env.sync(&format!("{entity}/{PROJECT}"));
    let mount = env.mount(&["--allow-write", "--max-rename-copy", "1M"]);
    let run_dir = mount.join(&format!("{entity}/{PROJECT}/{clean}"));
    let before = mount.peak_rss_kib();

    // 1 GiB of distinct blocks, written and hashed as it goes (never held in memory here).
    let size: u64 = 1 << 30;
    let local = sandbox.path().join("checkpoint.bin");
    let mut md5 = md5::Md5::new();
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&local).unwrap());
        let mut block = vec![0u8; 1 << 20];
        for i in 0..size >> 20 {
            for (j, b) in block.iter_mut().enumerate() {
                *b = ((j as u64).wrapping_mul(2_654_435_761) ^ i.wrapping_mul(40_503)) as u8;
            }
            md5.update(&block);
            out.write_all(&block).unwrap();
        }
    }
    let md5_b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(md5.finalize())
    };
    let (code, _, err) = sh(&format!(
        "cp {} {}/checkpoint.bin",
        local.display(),
        run_dir.display()
    ));
    assert_eq!(code, 0, "cp: {err}\n{}", mount.log_text());
    let peak = mount.peak_rss_kib();
    eprintln!("daemon peak RSS: {before} KiB before, {peak} KiB after a 1 GiB cp");
    assert!(
        peak < 256 * 1024,
        "peak RSS {peak} KiB for a 1 GiB write: the file was held in memory"
    );
    assert_eq!(
        std::fs::metadata(run_dir.join("checkpoint.bin"))
            .unwrap()
            .len(),
        size
    );

    // Appending to an existing file streams its bytes into the temporary file first.
    let head: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(run_dir.join("log.bin"), &head).unwrap();
    {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(run_dir.join("log.bin"))
            .unwrap();
        f.write_all(b"tail").unwrap();
    }
    let mut expected = head.clone();
    expected.extend_from_slice(b"tail");
    assert_eq!(std::fs::read(run_dir.join("log.bin")).unwrap(), expected);

    // A rename larger than --max-rename-copy: EXDEV, and mv falls back to copy + delete.
    let err = std::fs::rename(run_dir.join("log.bin"), run_dir.join("moved.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{err}");
    sh_ok(&format!("mv {0}/log.bin {0}/moved.bin", run_dir.display()));
    assert_eq!(std::fs::read(run_dir.join("moved.bin")).unwrap(), expected);
    assert!(!run_dir.join("log.bin").exists());

    let check = format!(
        r#"
import wandb
files = {{f.name: f for f in wandb.Api(timeout=60).run("{entity}/{PROJECT}/{clean}").files()}}
f = files["checkpoint.bin"]
print("size", f.size, "md5", f.md5)
print("moved", "moved.bin" in files, "log", "log.bin" in files)
"#
    );
    let out = run_python(&env, sandbox.path(), &["-c", &check], &[]);
    assert!(out.contains(&format!("size {size} md5 {md5_b64}")), "{out}");
    assert!(out.contains("moved True log False"), "{out}");
    mount.unmount();
}

/// An artifact entry whose bytes live outside W&B (a reference the SDK logged with
/// `add_reference`) is listed with the version's other files, and reading it is `EOPNOTSUPP`
/// (the mount cannot fetch from arbitrary URLs); the version's stored files read as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_artifact_entry_reads_as_eopnotsupp() {
    let env = Env::new(EmulatorConfig::default()).await;
    let sandbox = tempfile::tempdir().unwrap();
    let log = r#"
import os, wandb
run = wandb.init(project=os.environ["PROJECT"], name="references")
art = wandb.Artifact("refs", type="dataset")
art.add_reference("https://example.invalid/data/remote.bin", name="remote.bin", checksum=False)
with open("local.txt", "w") as f:
    f.write("stored in W&B\n")
art.add_file("local.txt")
run.log_artifact(art)
run.finish()
print("entity", run.entity)
"#;
    let out = run_python(&env, sandbox.path(), &["-c", log], &[]);
    let entity = out
        .lines()
        .find_map(|l| l.strip_prefix("entity "))
        .expect("the script prints the entity")
        .trim()
        .to_owned();
    env.sync(&format!("{entity}/{PROJECT}"));
    let mount = env.mount(&[]);
    let version = mount.join(&format!("{entity}/{PROJECT}/artifacts/dataset/refs/v0"));
    let names: Vec<String> = std::fs::read_dir(&version)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"remote.bin".to_owned()), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(version.join("local.txt")).unwrap(),
        "stored in W&B\n"
    );
    let err = std::fs::read(version.join("remote.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EOPNOTSUPP), "{err}");
    mount.unmount();
}
