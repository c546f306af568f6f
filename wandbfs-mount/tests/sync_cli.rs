//! `wandbfs sync` as a real process against an in-process emulator and a throwaway Postgres:
//!
//! - **Crash safety**: the process is killed with SIGKILL at ≥ 10 random moments of a large
//!   sync (while rows keep arriving on live runs and a finished run is edited), resumed each
//!   time; the final mirror equals the emulator's ground truth exactly — every row of every
//!   run, no duplicates, run fields equal.
//! - **Upgrade**: a v1 mirror being upgraded by `wandbfs` is killed with SIGKILL dozens of times
//!   mid-upgrade; the restarts finish it with every stream's bytes, rows and keys intact.
//! - **Faults**: under a 429/5xx/reset storm with one poisoned run, the sync completes every
//!   other run, exits with status 2, and both summaries (JSON and text) name the poisoned run.

#[path = "../../tests/sync_support/truth.rs"]
mod truth;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;
use wandb_emulator::{
    Emulator, EmulatorConfig, FaultScope, FaultSettings, RateLimitFault, RequestFault, RunKey,
    SeedSpec,
};
use wandbfs::mirror::testing::v1::{self, V1Stream};
use wandbfs::mirror::testing::{
    TestDatabase, empty_database, fresh_database, raw_client, shared_cluster,
};
use wandbfs::mirror::{ConnectOptions, Mirror, RunPk, Stream};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

/// A `wandbfs sync` command against `emu`, writing into `db`, isolated from the user's W&B
/// settings.
fn sync_command(
    emu: &Emulator,
    db: &TestDatabase,
    home: &std::path::Path,
    args: &[&str],
) -> Command {
    sync_command_on(emu, &db.name, home, args)
}

