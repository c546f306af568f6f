//! Failures under a live mount: every read returns the right bytes or an error, never wrong
//! bytes (429 storms, 5xx bursts, connection resets, truncated bodies, expired signed URLs, a
//! poisoned run); a backend stall does not block other requests; a database that goes away
//! gives `EIO` and the mount recovers when it returns; `kill -9` of the daemon leaves
//! `ENOTCONN`, which `wandbfs unmount` clears.

mod mount_support;

use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use mount_support::*;
use rand::{Rng, SeedableRng};
use wandb_emulator::EmulatorConfig;
use wandb_emulator::{
    ErrorBurst, FaultScope, FaultSettings, LatencyFault, RateLimitFault, RequestFault, SeedSpec,
};
use wandbfs::mirror::embedded::TempCluster;
use wandbfs::mirror::{ConnectOptions, Mirror};

/// Fast retries for the daemon (the SDK's own settings variables).
const FAST_RETRIES: [(&str, &str); 3] = [
    ("WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS", "0.02"),
    ("WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS", "0.1"),
    ("WANDB__GRAPHQL_RETRY_MAX", "6"),
];

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "faults")
        .runs(3)
        .steps(500)
        .keys(4)
        .files(6)
        .bigfile(12 << 20)
        .artifacts(1)
        .artifact_bigfile(2 << 20)
}

fn drop_caches() {
    sh_ok("sync; echo 3 > /proc/sys/vm/drop_caches");
}

