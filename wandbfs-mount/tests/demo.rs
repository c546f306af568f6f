//! `wandbfs demo`, as the README's first command runs it: `--check` runs every command the
//! demo prints against the mount and checks the output against the emulator's data; without
//! it the demo stays up until SIGINT and then leaves no mount and no server behind.
//!
//! Needs what the demo needs: root, /dev/fuse, PostgreSQL server binaries, and (for the SDK's
//! live run) the venv's Python (`WANDBFS_PYTHON`, default `.venv/bin/python`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn python() -> PathBuf {
    let python = std::env::var_os("WANDBFS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.exists(),
        "the demo test needs the SDK's Python at {} (WANDBFS_PYTHON)",
        python.display()
    );
    python
}

/// A short directory (the cluster's socket path must stay short).
fn demo_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!(
        "/var/tmp/wfs-demo-test-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let wanted = path.display().to_string();
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|m| m == wanted)
}

fn server_running(dir: &Path) -> bool {
    dir.join("pg/data/postmaster.pid").exists()
}

#[test]
fn check_runs_every_printed_command_with_the_sdk() {
    let dir = demo_dir("sdk");
    let out = Command::new(env!("CARGO_BIN_EXE_wandbfs"))
        .args(["demo", "--check", "--dir"])
        .arg(&dir)
        .env("WANDBFS_PYTHON", python())
        .output()
        .expect("run wandbfs demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo --check failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("written by the real wandb SDK"), "{stdout}");
    assert!(stdout.contains("==> all checks passed"), "{stdout}");
    assert!(
        stdout.contains("==> wandbfs doctor") && stdout.contains("\nall good\n"),
        "{stdout}"
    );
    // Six numbered commands, each checked.
    for i in 1..=6 {
        assert!(
            stdout.contains(&format!("  # {i}. ")),
            "command {i} not printed:\n{stdout}"
        );
    }
    assert!(stdout.matches("\n  ok    ").count() >= 9, "{stdout}");
    // The demo's key never appears in what it prints.
    let key = std::fs::read_to_string(dir.join("api-key")).expect("the key file");
    assert!(!stdout.contains(key.trim()) && !stderr.contains(key.trim()));
    assert!(!mounted(&dir.join("mnt")), "the demo left its mount");
    assert!(
        !server_running(&dir),
        "the demo left its PostgreSQL server running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn without_the_sdk_the_demo_writes_the_live_run_and_stops_on_sigint() {
    let dir = demo_dir("gen");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wandbfs"))
        .args(["demo", "--no-sdk", "--steps", "2000", "--dir"])
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run wandbfs demo");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("demo output");
        let up = line.starts_with("The demo runs until Ctrl-C");
        seen.push(line);
        if up {
            break;
        }
    }
    let text = seen.join("\n");
    assert!(text.contains("written by the demo itself"), "{text}");
    assert!(mounted(&dir.join("mnt")), "not mounted while up:\n{text}");
    // The live run moves while the demo is up: its history grows through the mount.
    let live = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("tail -f "))
        .expect("the tail -f command");
    let rows = |path: &str| {
        std::fs::read_to_string(path)
            .expect("history")
            .lines()
            .count()
    };
    let before = rows(live);
    assert!(before >= 2000, "{before} rows in {live}");
    let started = std::time::Instant::now();
    while rows(live) <= before {
        // Bounded only so a broken pipeline fails instead of hanging; normally ~2 s.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(300),
            "the live run's history did not grow past {before} rows"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("SIGINT");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let status = child.wait().expect("demo exit");
    assert!(
        status.success(),
        "demo exited with {status}:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("kept ")),
        "{}",
        rest.join("\n")
    );
    assert!(!mounted(&dir.join("mnt")), "the demo left its mount");
    assert!(
        !server_running(&dir),
        "the demo left its PostgreSQL server running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