/// [`sync_command`] writing into the database `name` of the shared test cluster.
fn sync_command_on(emu: &Emulator, name: &str, home: &std::path::Path, args: &[&str]) -> Command {
    let url = shared_cluster()
        .expect("cluster")
        .cluster()
        .connection_string(name);
    let mut cmd = Command::new(WANDBFS);
    cmd.arg("sync")
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("WANDB_BASE_URL", emu.base_url())
        .env("WANDB_API_KEY", emu.api_key())
        .env("WANDBFS_DATABASE_URL", url)
        .stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn new_rows(last_step: i64, n: i64, salt: u64) -> Vec<String> {
    (last_step + 1..=last_step + n)
        .map(|s| {
            format!(
                r#"{{"_step":{s},"loss":{},"salt":{salt},"nested":{{"ü":[1,NaN]}}}}"#,
                1.0 / (s + 1) as f64
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_moments_then_resume_converges_exactly() {
    const ENTITY: &str = "emulator";
    const PROJECT: &str = "crash";
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(40)
        .steps(12_500)
        .keys(20)
        .files(4)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = fresh_database().await.expect("throwaway Postgres");
    let home = tempfile::tempdir().expect("home");
    let target = format!("{ENTITY}/{PROJECT}");
    let args = [
        target.as_str(),
        "--quiet",
        "--max-rps",
        "0",
        "--jobs",
        "4",
        "--history-page-rows",
        "1000",
    ];
    let keys = emu.runs(ENTITY, PROJECT);
    let live: Vec<RunKey> = keys
        .iter()
        .filter(|k| emu.run_info(k).is_some_and(|i| i.state == "running"))
        .cloned()
        .collect();
    assert!(!live.is_empty());

    let sql = db.raw_client().await.unwrap();
    let mirrored = || async {
        // Rows per block, summed: cheap at any size, so the polling below sees progress within
        // milliseconds (counting the `history` view unpacks every block and lagged by seconds,
        // long enough for the sync to finish before the kill it was waiting for).
        sql.query_one(
            "SELECT coalesce(sum(n_rows), 0)::bigint FROM wandb.stream_blocks WHERE stream = 1",
            &[],
        )
        .await
        .unwrap()
        .get::<_, i64>(0)
    };
    let mut progress = Vec::new();
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut attempts = 0;
    let started = Instant::now();
    // Where to kill is chosen by progress, not by wall time, so that the kills land during the
    // ingest however fast this machine is: kill k waits until the mirror holds about
    // (k + U(0.1, 0.9)) / KILLS of 90% of the seeded rows (the last 10% are margin, so the
    // sync cannot finish between the poll that sees the threshold and the kill). The first two kills come after a short
    // random delay instead, to hit the listing and metadata phases too.
    const KILLS: usize = 12;
    let total_seeded = 40 * 12_500_i64;
    while kills < KILLS {
        attempts += 1;
        assert!(
            attempts < 40,
            "the sync kept finishing before it could be killed"
        );
        let mut child: Child = sync_command(&emu, &db, home.path(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("wandbfs starts");
        if kills < 2 {
            tokio::time::sleep(Duration::from_millis(rng.random_range(30..300))).await;
        } else {
            let fraction = 0.9 * (kills as f64 + rng.random_range(0.1..0.9)) / KILLS as f64;
            let threshold = (total_seeded as f64 * fraction) as i64;
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait().expect("poll").is_none()
                && mirrored().await < threshold
                && Instant::now() < deadline
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            // Already past the threshold (a slow previous kill): still kill mid-flight.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..20))).await;
        }
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix.
            let status = child.wait().expect("reap");
            assert!(!status.success());
            kills += 1;
            progress.push(mirrored().await);
        } else {
            let out = child.wait_with_output().expect("output");
            assert!(out.status.success(), "{}", text(&out));
        }
        // The source keeps changing between attempts: rows arrive on live runs, a finished
        // run is edited.
        let run = &live[kills % live.len()];
        let last = emu.run_info(run).unwrap().last_step.unwrap();
        emu.append_history(run, &new_rows(last, rng.random_range(1..300), kills as u64))
            .unwrap();
        if kills % 4 == 1 {
            let tags = format!("tag-{kills}");
            emu.set_tags(&keys[0], &[tags.as_str(), "crash"]).unwrap();
        }
    }
    eprintln!(
        "{kills} kills in {attempts} attempts over {:.1}s; rows mirrored at each kill: \
         {progress:?}",
        started.elapsed().as_secs_f64()
    );
    // The kills landed while history was being written, not only before or after it.
    let total = 40 * 12_500;
    let mid_ingest = progress.iter().filter(|&&n| n > 0 && n < total).count();
    assert!(mid_ingest >= 8, "{progress:?}");

    // Resume to the end: success, then nothing left to do.
    let out = sync_command(
        &emu,
        &db,
        home.path(),
        &[&target, "--json", "--max-rps", "0"],
    )
    .output()
    .expect("wandbfs runs");
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(report["failures"], serde_json::json!([]), "{report}");
    let out = sync_command(
        &emu,
        &db,
        home.path(),
        &[&target, "--json", "--max-rps", "0"],
    )
    .output()
    .expect("wandbfs runs");
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(report["rows"], 0, "{report}");
    assert_eq!(report["runs_synced"], 0, "{report}");

    let rows = truth::assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
    assert!(rows > 40 * 12_500, "{rows}");
    // No duplicates anywhere.
    let dupes: i64 = sql
        .query_one(
            "SELECT count(*) FROM (SELECT run_pk, step FROM wandb.history
                                   GROUP BY 1, 2 HAVING count(*) > 1) d",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dupes, 0);
    eprintln!(
        "mirror equals the emulator: {rows} rows in {} runs",
        keys.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_and_a_poisoned_run_fail_only_that_run_with_status_2() {
    const ENTITY: &str = "emulator";
    const PROJECT: &str = "faults";
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(8)
        .steps(300)
        .keys(6)
        .files(3)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let poisoned = emu.runs(ENTITY, PROJECT)[2].clone();
    let mut faults = FaultSettings {
        rate_limit: Some(RateLimitFault {
            fraction: 0.25,
            retry_after: "0.01".into(),
            scope: FaultScope::Graphql,
        }),
        reset: Some(RequestFault::fraction(0.03, FaultScope::Graphql)),
        ..FaultSettings::default()
    };
    faults.poisoned_runs.insert(poisoned.clone());
    emu.set_faults(faults);
    let db = fresh_database().await.expect("throwaway Postgres");
    let home = tempfile::tempdir().expect("home");
    let target = format!("{ENTITY}/{PROJECT}");
    let retry = [
        ("WANDB__GRAPHQL_RETRY_MAX", "11"),
        ("WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS", "0.005"),
        ("WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS", "0.04"),
    ];

    let out = sync_command(
        &emu,
        &db,
        home.path(),
        &[&target, "--json", "--max-rps", "0"],
    )
    .envs(retry)
    .output()
    .expect("wandbfs runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json summary");
    assert_eq!(report["runs_synced"], 7, "{report}");
    assert_eq!(report["runs_failed"], 1, "{report}");
    assert_eq!(
        report["failures"][0]["run"],
        poisoned.to_string(),
        "{report}"
    );
    assert!(report["api"]["retries"].as_u64().unwrap() > 0, "{report}");
    truth::assert_mirror_matches_except(&emu, &db, ENTITY, PROJECT, &[&poisoned.name]).await;

    // The human summary names it too, and a repeat attempt fails the same way.
    let out = sync_command(&emu, &db, home.path(), &[&target, "--max-rps", "0"])
        .envs(retry)
        .output()
        .expect("wandbfs runs");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("run {poisoned} failed")),
        "{}",
        text(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_mode_follows_a_live_run_until_interrupted() {
    const ENTITY: &str = "emulator";
    const PROJECT: &str = "watched";
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(3)
        .steps(100)
        .keys(4)
        .files(2)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let live = RunKey::new(ENTITY, PROJECT, "tailme01");
    assert!(emu.create_run(&live));
    emu.append_history(&live, &new_rows(-1, 10, 0)).unwrap();
    let db = fresh_database().await.expect("throwaway Postgres");
    let home = tempfile::tempdir().expect("home");
    let target = format!("{ENTITY}/{PROJECT}");
    let mut child = sync_command(
        &emu,
        &db,
        home.path(),
        &[&target, "--interval", "1", "--json", "--max-rps", "0"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("wandbfs starts");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<serde_json::Value>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(report) = serde_json::from_str(&line) {
                let _ = tx.send(report);
            }
        }
    });
    let next_report = || {
        // Ends with an error when wandbfs exits (its stdout closes): no wall-clock bound.
        rx.recv().expect("a summary per round")
    };
    let first = next_report();
    assert_eq!(first["rows"], 3 * 100 + 10, "{first}");

    // Rows arrive on the live run; a later round picks them up (and only them).
    emu.append_history(&live, &new_rows(9, 25, 1)).unwrap();
    let mut picked = 0;
    for _ in 0..10 {
        let report = next_report();
        picked += report["rows"].as_u64().unwrap();
        if picked >= 25 {
            break;
        }
    }
    assert_eq!(picked, 25);

    // SIGINT between rounds ends the watch cleanly.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("exit");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("runs listed"),
        "plain progress lines: {stderr}"
    );
    truth::assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_this_machine_is_not_paced_unless_asked() {
    let spec = SeedSpec::new("emulator", "local")
        .runs(2)
        .steps(50)
        .keys(3)
        .files(1)
        .bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = fresh_database().await.expect("throwaway Postgres");
    let home = tempfile::tempdir().expect("home");
    let note = "no request-rate limit";

    let out = sync_command(&emu, &db, home.path(), &["emulator/local"])
        .output()
        .expect("wandbfs runs");
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(note) && stderr.contains(emu.base_url()),
        "{}",
        text(&out)
    );

    let out = sync_command(
        &emu,
        &db,
        home.path(),
        &["emulator/local", "--max-rps", "5"],
    )
    .output()
    .expect("wandbfs runs");
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains(note),
        "{}",
        text(&out)
    );
}

/// Runs of `ent/proj` with at least one stream converted to blocks (0 before migration 4).
async fn converted_runs(sql: &tokio_postgres::Client) -> i64 {
    let blocks: bool = sql
        .query_one("SELECT to_regclass('wandb.stream_blocks') IS NOT NULL", &[])
        .await
        .expect("probe")
        .get(0);
    if !blocks {
        return 0;
    }
    sql.query_one(
        "SELECT count(DISTINCT run_pk) FROM wandb.stream_blocks",
        &[],
    )
    .await
    .expect("progress")
    .get(0)
}

/// Whether the upgrade has finished: the schema is current and the v1 tables are gone.
async fn upgraded(sql: &tokio_postgres::Client) -> bool {
    sql.query_one(
        "SELECT to_regclass('wandb.stream_blocks') IS NOT NULL
            AND to_regclass('wandb.stream_chunks_v1') IS NULL",
        &[],
    )
    .await
    .expect("probe")
    .get(0)
}

/// A v1 mirror (a tuple per step, text in chunks) is upgraded by the first `wandbfs` that opens
/// it for writing; that process is killed with SIGKILL again and again in the middle of the
/// upgrade, each time once it has converted one to three more runs. Every restart resumes where
/// the last committed run left off, and at the end every stream has its exact bytes, rows and
/// keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_v1_upgrade_then_rerun_loses_nothing() {
    let emu = Emulator::start_with(EmulatorConfig::default()).expect("emulator");
    let config = empty_database().await.expect("an empty database");
    let name = config.get_dbname().expect("a database name").to_string();
    let mut sql = raw_client(&config).await.expect("connect");
    v1::create_schema(&mut sql).await.expect("v1 schema");
    const RUNS: usize = 60;
    let mut runs = Vec::new();
    for r in 0..RUNS {
        let history = V1Stream::new((0..2_000).filter(|s| s % 31 != 7).collect(), |s| {
            format!(
                r#"{{"_step":{s},"loss":{},"run":{r},"ü":{{"x":NaN}}}}"#,
                1.0 / (s + 1) as f64
            )
        });
        let system = V1Stream::new((0..100).collect(), |i| {
            format!(
                r#"{{"_timestamp":{}.25,"cpu":{}}}"#,
                1_700_000_000 + i,
                i % 9
            )
        });
        let pk = v1::write_run(&sql, &format!("run{r:03}"), &history, &system, 64 * 1024)
            .await
            .expect("a v1 run");
        runs.push((pk, history, system));
    }

    let home = tempfile::tempdir().expect("home");
    let mut rng = rand::rng();
    let (mut kills, mut attempts, mut last) = (0usize, 0usize, 0i64);
    let mut progress = Vec::new();
    while !upgraded(&sql).await {
        attempts += 1;
        // Each kill comes after at least one more converted run: RUNS kills at most, then the
        // attempt that finishes.
        assert!(
            attempts <= RUNS + 10,
            "the upgrade stopped making progress: {progress:?}"
        );
        // Any command that opens the mirror for writing upgrades it first; the sync itself
        // (of a project the emulator does not have) is beside the point.
        let mut child = sync_command_on(&emu, &name, home.path(), &["ent/proj", "--quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("wandbfs starts");
        let target = last + rng.random_range(1..=3);
        while child.try_wait().expect("poll").is_none() && converted_runs(&sql).await < target {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if child.try_wait().expect("poll").is_none() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            kills += 1;
            last = converted_runs(&sql).await;
            progress.push(last);
        }
    }
    eprintln!("{kills} kills in {attempts} attempts; runs converted at each kill: {progress:?}");
    let mid_upgrade = progress
        .iter()
        .filter(|&&n| n > 0 && n < RUNS as i64)
        .count();
    assert!(mid_upgrade >= 5, "{progress:?}");

    let mirror = Mirror::connect_config(config.clone(), &ConnectOptions::default())
        .await
        .expect("the upgraded mirror opens");
    for (pk, history, system) in &runs {
        for (stream, v1) in [(Stream::History, history), (Stream::System, system)] {
            let run = RunPk(*pk);
            let len = mirror.stream_len(run, stream).await.expect("length");
            assert_eq!(len, v1.text.len() as u64, "run #{pk} {stream:?}");
            let bytes = mirror
                .read_stream(run, stream, 0, len as usize + 100)
                .await
                .expect("read");
            assert!(bytes == v1.text, "run #{pk} {stream:?}: bytes differ");
        }
        let steps: Vec<i64> = sql
            .query(
                "SELECT step FROM wandb.history WHERE run_pk = $1 ORDER BY step",
                &[pk],
            )
            .await
            .expect("steps")
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(steps, history.keys, "run #{pk}");
        let state = mirror.run_sync_state(RunPk(*pk)).await.expect("state");
        assert_eq!(state.history_rows, history.keys.len() as u64);
        assert_eq!(state.system_rows, system.keys.len() as u64);
    }
}
