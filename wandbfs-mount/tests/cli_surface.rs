//! The CLI a newcomer meets: `doctor` (green here, and each problem provoked for real: no
//! PostgreSQL programs, /dev/fuse hidden, a wrong key, an unreachable server), the config file
//! (precedence flags > environment > file > defaults, `wandbfs config` with sources and
//! secrets redacted, bad files refused in one line), `completions`, `--version`.

mod mount_support;

use mount_support::*;
use wandb_emulator::EmulatorConfig;

fn run(env: &Env, args: &[&str], extra: &[(&str, &str)]) -> (i32, String, String) {
    let out = env
        .command()
        .env_remove("WANDBFS_LOG")
        .envs(extra.iter().copied())
        .args(args)
        .output()
        .expect("wandbfs runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The doctor line of `check` (`ok`/`note`/`problem`) and the line after it.
fn finding<'a>(report: &'a str, check: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| !l.starts_with(' ') && l.contains(&format!(" {check}: ")))
        .unwrap_or_else(|| panic!("no {check} line in:\n{report}"));
    let level = lines[i].split_whitespace().next().unwrap();
    (level, lines.get(i + 1).copied().unwrap_or(""))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_here_and_names_each_problem_with_its_fix() {
    let env = Env::new(EmulatorConfig::default()).await;
    let key = env.emu.api_key();

    let (code, out, err) = run(&env, &["doctor"], &[]);
    assert_eq!(code, 0, "doctor is not green:\n{out}\n{err}");
    assert!(out.trim_end().ends_with("all good"), "{out}");
    for check in [
        "credentials",
        "W&B server",
        "PostgreSQL server programs",
        "mirror database",
        "/dev/fuse",
        "fusermount3",
        "cache directory",
    ] {
        assert_eq!(finding(&out, check).0, "ok", "{check}:\n{out}");
    }
    assert!(
        out.contains("API key from WANDB_API_KEY (not shown)"),
        "{out}"
    );
    assert!(!out.contains(&key) && !err.contains(&key));

    // No PostgreSQL programs where they are configured, and no server URL: the embedded
    // mirror needs them.
    let pg_dir = env.home.path().join("pg");
    let out = env
        .command()
        .env_remove("WANDBFS_LOG")
        .env_remove("WANDBFS_DATABASE_URL")
        .env("WANDBFS_PG_BIN", "/nonexistent/pg/bin")
        .env("WANDBFS_PG_DIR", &pg_dir)
        .arg("doctor")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout);
    let (level, fix) = finding(&report, "PostgreSQL server programs");
    assert_eq!(level, "problem", "{report}");
    assert!(fix.contains("fix: apt-get install postgresql"), "{report}");
    assert_eq!(finding(&report, "mirror database").0, "problem", "{report}");
    assert!(report.trim_end().ends_with("2 problems"), "{report}");
    // With a server URL the programs are only a note.
    let (code, out, _) = run(
        &env,
        &["doctor"],
        &[("WANDBFS_PG_BIN", "/nonexistent/pg/bin")],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        finding(&out, "PostgreSQL server programs").0,
        "note",
        "{out}"
    );

    // A wrong key.
    let (code, out, err) = run(
        &env,
        &["doctor"],
        &[(
            "WANDB_API_KEY",
            "local-0000000000000000000000000000000000000000",
        )],
    );
    assert_eq!(code, 1, "{out}\n{err}");
    let (level, fix) = finding(&out, "W&B server");
    assert_eq!(level, "problem", "{out}");
    assert!(
        out.contains("refused the key (401)") && fix.contains("wandb login --relogin"),
        "{out}"
    );
    assert!(!out.contains("local-0000000000"), "{out}");

    // A server that does not answer (nothing listens on port 9 here).
    let (code, out, _) = run(
        &env,
        &["doctor"],
        &[("WANDB_BASE_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(code, 1, "{out}");
    let (level, fix) = finding(&out, "W&B server");
    assert_eq!(level, "problem", "{out}");
    assert!(
        out.contains("cannot reach http://127.0.0.1:9") && fix.contains("WANDB_BASE_URL"),
        "{out}"
    );

    // /dev/fuse hidden: a private mount namespace where a plain file covers it.
    let cover = env.home.path().join("not-fuse");
    std::fs::write(&cover, "").unwrap();
    let line = format!(
        "mount --bind {} /dev/fuse && exec env WANDB_BASE_URL={} WANDB_API_KEY=$(cat {}) \
         WANDBFS_DATABASE_URL='{}' HOME={} {WANDBFS} doctor",
        cover.display(),
        env.emu.base_url(),
        key_file(&env).display(),
        env.db_url,
        env.home.path().display()
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &line])
        .output()
        .expect("unshare runs");
    let report = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (level, fix) = finding(&report, "/dev/fuse");
    assert_eq!(level, "problem", "{report}");
    assert!(
        report.contains("not the FUSE device") && fix.contains("modprobe fuse"),
        "{report}"
    );
    // The namespace is gone with its process: the real device is still there.
    assert!(std::fs::metadata("/dev/fuse").unwrap().len() == 0);
}

fn key_file(env: &Env) -> std::path::PathBuf {
    let path = env.home.path().join("key");
    std::fs::write(&path, env.emu.api_key()).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_precedence_sources_and_errors() {
    let env = Env::new(EmulatorConfig::default()).await;
    let dir = env.home.path().join(".config/wandbfs");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("config.yaml");
    let (a, b, c) = (
        env.home.path().join("a"),
        env.home.path().join("b"),
        env.home.path().join("c"),
    );
    std::fs::write(
        &file,
        format!(
            "# wandbfs settings\npg_dir: {}\ncache_size: 20G\nmetadata_ttl: 2.5\n\
             database_url: postgresql://me:hunter2@db.example:5432/w\n",
            a.display()
        ),
    )
    .unwrap();
    // The default place is read; env wins over it; a flag over both.
    let pg_dir = |extra: &[(&str, &str)], args: &[&str]| {
        let mut cmd = env.command();
        cmd.env_remove("WANDBFS_LOG")
            .env_remove("WANDBFS_DATABASE_URL")
            .envs(extra.iter().copied());
        let out = cmd
            .args(["db", "status", "--json"])
            .args(args)
            .output()
            .unwrap();
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
        v["dir"].as_str().unwrap().to_owned()
    };
    // (db status uses database_url when set: drop it from the file for this part.)
    let file_without_url = dir.join("no-url.yaml");
    std::fs::write(&file_without_url, format!("pg_dir: {}\n", a.display())).unwrap();
    let with = |f: &std::path::Path| f.to_str().unwrap().to_owned();
    assert_eq!(
        pg_dir(&[], &["--config", &with(&file_without_url)]),
        a.display().to_string()
    );
    assert_eq!(
        pg_dir(
            &[("WANDBFS_PG_DIR", b.to_str().unwrap())],
            &["--config", &with(&file_without_url)]
        ),
        b.display().to_string()
    );
    assert_eq!(
        pg_dir(
            &[
                ("WANDBFS_PG_DIR", b.to_str().unwrap()),
                ("WANDBFS_CONFIG", &with(&file_without_url))
            ],
            &["--pg-dir", c.to_str().unwrap()]
        ),
        c.display().to_string()
    );

    // `wandbfs config`: values, sources, the password redacted.
    let (code, out, err) = run(&env, &["config", "--json"], &[("WANDBFS_CACHE_SIZE", "5G")]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["config_file"], file.to_str().unwrap());
    assert_eq!(v["config_file_found"], true);
    let s = &v["settings"];
    assert_eq!(s["cache_size"]["value"], "5G");
    assert_eq!(s["cache_size"]["source"], "env");
    assert_eq!(s["metadata_ttl"]["value"], "2.5");
    assert_eq!(s["metadata_ttl"]["source"], "file");
    assert_eq!(s["pg_user"]["source"], "default");
    // Env sets WANDBFS_DATABASE_URL: the environment wins over the file.
    assert_eq!(s["database_url"]["source"], "env");
    let (_, out, _) = run(&env, &["config"], &[]);
    assert!(
        out.contains("precedence:   flags > environment > config file > defaults"),
        "{out}"
    );
    let mut cmd = env.command();
    let out = cmd
        .env_remove("WANDBFS_DATABASE_URL")
        .args(["config"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("postgresql://me:***@db.example:5432/w") && !shown.contains("hunter2"),
        "{shown}"
    );
    assert!(
        v["credentials"]
            .as_str()
            .unwrap()
            .starts_with("API key from WANDB_API_KEY"),
        "{v}"
    );

    // Bad files: one line naming the file and the fault, a hint, nothing else runs.
    let bad = |body: &str| {
        let path = env.home.path().join("bad.yaml");
        std::fs::write(&path, body).unwrap();
        let (code, out, err) = run(
            &env,
            &["--config", path.to_str().unwrap(), "ls", "x/y"],
            &[],
        );
        assert_eq!(code, 1, "{out}{err}");
        assert!(out.is_empty());
        let lines: Vec<&str> = err.lines().collect();
        assert_eq!(lines.len(), 2, "{err}");
        assert!(
            lines[0].starts_with(&format!("error: config file {}: ", path.display())),
            "{err}"
        );
        assert!(lines[1].starts_with("hint: "), "{err}");
        err
    };
    assert!(bad("cache_sise: 1G\n").contains("unknown setting `cache_sise`"));
    let err = bad("api_key: local-secret-value\n");
    assert!(
        err.contains("`api_key` is not allowed") && !err.contains("local-secret-value"),
        "{err}"
    );
    assert!(bad("cache_size: [1\n").contains("line 1 column"));
    let (code, _, err) = run(&env, &["--config", "/nonexistent/c.yaml", "config"], &[]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("error: config file /nonexistent/c.yaml: "),
        "{err}"
    );
}

#[test]
fn completions_and_version() {
    let bash = std::process::Command::new(WANDBFS)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(bash.status.success());
    let script =
        std::env::temp_dir().join(format!("wandbfs-completion-{}.bash", std::process::id()));
    std::fs::write(&script, &bash.stdout).unwrap();
    let (code, out, err) = sh(&format!(
        "source {} && complete -p wandbfs && COMP_WORDS=(wandbfs do); COMP_CWORD=1; \
         COMP_LINE='wandbfs do'; COMP_POINT=10; _wandbfs wandbfs do wandbfs && \
         echo \"reply: ${{COMPREPLY[@]}}\"",
        script.display()
    ));
    let _ = std::fs::remove_file(&script);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("-F _wandbfs wandbfs"), "{out}");
    assert!(
        out.contains("doctor"),
        "bash completes `wandbfs do` without doctor: {out}"
    );
    for shell in ["zsh", "fish"] {
        let out = std::process::Command::new(WANDBFS)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("doctor") && text.contains("mount"),
            "{shell}: {text}"
        );
    }

    let out = std::process::Command::new(WANDBFS)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&out.stdout);
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&head.stdout).trim().to_owned();
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no", "--"])
        .args([
            ":/src",
            ":/wandbfs-mount",
            ":/integration/src",
            ":/Cargo.toml",
            ":/Cargo.lock",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let dirty = if status.stdout.is_empty() {
        ""
    } else {
        "-dirty"
    };
    assert_eq!(
        version.trim(),
        format!("wandbfs {} ({head}{dirty})", env!("CARGO_PKG_VERSION"))
    );
}
