//! The `wandb-emulator` binary: startup lines, generated keys, persistence across restarts,
//! clean SDK failure on a wrong key, and no key in any log output.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use support::{Sandbox, TEST_KEY};

struct Server {
    child: Child,
    lines: Vec<(String, String)>,
}

impl Server {
    fn start(args: &[&str], stderr: std::fs::File) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wandb-emulator"))
            .args(args)
            .env("RUST_LOG", "trace")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr))
            .spawn()
            .expect("spawn wandb-emulator");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read stdout");
            if line == "ready" {
                break;
            }
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("unparseable startup line {line:?}"));
            lines.push((k.to_string(), v.to_string()));
        }
        Server { child, lines }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// SIGTERM, then wait for a clean exit.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        // Waits for the exit itself (no wall-clock bound: a slow machine is not a failure).
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "emulator exited with {status}");
    }
}

#[test]
fn prints_machine_readable_urls_and_a_valid_generated_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &["--listen", "127.0.0.1:0"],
        std::fs::File::create(dir.path().join("err")).expect("log"),
    );
    let base = server.get("base_url").expect("base_url line");
    let direct = server.get("direct_url").expect("direct_url line");
    assert!(
        base.starts_with("http://127.0.0.1:")
            && direct.starts_with("http://127.0.0.1:")
            && base != direct
    );
    let key = server.get("api_key").expect("a generated key is printed");
    let secret = key.strip_prefix("local-").expect("local- prefix");
    assert!(
        secret.len() >= 40 && secret.chars().all(|c| c.is_ascii_alphanumeric()),
        "{key}"
    );
    assert_eq!(server.get("entity"), Some("emulator"));
    // The generated key works with the real SDK.
    Sandbox::new().run_ok("smoke.py", &[], base, key, &[]);
    server.stop();
}

#[test]
fn wrong_key_fails_cleanly_and_no_key_reaches_any_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, format!("{TEST_KEY}\n")).expect("key file");
    let log_path = dir.path().join("emulator.log");
    let data_dir = dir.path().join("data");
    let args = [
        "--api-key-file",
        key_file.to_str().expect("utf8"),
        "--data-dir",
        data_dir.to_str().expect("utf8"),
        "--entity",
        "alice",
    ];
    let server = Server::start(&args, std::fs::File::create(&log_path).expect("log"));
    assert_eq!(
        server.get("api_key"),
        None,
        "a configured key is never printed"
    );
    let base = server.get("base_url").expect("base_url").to_string();
    let sandbox = Sandbox::new();

    let wrong = "local-WrongKey9876543210zyxwvutsrqponmlkjihgfedcba";
    let out = sandbox.run(
        "auth_fail.py",
        &[],
        &base,
        wrong,
        &[("SCENARIO_ENTITY", "alice")],
        Duration::from_secs(120),
    );
    assert!(
        out.status.success(),
        "auth_fail.py: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let smoke = sandbox.run_ok("smoke.py", &[], &base, TEST_KEY, &[]);
    server.stop();

    let log = std::fs::read_to_string(&log_path).expect("log");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{TEST_KEY}"));
    let wrong_basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{wrong}"));
    assert!(
        log.contains("status=401") && log.contains("status=200"),
        "the log is not empty:\n{log}"
    );
    for secret in [
        TEST_KEY,
        wrong,
        basic.as_str(),
        wrong_basic.as_str(),
        "TestKey0123",
        "WrongKey9876",
    ] {
        assert!(
            !log.contains(secret),
            "log output contains a credential ({secret})"
        );
    }
    let snapshot =
        std::fs::read_to_string(data_dir.join("state.json")).expect("state saved at shutdown");
    assert!(
        !snapshot.contains("TestKey0123"),
        "the snapshot holds the key"
    );

    // A restarted emulator keeps the run the SDK wrote.
    let path = smoke
        .trim()
        .rsplit(' ')
        .next()
        .expect("smoke prints the run path")
        .to_string();
    let server = Server::start(
        &args,
        std::fs::File::create(dir.path().join("again.log")).expect("log"),
    );
    let base = server.get("base_url").expect("base_url").to_string();
    let check = sandbox.run(
        "read_one.py",
        &[&path],
        &base,
        TEST_KEY,
        &[],
        Duration::from_secs(120),
    );
    server.stop();
    assert!(
        check.status.success(),
        "after restart: {}\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
}

#[tokio::test]
async fn fault_flags_and_seeds_apply() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("keys");
    std::fs::write(&key_file, TEST_KEY).expect("key file");
    let server = Server::start(
        &[
            "--api-key-file",
            key_file.to_str().expect("utf8"),
            "--seed",
            "emulator/p:runs=2,steps=10,keys=3,files=1,bigfile=0",
            "--fault-5xx-burst",
            "1",
            "--fault-5xx-status",
            "502",
            "--poison-run",
            "emulator/p/nosuchrun",
            "--signed-url-ttl",
            "5",
        ],
        std::fs::File::create(dir.path().join("err")).expect("log"),
    );
    let gql = support::gql::Gql::new(server.get("base_url").expect("base_url"), TEST_KEY);
    let count = "query { project(name: \"p\", entityName: \"emulator\") { runCount } }";
    assert_eq!(
        gql.post(count, serde_json::json!({}), "").await.0,
        502,
        "--fault-5xx-burst 1"
    );
    let data = gql.data(count, serde_json::json!({})).await;
    assert_eq!(data["project"]["runCount"], 2, "--seed applied");
    server.stop();
}