/// Reads `len` bytes at `offset` of `path`; the bytes, or the errno.
fn read_at(path: &std::path::Path, offset: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut f = std::fs::File::open(path).map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    f.seek(SeekFrom::Start(offset)).unwrap();
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(-1)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_under_faults_return_the_right_bytes_or_an_error() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "faults");
    env.sync("alice/faults");
    // A run the mirror does not hold yet (created after the sync), poisoned later.
    let poisoned = wandb_emulator::RunKey::new("alice", "faults", "poisoned1");
    env.emu.create_run(&poisoned);
    env.emu
        .append_history(&poisoned, &[r#"{"_step":0,"loss":1}"#.to_owned()])
        .unwrap();
    let mount = env.mount_with_env(&["--no-cache"], &FAST_RETRIES);
    let big = mount.join(&format!(
        "alice/faults/{}/large/blob-1GiB.bin",
        runs[0].name
    ));
    let size = std::fs::metadata(&big).unwrap().len();
    let truth = env
        .emu
        .run_file_bytes(&runs[0], "large/blob-1GiB.bin")
        .unwrap();
    assert_eq!(size, truth.len() as u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let scenarios: Vec<(&str, FaultSettings)> = vec![
        (
            "429 storm",
            FaultSettings {
                rate_limit: Some(RateLimitFault {
                    fraction: 0.4,
                    retry_after: "0.05".into(),
                    scope: FaultScope::All,
                }),
                ..FaultSettings::default()
            },
        ),
        (
            "5xx burst",
            FaultSettings {
                error_burst: Some(ErrorBurst {
                    remaining: 4,
                    status: 503,
                    scope: FaultScope::Downloads,
                }),
                ..FaultSettings::default()
            },
        ),
        (
            "resets",
            FaultSettings {
                reset: Some(RequestFault::fraction(0.3, FaultScope::Downloads)),
                ..FaultSettings::default()
            },
        ),
        (
            "truncated bodies",
            FaultSettings {
                truncate: Some(RequestFault::fraction(0.3, FaultScope::Downloads)),
                ..FaultSettings::default()
            },
        ),
    ];
    for (name, faults) in scenarios {
        drop_caches();
        env.emu.set_faults(faults);
        let mut ok = 0;
        // The whole file sequentially, then random ranges.
        match std::fs::read(&big) {
            Ok(bytes) => {
                assert!(
                    bytes == truth[..],
                    "{name}: a whole read returned wrong bytes"
                );
                ok += 1;
            }
            Err(e) => eprintln!("{name}: whole read failed: {e}"),
        }
        for _ in 0..12 {
            drop_caches();
            let offset = rng.random_range(0..size);
            let len = rng.random_range(1..(3 << 20)) as usize;
            match read_at(&big, offset, len) {
                Ok(bytes) => {
                    let end = (offset as usize + len).min(truth.len());
                    assert!(
                        bytes == truth[offset as usize..end],
                        "{name}: wrong bytes at {offset}+{len}"
                    );
                    ok += 1;
                }
                Err(errno) => {
                    assert_eq!(errno, libc::EIO, "{name}: {offset}+{len}");
                }
            }
        }
        eprintln!("{name}: {ok} of 13 reads succeeded, all with the right bytes");
        assert!(ok > 0, "{name}: no read got through\n{}", mount.log_text());
    }
    env.emu.set_faults(FaultSettings::default());

    // Expired signed URLs (artifact files are fetched by signed URL): a fresh one is asked.
    let artifact = sh_ok(&format!(
        "find {} -path '*artifacts*' -name '*.bin' | head -1",
        mount.join("alice/faults").display()
    ));
    let artifact = std::path::PathBuf::from(artifact.trim());
    let first = std::fs::read(&artifact).unwrap();
    env.emu.set_signed_url_ttl(Duration::from_secs(1));
    drop_caches();
    env.emu.advance_clock(Duration::from_secs(3600));
    assert_eq!(std::fs::read(&artifact).unwrap(), first);
    drop_caches();
    env.emu.revoke_signed_urls();
    assert_eq!(std::fs::read(&artifact).unwrap(), first, "after revocation");

    // A poisoned run the mirror does not hold: its first access fails (EIO, said in the log)
    // within the retry budget; the other runs are unaffected.
    env.emu.set_poisoned(&poisoned, true);
    let err = std::fs::metadata(mount.join("alice/faults/poisoned1/history.jsonl")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert!(
        mount.log_text().contains("poisoned1"),
        "{}",
        mount.log_text()
    );
    let healthy = mount.join(&format!("alice/faults/{}/history.jsonl", runs[1].name));
    assert_eq!(
        std::fs::read_to_string(&healthy).unwrap().lines().count(),
        500
    );
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_download_does_not_block_other_requests() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "faults");
    env.sync("alice/faults");
    let mount = env.mount(&["--no-cache"]);
    let big = mount.join(&format!(
        "alice/faults/{}/large/blob-1GiB.bin",
        runs[0].name
    ));
    std::fs::metadata(&big).unwrap();
    env.emu.set_faults(FaultSettings {
        latency: Some(LatencyFault {
            delay: Duration::from_secs(3),
            scope: FaultScope::Downloads,
        }),
        ..FaultSettings::default()
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = {
        let big = big.clone();
        std::thread::spawn(move || {
            let bytes = std::fs::read(&big);
            let _ = tx.send(());
            bytes.map(|b| b.len())
        })
    };
    // While the download stalls, listings, stats and synthetic reads are answered.
    for run in &runs {
        let dir = mount.join(&format!("alice/faults/{}", run.name));
        sh_ok(&format!("ls -l {} > /dev/null", dir.display()));
        assert_eq!(
            std::fs::read_to_string(dir.join("history.jsonl"))
                .unwrap()
                .lines()
                .count(),
            500
        );
    }
    assert!(
        rx.try_recv().is_err(),
        "the stalled read finished before the other requests: the test proves nothing"
    );
    env.emu.set_faults(FaultSettings::default());
    assert_eq!(reader.join().unwrap().unwrap(), 12 << 20);
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_goes_away_gives_eio_and_the_mount_recovers() {
    // A cluster of its own: stopping the shared one would break the other tests.
    let cluster = TempCluster::start().expect("cluster");
    let mirror = Mirror::connect_embedded(cluster.cluster(), "mount", &ConnectOptions::default())
        .await
        .expect("database");
    drop(mirror);
    let mut env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.db_url = cluster.cluster().connection_string("mount");
    let runs = env.emu.runs("alice", "faults");
    env.sync("alice/faults");
    let mount = env.mount(&["--metadata-ttl", "0"]);
    let run_dir = |i: usize| mount.join(&format!("alice/faults/{}", runs[i].name));
    assert_eq!(
        std::fs::read_to_string(run_dir(0).join("summary.json"))
            .unwrap()
            .chars()
            .next(),
        Some('{')
    );

    assert!(cluster.cluster().stop().unwrap());
    let started = Instant::now();
    let err = std::fs::read_dir(run_dir(1)).map(|_| ()).unwrap_err();
    eprintln!(
        "with the database stopped: {err} after {:?}",
        started.elapsed()
    );
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    let err = std::fs::metadata(run_dir(2).join("history.jsonl")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");

    cluster.cluster().ensure_running().unwrap();
    assert_eq!(
        std::fs::read_to_string(run_dir(2).join("history.jsonl"))
            .unwrap()
            .lines()
            .count(),
        500,
        "{}",
        mount.log_text()
    );
    assert!(std::fs::read_dir(run_dir(1)).unwrap().count() > 5);
    mount.unmount();
}

/// Runs `op` on a thread; its result, or a panic if it has not returned after a minute (a hung
/// request is the failure this guards against, not a time limit on a slow one).
fn unless_hung<T: Send + 'static>(what: &str, op: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(op());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} hung (over a minute) with the database paused"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_database_gives_eio_in_time_and_reads_resume_after_it() {
    // A cluster of its own: pausing the shared one would stall the other tests.
    let cluster = TempCluster::start().expect("cluster");
    let mirror = Mirror::connect_embedded(cluster.cluster(), "mount", &ConnectOptions::default())
        .await
        .expect("database");
    drop(mirror);
    let mut env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.db_url = cluster.cluster().connection_string("mount");
    let runs = env.emu.runs("alice", "faults");
    env.sync("alice/faults");
    // Nothing cached by the daemon: every stat and read asks the database.
    let mount = env.mount(&["--metadata-ttl", "0"]);
    let run_dir = |i: usize| mount.join(&format!("alice/faults/{}", runs[i].name));
    assert!(std::fs::read_dir(run_dir(0)).unwrap().count() > 5);

    // Every server process stopped, as a swapped-out or frozen host would be: connections
    // stay open and nothing answers.
    let pid_file = cluster.cluster().dir().join("data/postmaster.pid");
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    sh_ok(&format!("kill -STOP {pid} $(pgrep -P {pid})"));
    let paused = scopeguard(move || sh(&format!("kill -CONT {pid} $(pgrep -P {pid})")));

    for (what, path) in [
        ("stat of a run directory", run_dir(1)),
        ("stat of history.jsonl", run_dir(2).join("history.jsonl")),
    ] {
        let started = Instant::now();
        let result = unless_hung(what, move || std::fs::metadata(&path).map(drop));
        let err = result.unwrap_err();
        eprintln!(
            "{what}, database paused: {err} after {:?}",
            started.elapsed()
        );
        assert_eq!(err.raw_os_error(), Some(libc::EIO), "{what}: {err}");
    }
    let history = run_dir(0).join("history.jsonl");
    let started = Instant::now();
    let read = unless_hung("a read", move || std::fs::read(&history).map(drop));
    eprintln!(
        "read of history.jsonl, database paused: {read:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(read.unwrap_err().raw_os_error(), Some(libc::EIO));

    drop(paused); // SIGCONT
    assert_eq!(
        std::fs::read_to_string(run_dir(2).join("history.jsonl"))
            .unwrap()
            .lines()
            .count(),
        500,
        "{}",
        mount.log_text()
    );
    assert!(std::fs::read_dir(run_dir(1)).unwrap().count() > 5);
    mount.unmount();
}

/// Runs `f` when dropped (also when the test panics).
fn scopeguard<F: FnOnce() -> R, R>(f: F) -> impl Drop {
    struct Guard<F: FnOnce() -> R, R>(Option<F>);
    impl<F: FnOnce() -> R, R> Drop for Guard<F, R> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_or_objects_give_eacces() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "faults");
    env.sync("alice/faults");
    let mount = env.mount_with_env(&["--no-cache"], &FAST_RETRIES);
    let file = |i: usize| {
        let path = mount.join(&format!("alice/faults/{}/output.log", runs[i].name));
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
        path
    };
    let (first, second) = (file(0), file(1));
    // W&B refuses the object: 403 on its download and on asking for a new URL.
    env.emu.set_faults(FaultSettings {
        error_burst: Some(ErrorBurst {
            remaining: u32::MAX,
            status: 403,
            scope: FaultScope::All,
        }),
        ..FaultSettings::default()
    });
    let err = std::fs::read(&first).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "403: {err}");
    env.emu.set_faults(FaultSettings::default());
    // W&B refuses the credentials: the key was revoked (401), and the signed URLs the mount
    // knows have expired, so reading needs a new one.
    env.emu.app().api_keys.write().clear();
    env.emu.revoke_signed_urls();
    let err = std::fs::read(&second).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES), "401: {err}");
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_leaves_enotconn_which_unmount_clears() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    env.sync("alice/faults");
    let mount = env.mount(&[]);
    let root_ino = std::fs::metadata(&mount.path).unwrap().ino();
    assert_eq!(root_ino, 1);
    let project = mount.join("alice/faults");
    let mut open = std::fs::File::open(
        std::fs::read_dir(&project)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.join("history.jsonl").exists())
            .unwrap()
            .join("history.jsonl"),
    )
    .unwrap();
    sh_ok(&format!("kill -9 {}", mount.pid));
    wait_for_exit(mount.pid);
    let mut buf = [0u8; 10];
    // A read through an open handle, and any new access: ENOTCONN.
    let err = open.read(&mut buf).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    // (What the kernel still caches may be answered from its cache; anything it must ask
    // the daemon for fails.)
    let err = std::fs::metadata(project.join("never-looked-up")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    drop(open);

    let out = std::process::Command::new(WANDBFS)
        .arg("unmount")
        .arg(&mount.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("daemon was gone"));
    // A plain directory again.
    assert_ne!(std::fs::metadata(&mount.path).unwrap().ino(), 1);
    assert!(std::fs::read_dir(&mount.path).unwrap().next().is_none());

    // Busy: said so, and --lazy detaches it.
    let mount = env.mount(&[]);
    let holder = std::process::Command::new("sleep")
        .arg("600")
        .current_dir(mount.join("alice"))
        .spawn()
        .unwrap();
    let out = std::process::Command::new(WANDBFS)
        .arg("unmount")
        .arg(&mount.path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "{}",
        text(&out)
    );
    let out = std::process::Command::new(WANDBFS)
        .args(["unmount", "--lazy"])
        .arg(&mount.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
    drop(mount);
}
