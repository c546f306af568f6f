//! The README's shell blocks marked `<!-- runnable -->` run, in order, against the emulator —
//! as a reader would type them — with the real `wandbfs` (a real FUSE mount included), the
//! venv's `python`, and a throwaway mirror. The README is read at test time, so a new runnable
//! block is covered without touching this file.
//!
//! Conventions for README authors: a runnable block is a ```` ```sh ```` fence right after a
//! `<!-- runnable -->` line; it runs with `bash -eu` in a scratch directory, `HOME` a fresh
//! directory, `wandbfs` and `python` on `PATH`, and the credentials of the emulator in the
//! environment. Use the fixture's names: entity `my-team`, project `my-project`, run
//! `3kx9a1bz` (it logs `loss`); the project also has seeded runs, files and artifacts.

mod mount_support;

use std::path::{Path, PathBuf};

use mount_support::*;
use wandb_emulator::{EmulatorConfig, RunKey, SeedSpec};

/// `(line, text)` of every runnable block.
fn runnable_blocks(markdown: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "<!-- runnable -->" {
            assert_eq!(
                lines.get(i + 1).map(|l| l.trim()),
                Some("```sh"),
                "README.md:{}: `<!-- runnable -->` must be followed by a ```sh fence",
                i + 1
            );
            let start = i + 2;
            let end = (start..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap_or_else(|| panic!("README.md:{}: unclosed block", i + 2));
            blocks.push((start + 1, lines[start..end].join("\n")));
            i = end;
        }
        i += 1;
    }
    blocks
}

fn python() -> PathBuf {
    let python = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.exists(),
        "no Python at {} (WANDBFS_PYTHON)",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runnable_readme_blocks_run() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let blocks = runnable_blocks(&readme);
    assert!(blocks.len() >= 3, "the README lost its runnable blocks");

    let env = Env::new(
        EmulatorConfig::default().seed(
            SeedSpec::new("my-team", "my-project")
                .runs(3)
                .steps(500)
                .keys(5)
                .files(3)
                .bigfile(0)
                .artifacts(1),
        ),
    )
    .await;
    let run = RunKey::new("my-team", "my-project", "3kx9a1bz");
    env.emu.create_run(&run);
    let rows: Vec<String> = (0..300)
        .map(|s| {
            format!(
                "{{\"_step\":{s},\"loss\":{},\"acc\":{}}}",
                2.0 / f64::from(s + 1),
                f64::from(s) / 300.0
            )
        })
        .collect();
    env.emu.append_history(&run, &rows).unwrap();

    // `wandbfs` and `python` on PATH, as after `cargo install` in an activated venv.
    let bin = env.home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(WANDBFS, bin.join("wandbfs")).unwrap();
    let venv_bin = python().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}:{}",
        bin.display(),
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let work = tempfile::tempdir().unwrap();
    let mountpoint = env.home.path().join("wandb");

    let mut outputs = Vec::new();
    for (line, block) in &blocks {
        let out = std::process::Command::new("bash")
            .args(["-euc", block])
            .env_clear()
            .env("PATH", &path)
            .env("HOME", env.home.path())
            .env("XDG_CACHE_HOME", env.home.path().join("cache"))
            .env("WANDB_CONFIG_DIR", env.home.path().join("wandb-config"))
            .env("WANDB_BASE_URL", env.emu.base_url())
            .env("WANDB_API_KEY", env.emu.api_key())
            .env("WANDBFS_DATABASE_URL", &env.db_url)
            .current_dir(work.path())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("bash runs");
        let shown = text(&out);
        if !out.status.success() {
            // Leave nothing mounted.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&mountpoint)
                .status();
            panic!("README.md:{line}: the block failed:\n{block}\n{shown}");
        }
        println!("README.md:{line}:\n{shown}");
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
    }

    // What the blocks promise in their comments, seen in their output.
    let all = outputs.join("\n");
    for expected in [
        "runs.parquet",
        "3kx9a1bz",
        "\"_step\":0",
        "user.wandb.state=",
        "finished",
    ] {
        assert!(
            all.contains(expected),
            "no {expected:?} in the README blocks' output:\n{all}"
        );
    }
    assert!(
        work.path().join("3kx9a1bz/history.jsonl").is_file(),
        "wandbfs cp -r copied nothing"
    );
    assert!(
        work.path().join("export").is_dir(),
        "wandbfs export wrote nothing"
    );
    let mounted = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounted.contains(&format!(" {} ", mountpoint.display())),
        "the quickstart's unmount left {} mounted",
        mountpoint.display()
    );
}
