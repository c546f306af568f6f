//! The daemon's life: SIGTERM and SIGINT unmount cleanly (lazily, and said so, when the mount
//! is busy); `--auto-unmount` removes the mount when the daemon is killed; `--uid`/`--gid` set
//! the owner; `df` works; a failed mount says why and leaves nothing behind; a file re-uploaded
//! upstream with other content is never served with the old one's size.

mod mount_support;

use std::os::unix::fs::MetadataExt as _;
use std::time::Duration;

use mount_support::*;
use wandb_emulator::{EmulatorConfig, SeedSpec};

/// Steps that wait for an event poll with this watchdog: generous, never the expected path.
const WATCHDOG: Duration = Duration::from_secs(300);

fn mounted(path: &std::path::Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(path.to_str().unwrap()))
}

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "life")
        .runs(2)
        .steps(50)
        .keys(3)
        .files(4)
        .bigfile(3 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signals_unmount_and_the_daemon_exits() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.sync("alice/life");
    for signal in ["TERM", "INT"] {
        let mount = env.mount(&[]);
        assert!(mounted(&mount.path));
        sh_ok(&format!("kill -{signal} {}", mount.pid));
        wait_for_exit(mount.pid);
        assert!(!mounted(&mount.path), "SIG{signal} left the mount");
        assert!(
            mount.log_text().contains("unmounting"),
            "{}",
            mount.log_text()
        );
    }

    // Busy: the daemon detaches it lazily and says so.
    let mount = env.mount(&[]);
    let mut holder = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(mount.join("alice/life"))
        .spawn()
        .unwrap();
    sh_ok(&format!("kill -TERM {}", mount.pid));
    wait_for_exit(mount.pid);
    assert!(!mounted(&mount.path), "detached");
    assert!(mount.log_text().contains("lazily"), "{}", mount.log_text());
    let _ = holder.kill();
    let _ = holder.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unmount_removes_the_mount_of_a_killed_daemon() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.sync("alice/life");
    let mount = env.mount(&["--auto-unmount"]);
    assert!(mounted(&mount.path));
    assert!(std::fs::read_dir(mount.join("alice/life")).unwrap().count() >= 2);
    sh_ok(&format!("kill -9 {}", mount.pid));
    wait_for_exit(mount.pid);
    // fusermount3 (its watcher process) unmounts once the daemon's connection is gone.
    let started = std::time::Instant::now();
    while mounted(&mount.path) {
        assert!(started.elapsed() < WATCHDOG, "still mounted");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_df_and_failed_mounts() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.sync("alice/life");
    let run = env.emu.runs("alice", "life")[0].name.clone();
    let mount = env.mount(&["--uid", "4242", "--gid", "4343"]);
    let meta = std::fs::metadata(mount.join(&format!("alice/life/{run}/history.jsonl"))).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (4242, 4343));
    assert_eq!(meta.mode() & 0o777, 0o444);
    let dir = std::fs::metadata(mount.join(&format!("alice/life/{run}"))).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o555);
    let df = sh_ok(&format!("df -h {}", mount.path.display()));
    assert!(df.contains("wandbfs"), "{df}");
    mount.unmount();

    // A mount point that does not exist: one clear line, exit 1, nothing mounted.
    let missing = env.home.path().join("no/such/dir");
    let out = env.command().arg("mount").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: mount point"), "{stderr}");
    assert!(stderr.contains("hint: create it first"), "{stderr}");

    // A scope that does not exist: the daemon reports why, the command exits 1.
    let dir = tempfile::tempdir().unwrap();
    let out = env
        .command()
        .arg("mount")
        .arg(dir.path())
        .arg("alice/nosuchproject/nosuchrun")
        .arg("--log-file")
        .arg(dir.path().join("log"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not found"),
        "{}",
        text(&out)
    );
    assert!(!mounted(dir.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_changed_upstream_is_never_served_with_stale_metadata() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let run = env.emu.runs("alice", "life")[0].clone();
    let old: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    env.emu
        .put_run_file(&run, "model.bin", old.clone())
        .unwrap();
    env.sync("alice/life");
    let mount = env.mount(&["--no-cache"]);
    let path = mount.join(&format!("alice/life/{}/model.bin", run.name));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), old.len() as u64);
    // Re-uploaded upstream, longer; the mirror (and so the mount) still lists the old one.
    let new: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    env.emu
        .put_run_file(&run, "model.bin", new.clone())
        .unwrap();
    sh_ok("sync; echo 3 > /proc/sys/vm/drop_caches");
    match std::fs::read(&path) {
        // The old version whole (its URL may still serve it), or ESTALE: never the new bytes
        // cut to the old size, never a mix.
        Ok(bytes) => assert!(
            bytes == old,
            "read {} bytes of neither version",
            bytes.len()
        ),
        Err(e) => {
            assert_eq!(e.raw_os_error(), Some(libc::ESTALE), "{e}");
            assert!(
                mount.log_text().contains("changed upstream"),
                "{}",
                mount.log_text()
            );
        }
    }
    // After a sync that re-reads file listings, the mount serves the new file.
    let out = env
        .command()
        .args(["sync", "alice/life", "--full", "--quiet", "--max-rps", "0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let started = std::time::Instant::now();
    loop {
        if let Ok(bytes) = std::fs::read(&path)
            && bytes == new
        {
            break;
        }
        // The kernel and the mount trust the old listing for the metadata TTL.
        assert!(started.elapsed() < WATCHDOG);
        std::thread::sleep(Duration::from_millis(200));
    }
    mount.unmount();
}
