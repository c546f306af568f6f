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
use wandb_emulator::{EmulatorConfig, RunKey, SeedSpec};

/// A watchdog for steps that wait for an event: generous, so that a slow machine never fails
/// a test that works; it only turns a broken feature into a failure instead of a hang.
const WATCHDOG: Duration = Duration::from_secs(300);

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
    assert_eq!(
        names.len(),
        12,
        "10 runs, runs.parquet, runs.jsonl: {names:?}"
    );
    assert!(names.contains(&run.name));
    assert!(names.iter().any(|n| n == "runs.parquet"));
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

/// Rows of a parquet file, from its footer (`None`: not a whole parquet file).
fn parquet_rows(bytes: Vec<u8>) -> Option<i64> {
    use parquet::file::reader::FileReader as _;
    let reader =
        parquet::file::serialized_reader::SerializedFileReader::new(bytes::Bytes::from(bytes))
            .ok()?;
    Some(reader.metadata().file_metadata().num_rows())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_stay_exact_across_a_sync_that_appends_rows() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "live");
    let running = runs
        .iter()
        .find(|r| env.emu.run_info(r).unwrap().state == "running")
        .expect("a running run")
        .clone();
    env.sync("alice/live");
    let mount = env.mount(&["--sync", "alice/live", "--sync-interval", "0.5"]);
    let run_dir = mount.join(&format!("alice/live/{}", running.name));
    let project_dir = mount.join("alice/live");
    let tables = [
        run_dir.join("history.parquet"),
        run_dir.join("system.parquet"),
        project_dir.join("runs.parquet"),
        project_dir.join("runs.jsonl"),
    ];
    // stat size = bytes read, twice (stable while nothing changes).
    let exact = |path: &std::path::Path| {
        let size = std::fs::metadata(path).unwrap().len();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(size, bytes.len() as u64, "stat size of {}", path.display());
        bytes
    };
    let before: Vec<Vec<u8>> = tables.iter().map(|p| exact(p)).collect();
    for (path, bytes) in tables.iter().zip(&before) {
        assert_eq!(
            &exact(path),
            bytes,
            "{} changed with no sync",
            path.display()
        );
    }
    let rows_before = parquet_rows(before[0].clone()).expect("history.parquet");
    let lines = sh_ok(&format!(
        "wc -l < {}",
        run_dir.join("history.jsonl").display()
    ));
    assert_eq!(lines.trim().parse::<i64>().unwrap(), rows_before);

    // Rows appended upstream; the mount's sync picks them up (the event: history.jsonl grows).
    let last = env.emu.run_info(&running).unwrap().last_step.unwrap();
    env.emu
        .append_history(&running, &rows(last + 1, 25))
        .unwrap();
    let history = run_dir.join("history.jsonl");
    let started = std::time::Instant::now();
    loop {
        let lines = sh_ok(&format!("wc -l < {}", history.display()));
        if lines.trim().parse::<i64>().unwrap() == rows_before + 25 {
            break;
        }
        assert!(started.elapsed() < WATCHDOG, "{}", mount.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The tables follow (the kernel is told right after history.jsonl's notice; the event is
    // the new version showing), then are exact and stable again.
    let converged = |path: &std::path::Path, done: &dyn Fn(&[u8]) -> bool| loop {
        let size = std::fs::metadata(path).unwrap().len();
        let bytes = std::fs::read(path).unwrap();
        if size == bytes.len() as u64 && done(&bytes) {
            break;
        }
        assert!(started.elapsed() < WATCHDOG, "{}", mount.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    converged(&tables[0], &|b| {
        parquet_rows(b.to_vec()) == Some(rows_before + 25)
    });
    converged(&tables[2], &|b| b != before[2].as_slice());
    let after: Vec<Vec<u8>> = tables.iter().map(|p| exact(p)).collect();
    assert_eq!(parquet_rows(after[0].clone()), Some(rows_before + 25));
    assert_eq!(parquet_rows(after[2].clone()), Some(runs.len() as i64));
    for (path, bytes) in tables.iter().zip(&after) {
        assert_eq!(
            &exact(path),
            bytes,
            "{} changed with no sync",
            path.display()
        );
    }
    mount.unmount();
}
