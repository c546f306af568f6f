//! Freshness: a run the mirror does not hold is synced on first access (and costs nothing
//! after); `--sync` keeps a running run's `history.jsonl` growing under `tail -f` and new runs
//! appearing in `ls`; scoped mounts; `--offline` serves the mirror alone, never a request.

mod mount_support;

use std::io::BufRead as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use mount_support::*;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use secrecy::SecretString;
use wandb_emulator::{EmulatorConfig, RunKey, SeedSpec};
use wandbfs::client::{Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::store::WandbStore;

/// A watchdog for steps that wait for an event: generous, so that a slow machine never fails
/// a test that works; it only turns a broken feature into a failure instead of a hang.
const WATCHDOG: Duration = Duration::from_secs(300);

fn live_store(env: &Env) -> WandbStore {
    let overrides = Overrides {
        base_url: Some(env.emu.base_url().to_owned()),
        api_key: Some(SecretString::from(env.emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).unwrap();
    let mut config = ClientConfig::default();
    config.rate.requests_per_second = 0.0;
    WandbStore::new(Client::new(settings, config).unwrap())
}

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "live")
        .runs(10)
        .steps(1_000)
        .keys(5)
        .files(4)
        .bigfile(0)
}

fn rows(from: i64, n: i64) -> Vec<String> {
    (from..from + n)
        .map(|s| {
            format!(
                r#"{{"_step":{s},"loss":{},"tag":"appended"}}"#,
                1.0 / (s + 1) as f64
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_not_yet_mirrored_is_synced_on_first_access() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let run = env.emu.runs("alice", "live")[0].clone();
    assert_eq!(env.emu.run_info(&run).unwrap().state, "finished");
    let truth = live_store(&env)
        .get(&Path::parse(format!("alice/live/{}/history.jsonl", run.name)).unwrap())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        env.db
            .mirror
            .resolve_run("alice", "live", &run.name)
            .await
            .unwrap()
            .is_none()
    );

    let mount = env.mount(&[]);
    let history = mount.join(&format!("alice/live/{}/history.jsonl", run.name));
    // The first stat syncs the run into the mirror; the size is exact.
    let size = std::fs::metadata(&history).unwrap().len();
    assert_eq!(size, truth.len() as u64);
    let pk = env
        .db
        .mirror
        .resolve_run("alice", "live", &run.name)
        .await
        .unwrap()
        .expect("synced by the first access");
    assert_eq!(
        env.db
            .mirror
            .run_sync_state(pk)
            .await
            .unwrap()
            .history_bytes,
        size
    );
    // From then on, the mirror serves it: no request.
    env.emu.reset_counters();
    assert_eq!(std::fs::read(&history).unwrap(), truth);
    std::fs::metadata(&history).unwrap();
    sh_ok(&format!(
        "ls -l {} > /dev/null",
        mount.join(&format!("alice/live/{}", run.name)).display()
    ));
    let counters = env.emu.counters();
    assert_eq!(counters.total.requests, 0, "{:?}", counters.by_operation);
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_f_follows_a_running_run_and_new_runs_appear() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "live");
    let running = runs
        .iter()
        .find(|r| env.emu.run_info(r).unwrap().state == "running")
        .expect("a running run")
        .clone();
    env.sync("alice/live");
    let mount = env.mount(&["--sync", "alice/live", "--sync-interval", "0.5"]);
    let history = mount.join(&format!("alice/live/{}/history.jsonl", running.name));

    // From the current end on, by byte offset: whenever tail starts reading, it prints exactly
    // what was appended after this point.
    let start = std::fs::metadata(&history).unwrap().len();
    let mut tail = Command::new("tail")
        .arg("-c")
        .arg(format!("+{}", start + 1))
        .arg("-f")
        .arg(&history)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = tail.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Rows arrive in W&B in three bursts; each shows in tail -f.
    let last = env.emu.run_info(&running).unwrap().last_step.unwrap();
    let mut next = last + 1;
    for _ in 0..3 {
        let appended = rows(next, 5);
        env.emu.append_history(&running, &appended).unwrap();
        for want in &appended {
            let got = rx
                .recv_timeout(WATCHDOG)
                .unwrap_or_else(|_| panic!("tail -f never showed {want}\n{}", mount.log_text()));
            assert_eq!(&got, want);
        }
        next += 5;
    }
    let _ = tail.kill();
    let _ = tail.wait();
    // The file is whole and exact afterwards.
    let body = std::fs::read_to_string(&history).unwrap();
    assert!(
        body.ends_with(&format!("{}\n", rows(next - 1, 1)[0])),
        "{}",
        &body[body.len() - 200..]
    );
    assert_eq!(body.lines().count() as i64, next);

    // A new run shows in `ls` once the background sync has seen it.
    let new = RunKey::new("alice", "live", "brandnew1");
    assert!(env.emu.create_run(&new));
    env.emu.append_history(&new, &rows(0, 3)).unwrap();
    let project = mount.join("alice/live");
    let started = std::time::Instant::now();
    loop {
        if std::fs::read_dir(&project)
            .unwrap()
            .any(|e| e.unwrap().file_name() == "brandnew1")
        {
            break;
        }
        assert!(started.elapsed() < WATCHDOG, "{}", mount.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = sh_ok(&format!(
        "wc -l < {}/brandnew1/history.jsonl",
        project.display()
    ));
    assert_eq!(lines.trim(), "3");
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_mounts_and_offline_mounts() {
    let env = Env::new(
        EmulatorConfig::default().seed(spec()).seed(
            SeedSpec::new("alice", "elsewhere")
                .runs(2)
                .steps(10)
                .bigfile(0),
        ),
    )
    .await;
    let run = env.emu.runs("alice", "live")[1].clone();
    env.sync("alice/live");

    // A project at the mount's root.
    let mount = env.mount(&["alice/live"]);
    let names: Vec<String> = std::fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 10, "{names:?}");
    assert!(names.contains(&run.name));
    mount.unmount();

    // A run at the mount's root.
    let mount = env.mount(&[&format!("alice/live/{}", run.name)]);
    let history = std::fs::read_to_string(mount.join("history.jsonl")).unwrap();
    assert_eq!(history.lines().count(), 1_000);
    mount.unmount();

    // Offline: the mirror alone; what it lacks is missing at once; no request at all.
    env.emu.reset_counters();
    let mount = env.mount(&["--offline"]);
    let entities: Vec<String> = std::fs::read_dir(&mount.path)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(entities, ["alice"]);
    let projects: Vec<String> = std::fs::read_dir(mount.join("alice"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        projects,
        ["live"],
        "the unsynced project is not there offline"
    );
    let err = std::fs::metadata(mount.join("alice/elsewhere")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let synced = mount.join(&format!("alice/live/{}", run.name));
    assert_eq!(
        std::fs::read_to_string(synced.join("history.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1_000
    );
    // A run file never read online is not in the content cache: EIO, said in the log.
    let err = std::fs::read(synced.join("output.log")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert!(mount.log_text().contains("offline"), "{}", mount.log_text());
    assert_eq!(env.emu.counters().total.requests, 0);
    mount.unmount();
}
