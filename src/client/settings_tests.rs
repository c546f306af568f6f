//! Every precedence rule of settings and credential resolution, with a temp HOME, fake
//! netrc/settings/identity-token files and an injected environment.

use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use super::settings::{Credential, CredentialSource, Overrides, resolve};
use super::{Environment, Error};

const KEY_A: &str = "local-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "local-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
const KEY_C: &str = "cccccccccccccccccccccccccccccccccccccccc";
const KEY_D: &str = "dddddddddddddddddddddddddddddddddddddddd";

struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Self {
        Home {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn env(&self) -> Environment {
        let cwd = self.path().join("work");
        std::fs::create_dir_all(&cwd).unwrap();
        Environment::isolated().with_home(self.path()).with_cwd(cwd)
    }
    fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

fn key_of(credential: &Credential) -> String {
    match credential {
        Credential::ApiKey(k) => k.expose_secret().to_owned(),
        other => panic!("expected an API key, got {other:?}"),
    }
}

#[test]
fn explicit_key_beats_env_netrc_and_files() {
    let home = Home::new();
    home.write(
        ".netrc",
        &format!("machine 127.0.0.1:8080 login user password {KEY_C}\n"),
    );
    let env = home
        .env()
        .with_var("WANDB_BASE_URL", "http://127.0.0.1:8080")
        .with_var("WANDB_API_KEY", KEY_B);
    let overrides = Overrides {
        api_key: Some(SecretString::from(KEY_A.to_owned())),
        ..Overrides::default()
    };
    let s = resolve(&overrides, &env).unwrap();
    assert_eq!(key_of(&s.credential), KEY_A);
    assert_eq!(s.credential_source, CredentialSource::Explicit);
    // Without the override, the environment wins over netrc.
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(key_of(&s.credential), KEY_B);
    assert_eq!(s.credential_source, CredentialSource::EnvApiKey);
}

#[test]
fn netrc_machine_includes_port_and_beats_settings_files() {
    let home = Home::new();
    home.write(
        ".netrc",
        &format!(
            "machine 127.0.0.1 login user password {KEY_A}\n\
             machine 127.0.0.1:8080 login user password {KEY_C}\n"
        ),
    );
    home.write(
        ".config/wandb/settings",
        &format!("[default]\nbase_url = http://127.0.0.1:8080\napi_key = {KEY_D}\n"),
    );
    let s = resolve(&Overrides::default(), &home.env()).unwrap();
    assert_eq!(s.base_url.as_str(), "http://127.0.0.1:8080");
    assert_eq!(key_of(&s.credential), KEY_C);
    match &s.credential_source {
        CredentialSource::Netrc { machine, path } => {
            assert_eq!(machine, "127.0.0.1:8080");
            assert_eq!(path, &home.path().join(".netrc"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn netrc_env_var_and_windows_name() {
    let home = Home::new();
    home.write("_netrc", &format!("machine h.example password {KEY_A}\n"));
    home.write(
        "elsewhere/n",
        &format!("machine h.example password {KEY_B}\n"),
    );
    let env = home.env().with_var("WANDB_BASE_URL", "https://h.example");
    assert_eq!(
        key_of(&resolve(&Overrides::default(), &env).unwrap().credential),
        KEY_A
    );
    let env = env.with_var(
        "NETRC",
        home.path().join("elsewhere/n").display().to_string(),
    );
    assert_eq!(
        key_of(&resolve(&Overrides::default(), &env).unwrap().credential),
        KEY_B
    );
}

#[test]
fn forge_default_falls_back_to_api_wandb_ai_machine() {
    let home = Home::new();
    home.write(
        ".netrc",
        &format!("machine api.wandb.ai login user password {KEY_A}\n"),
    );
    let s = resolve(&Overrides::default(), &home.env()).unwrap();
    assert_eq!(s.base_url.as_str(), "https://api.forge.coreweave.com");
    assert_eq!(key_of(&s.credential), KEY_A);
}

#[test]
fn settings_file_key_only_for_its_own_base_url() {
    let home = Home::new();
    home.write(
        ".config/wandb/settings",
        &format!("[default]\nbase_url = http://h.example:1\napi_key = {KEY_D}\n"),
    );
    let s = resolve(&Overrides::default(), &home.env()).unwrap();
    assert_eq!(key_of(&s.credential), KEY_D);
    assert!(matches!(
        s.credential_source,
        CredentialSource::SettingsFile { .. }
    ));
    // A different server: the file's key is not used.
    let other = Overrides {
        base_url: Some("http://other.example:1".into()),
        ..Overrides::default()
    };
    let err = resolve(&other, &home.env()).unwrap_err();
    assert!(matches!(err, Error::MissingCredentials { .. }), "{err}");
}

#[test]
fn base_url_precedence_and_workspace_settings() {
    let home = Home::new();
    home.write(
        ".config/wandb/settings",
        "[default]\nbase_url = http://global.example\nentity = g-ent\nproject = g-proj\n",
    );
    let env = home.env().with_var("WANDB_API_KEY", KEY_A);
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.base_url.as_str(), "http://global.example");
    assert_eq!(s.entity.as_deref(), Some("g-ent"));
    home.write(
        "work/wandb/settings",
        "[default]\nbase_url = http://workspace.example/\nentity = w-ent\n",
    );
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.base_url.as_str(), "http://workspace.example");
    assert_eq!(s.entity.as_deref(), Some("w-ent"));
    assert_eq!(s.project.as_deref(), Some("g-proj"));
    assert_eq!(s.settings_files.len(), 2);
    let env = env
        .with_var("WANDB_BASE_URL", "http://env.example")
        .with_var("WANDB_ENTITY", "e-ent");
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.base_url.as_str(), "http://env.example");
    assert_eq!(s.entity.as_deref(), Some("e-ent"));
    let o = Overrides {
        base_url: Some("http://o.example".into()),
        entity: Some("o-ent".into()),
        ..Overrides::default()
    };
    let s = resolve(&o, &env).unwrap();
    assert_eq!(s.base_url.as_str(), "http://o.example");
    assert_eq!(s.entity.as_deref(), Some("o-ent"));
}

#[test]
fn config_dir_and_dot_wandb_workspace() {
    let home = Home::new();
    home.write("cfg/settings", "[default]\nbase_url = http://cfg.example\n");
    home.write(
        ".config/wandb/settings",
        "[default]\nbase_url = http://ignored.example\n",
    );
    let env = home.env().with_var("WANDB_API_KEY", KEY_A).with_var(
        "WANDB_CONFIG_DIR",
        home.path().join("cfg").display().to_string(),
    );
    assert_eq!(
        resolve(&Overrides::default(), &env)
            .unwrap()
            .base_url
            .as_str(),
        "http://cfg.example"
    );
    home.write(
        "work/.wandb/settings",
        "[default]\nbase_url = http://dot.example\n",
    );
    assert_eq!(
        resolve(&Overrides::default(), &env)
            .unwrap()
            .base_url
            .as_str(),
        "http://dot.example"
    );
}

#[test]
fn broken_settings_file_is_ignored_whole() {
    let home = Home::new();
    home.write(
        ".config/wandb/settings",
        "[default]\nbase_url = http://h.example\nthis line has no delimiter\n",
    );
    let env = home.env().with_var("WANDB_API_KEY", KEY_A);
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.base_url.as_str(), "https://api.forge.coreweave.com");
}

#[test]
fn both_env_credentials_is_an_error() {
    let home = Home::new();
    home.write("token.jwt", "a.b.c\n");
    let env = home
        .env()
        .with_var("WANDB_API_KEY", KEY_A)
        .with_var("WANDB_IDENTITY_TOKEN_FILE", "token.jwt");
    let err = resolve(&Overrides::default(), &env).unwrap_err();
    assert!(
        err.to_string()
            .contains("both WANDB_API_KEY and WANDB_IDENTITY_TOKEN_FILE")
    );
    assert!(!err.to_string().contains(KEY_A));
}

#[test]
fn identity_token_file_and_credentials_file() {
    let home = Home::new();
    let env = home
        .env()
        .with_var("WANDB_IDENTITY_TOKEN_FILE", "token.jwt")
        .with_var("WANDB_BASE_URL", "http://h.example");
    let s = resolve(&Overrides::default(), &env).unwrap();
    assert_eq!(s.credential_source, CredentialSource::EnvIdentityTokenFile);
    match &s.credential {
        Credential::IdentityToken {
            token_file,
            credentials_file,
        } => {
            assert_eq!(token_file, &home.path().join("work/token.jwt"));
            assert_eq!(
                credentials_file,
                &home.path().join(".config/wandb/credentials.json")
            );
        }
        other => panic!("{other:?}"),
    }
    let env = env.with_var("WANDB_CREDENTIALS_FILE", "~/creds.json");
    match resolve(&Overrides::default(), &env).unwrap().credential {
        Credential::IdentityToken {
            credentials_file, ..
        } => {
            assert_eq!(credentials_file, home.path().join("creds.json"))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_key_says_how_to_provide_one() {
    let home = Home::new();
    let env = home
        .env()
        .with_var("WANDB_BASE_URL", "http://127.0.0.1:8080/");
    let err = resolve(&Overrides::default(), &env).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("WANDB_API_KEY"), "{text}");
    assert!(
        text.contains("machine 127.0.0.1:8080 login user password <key>"),
        "{text}"
    );
    assert!(text.contains("wandb login"), "{text}");
    assert!(
        text.contains(&home.path().join(".netrc").display().to_string()),
        "{text}"
    );
}

#[test]
fn malformed_keys_are_rejected_without_echoing_them() {
    let home = Home::new();
    for (bad, origin) in [
        ("short-key", "WANDB_API_KEY"),
        (
            "has spaces in it and is long enough to pass",
            "WANDB_API_KEY",
        ),
    ] {
        let env = home.env().with_var("WANDB_API_KEY", bad);
        let err = resolve(&Overrides::default(), &env).unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");
        assert!(err.to_string().contains(origin));
        assert!(!err.to_string().contains(bad));
        assert!(!format!("{err:?}").contains(bad));
    }
    // A JWT-shaped key is accepted as is.
    let env = home.env().with_var("WANDB_API_KEY", "eyJh.eyJi.c2ln");
    assert!(resolve(&Overrides::default(), &env).is_ok());
    // A netrc key is validated too.
    home.write(".netrc", "machine h.example password tooshort\n");
    let env = home.env().with_var("WANDB_BASE_URL", "https://h.example");
    assert!(matches!(
        resolve(&Overrides::default(), &env).unwrap_err(),
        Error::Config { .. }
    ));
}

#[test]
fn sdk_environment_overrides_reach_the_config() {
    let home = Home::new();
    let env = home
        .env()
        .with_var("WANDB_API_KEY", KEY_A)
        .with_var("WANDB_HTTP_TIMEOUT", "7")
        .with_var("WANDB__GRAPHQL_RETRY_MAX", "3")
        .with_var("WANDB__EXTRA_HTTP_HEADERS", r#"{"X-Test": "1"}"#)
        .with_var("WANDB_INSECURE_DISABLE_SSL", "true");
    let s = resolve(&Overrides::default(), &env).unwrap();
    let config = super::ClientConfig::default().apply_settings(&s);
    assert_eq!(config.graphql_timeout, std::time::Duration::from_secs(7));
    assert_eq!(config.retry.max_attempts, 4);
    assert_eq!(
        config.extra_headers,
        vec![("X-Test".to_owned(), "1".to_owned())]
    );
    assert!(config.insecure_disable_ssl);
    let bad = env.with_var("WANDB__EXTRA_HTTP_HEADERS", "[1]");
    assert!(resolve(&Overrides::default(), &bad).is_err());
}

#[test]
fn debug_output_never_shows_keys() {
    let home = Home::new();
    let env = home.env().with_var("WANDB_API_KEY", KEY_A);
    let o = Overrides {
        api_key: Some(SecretString::from(KEY_B.to_owned())),
        ..Overrides::default()
    };
    let s = resolve(&Overrides::default(), &env).unwrap();
    let client = super::Client::new(s.clone(), super::ClientConfig::default()).unwrap();
    for text in [
        format!("{s:?}"),
        format!("{:?}", s.credential),
        format!("{o:?}"),
        format!("{env:?}"),
        format!("{client:?}"),
    ] {
        assert!(!text.contains(KEY_A) && !text.contains(KEY_B), "{text}");
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("api:{KEY_A}"));
        assert!(!text.contains(&basic), "the Basic header leaked: {text}");
    }
}
