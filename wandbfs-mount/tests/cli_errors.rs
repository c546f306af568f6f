//! A user error is one line (`error: …`, plus a `hint:` line where there is a fix) and a
//! non-zero exit status — with `RUST_BACKTRACE=1` set, as it is in many developers' shells.

use std::process::{Command, Output, Stdio};

use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};
use wandbfs::mirror::testing::{TestDatabase, fresh_database, shared_cluster};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

/// `wandbfs <args>` isolated from the user's settings, with backtraces requested.
fn wandbfs(home: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(WANDBFS)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("WANDB_CONFIG_DIR", home.join("wandb"))
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("wandbfs runs")
}

fn database_url(db: &TestDatabase) -> String {
    shared_cluster()
        .expect("cluster")
        .cluster()
        .connection_string(&db.name)
}

/// Asserts a clean user error: non-zero, `error:` first, at most a hint after it, no
/// backtrace; returns stderr.
#[track_caller]
fn assert_user_error(out: &Output, expected_code: i32, needle: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = format!("status {:?}\nstderr:\n{stderr}", out.status.code());
    assert_eq!(out.status.code(), Some(expected_code), "{report}");
    assert!(!stderr.contains("backtrace"), "{report}");
    assert!(!stderr.contains("Stack"), "{report}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{report}");
    assert!(errors[0].contains(needle), "{report}");
    let others: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("error:") && !l.starts_with("hint:"))
        .filter(|l| !l.starts_with("wandbfs sync:") && !l.starts_with("wandbfs:"))
        .collect();
    assert!(others.is_empty(), "only error/hint/notes lines: {report}");
    stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_errors_are_one_line_without_a_backtrace() {
    let emu = Emulator::start_with(
        EmulatorConfig::default().seed(SeedSpec::new("alice", "proj").runs(2).steps(5).bigfile(0)),
    )
    .expect("emulator");
    let db = fresh_database().await.expect("throwaway Postgres");
    let url = database_url(&db);
    let home = tempfile::tempdir().unwrap();
    let key = emu.api_key();
    let good = [
        ("WANDB_BASE_URL", emu.base_url()),
        ("WANDB_API_KEY", key.as_str()),
        ("WANDBFS_DATABASE_URL", url.as_str()),
    ];

    // A malformed target.
    let out = wandbfs(home.path(), &good, &["sync", "justonename"]);
    assert_user_error(&out, 1, "invalid sync target");

    // No credentials at all.
    let out = wandbfs(
        home.path(),
        &[
            ("WANDB_BASE_URL", emu.base_url()),
            ("WANDBFS_DATABASE_URL", &url),
        ],
        &["sync", "alice/proj"],
    );
    let stderr = assert_user_error(&out, 1, "no W&B credentials");
    assert!(stderr.contains("WANDB_API_KEY"), "{stderr}");

    // A key the server refuses: one line, the key nowhere.
    let wrong = "local-0000000000000000000000000000000000000000";
    let out = wandbfs(
        home.path(),
        &[
            ("WANDB_BASE_URL", emu.base_url()),
            ("WANDB_API_KEY", wrong),
            ("WANDBFS_DATABASE_URL", &url),
        ],
        &["sync", "alice/proj"],
    );
    let stderr = assert_user_error(&out, 1, "not authenticated");
    assert!(stderr.contains("hint:"), "{stderr}");
    assert!(!stderr.contains(wrong), "{stderr}");

    // A server that does not answer: at once (no retry budget), with the address.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let out = wandbfs(
        home.path(),
        &[
            ("WANDB_BASE_URL", &dead_url),
            ("WANDB_API_KEY", key.as_str()),
            ("WANDBFS_DATABASE_URL", &url),
        ],
        &["sync", "alice/proj"],
    );
    let stderr = assert_user_error(&out, 1, "cannot reach W&B");
    assert!(stderr.contains(&dead_url), "{stderr}");

    // A database URL that is not one.
    let out = wandbfs(
        home.path(),
        &[
            ("WANDB_BASE_URL", emu.base_url()),
            ("WANDB_API_KEY", key.as_str()),
            ("WANDBFS_DATABASE_URL", "mysql://nope"),
        ],
        &["sync", "alice/proj"],
    );
    assert_user_error(&out, 1, "database URL");

    // A database that does not answer.
    let out = wandbfs(
        home.path(),
        &[
            ("WANDB_BASE_URL", emu.base_url()),
            ("WANDB_API_KEY", key.as_str()),
            (
                "WANDBFS_DATABASE_URL",
                "postgresql://nobody@127.0.0.1:1/none",
            ),
        ],
        &["sync", "alice/proj"],
    );
    assert_user_error(&out, 1, "mirror database");

    // The project is being synced by someone else: the summary says so, exit status 2.
    let mirror = &db.mirror;
    let project = mirror
        .upsert_project(&wandbfs::mirror::ProjectRecord {
            entity: "alice".into(),
            name: "proj".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let held = mirror
        .try_lock_project_sync(project)
        .await
        .unwrap()
        .unwrap();
    let out = wandbfs(home.path(), &good, &["sync", "alice/proj"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(stdout.contains("another `wandbfs sync`"), "{stdout}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    held.release().await;

    // And a usage error is clap's: status 2, no backtrace.
    let out = wandbfs(home.path(), &good, &["sync"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("backtrace"));
}

#[test]
fn help_documents_exit_statuses_and_verbosity() {
    let home = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["sync", "--help"]] {
        let out = wandbfs(home.path(), &[], args);
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for needle in ["Exit status:", "130", "--verbose", "--quiet"] {
            assert!(help.contains(needle), "{args:?} lacks {needle}:\n{help}");
        }
    }
}

#[test]
fn verbose_errors_show_their_causes() {
    let home = tempfile::tempdir().unwrap();
    let out = wandbfs(
        home.path(),
        &[("WANDBFS_DATABASE_URL", "mysql://nope")],
        &["-v", "db", "status"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error:"), "{stderr}");
}
