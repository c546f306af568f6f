//! `wandbfs db start|status|stop` as separate processes on a real cluster, including two
//! concurrent `db start` processes.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const WANDBFS: &str = env!("CARGO_BIN_EXE_wandbfs");

/// A cluster directory that is stopped and deleted however the test ends.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let root = std::env::temp_dir().join(format!("wandbfs-cli-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        // The server account (when tests run as root) must be able to traverse it.
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch(root)
    }

    fn pg_dir(&self) -> PathBuf {
        self.0.join("pg")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = db(&self.pg_dir(), &["stop"]).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn db(pg_dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(WANDBFS);
    cmd.arg("db")
        .args(args)
        .arg("--pg-dir")
        .arg(pg_dir)
        .env_remove("WANDBFS_DATABASE_URL");
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

#[test]
fn two_concurrent_start_processes_share_one_server_then_status_and_stop() {
    let scratch = Scratch::new("conc");
    let pg_dir = scratch.pg_dir();

    let status = db(&pg_dir, &["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("not initialized"));

    let spawn = || {
        db(&pg_dir, &["start"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(), spawn());
    let outs = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    for out in &outs {
        assert!(out.status.success(), "{}", text(out));
    }
    let created = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("created and started"))
        .count();
    let reused = outs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("already running"))
        .count();
    assert_eq!(
        (created, reused),
        (1, 1),
        "{}\n{}",
        text(&outs[0]),
        text(&outs[1])
    );

    let status = db(&pg_dir, &["status", "--json"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["kind"], "embedded");
    let pid = json["pid"].as_u64().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    assert!(
        json["connection_string"]
            .as_str()
            .unwrap()
            .contains("dbname=wandbfs")
    );

    let stop = db(&pg_dir, &["stop"]).output().unwrap();
    assert!(stop.status.success(), "{}", text(&stop));
    assert!(String::from_utf8_lossy(&stop.stdout).contains("stopped"));
    let status = db(&pg_dir, &["status"]).output().unwrap();
    assert_eq!(status.status.code(), Some(3), "{}", text(&status));
    assert!(String::from_utf8_lossy(&status.stdout).contains("stopped"));
}

#[test]
fn missing_binaries_and_bad_urls_fail_with_clear_messages() {
    let scratch = Scratch::new("err");
    let out = db(
        &scratch.pg_dir(),
        &["start", "--pg-bin", "/nonexistent/pgbin"],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("apt-get install postgresql"), "{stderr}");
    assert!(stderr.contains("--database-url"), "{stderr}");

    let out = Command::new(WANDBFS)
        .args(["db", "status"])
        .env("WANDBFS_DATABASE_URL", "mysql://user:hunter2@localhost/db")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a PostgreSQL URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");

    // The password from the environment is not shown by --help either.
    let out = Command::new(WANDBFS)
        .args(["db", "--help"])
        .env("WANDBFS_DATABASE_URL", "postgresql://u:hunter2@h/db")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hunter2"));
}

#[test]
fn status_of_an_external_database_reports_versions_and_normalises_python_urls() {
    let scratch = Scratch::new("ext");
    let pg_dir = scratch.pg_dir();
    let start = db(&pg_dir, &["start"]).output().unwrap();
    assert!(start.status.success(), "{}", text(&start));
    let socket_dir = {
        let status = db(&pg_dir, &["status", "--json"]).output().unwrap();
        let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
        json["socket_dir"].as_str().unwrap().to_string()
    };
    // The SQLAlchemy spelling a Python user would paste, pointing at the running cluster.
    let url = format!("postgresql+psycopg://wandbfs:secretpw@/wandbfs?host={socket_dir}");
    let out = Command::new(WANDBFS)
        .args(["db", "status", "--json"])
        .env("WANDBFS_DATABASE_URL", &url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("+psycopg"),
        "normalisation is reported: {stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["kind"], "external");
    assert_eq!(json["schema_version"], json["supported_schema_version"]);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr);
    assert!(!all.contains("secretpw"), "the password leaked: {all}");
}

/// Reconfigures a throwaway cluster to take TCP connections on 127.0.0.1 with password
/// (SCRAM) authentication for role `wandbfs` (password `password`), and returns the port.
fn serve_with_password(temp: &wandbfs::mirror::embedded::TempCluster, password: &str) -> u16 {
    let cluster = temp.cluster();
    let status = cluster.status().unwrap();
    let sql = format!("ALTER ROLE wandbfs PASSWORD '{password}'");
    let out = cluster
        .account()
        .command(status.bin_dir.join("psql"))
        .arg("-h")
        .arg(&status.socket_dir)
        .args([
            "-U",
            "wandbfs",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &sql,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    temp.serve_tcp(
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
        "password_encryption = scram-sha-256",
    )
    .unwrap()
}

#[test]
fn passwords_come_from_pgpassword_or_pgpass_and_one_in_argv_is_warned_about() {
    let temp = wandbfs::mirror::embedded::TempCluster::start().unwrap();
    let password = "pw-4f1b9c";
    let port = serve_with_password(&temp, password);
    let home = tempfile::tempdir().unwrap();
    let bare = format!("postgresql://wandbfs@127.0.0.1:{port}/postgres");
    let status = |url_in_argv: Option<&str>, env: &[(&str, &str)]| {
        let mut cmd = Command::new(WANDBFS);
        cmd.args(["db", "status", "--json"])
            .env_remove("WANDBFS_DATABASE_URL")
            .env_remove("PGPASSWORD")
            .env_remove("PGPASSFILE")
            .env("HOME", home.path());
        if let Some(url) = url_in_argv {
            cmd.args(["--database-url", url]);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let all = text(&out);
        assert!(!all.contains(password), "the password leaked: {all}");
        out
    };
    let warning = "visible to every user";

    // No password anywhere: the server refuses, and the error says why.
    let out = status(Some(&bare), &[]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("password"), "{}", text(&out));

    // PGPASSWORD, like libpq.
    let out = status(Some(&bare), &[("PGPASSWORD", password)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(warning), "{}", text(&out));

    // ~/.pgpass: used when private, ignored when others can read it.
    let pgpass = home.path().join(".pgpass");
    std::fs::write(
        &pgpass,
        format!("# mirror\nother.host:*:*:*:wrong\n127.0.0.1:{port}:postgres:wandbfs:{password}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = status(Some(&bare), &[]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = status(Some(&bare), &[]);
    assert!(
        !out.status.success(),
        "a world-readable ~/.pgpass is ignored: {}",
        text(&out)
    );

    // $PGPASSFILE elsewhere.
    let elsewhere = home.path().join("mirror.pgpass");
    std::fs::write(&elsewhere, format!("*:*:*:wandbfs:{password}\n")).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = status(Some(&bare), &[("PGPASSFILE", elsewhere.to_str().unwrap())]);
    assert!(out.status.success(), "{}", text(&out));

    // A password on the command line works, with a warning; in the environment, without one.
    let with_password = format!("postgresql://wandbfs:{password}@127.0.0.1:{port}/postgres");
    let out = status(Some(&with_password), &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains(warning), "{}", text(&out));
    let out = status(None, &[("WANDBFS_DATABASE_URL", &with_password)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains(warning), "{}", text(&out));
}
