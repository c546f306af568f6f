//! Passwords for external servers from where libpq looks for them, so that a password never
//! has to be written into a command line (where `ps` shows it to every user of the machine).
//!
//! When the connection string has no password, [`fill_password`] takes, like libpq:
//!
//! 1. the `PGPASSWORD` environment variable;
//! 2. else the first matching line of the password file (`$PGPASSFILE`, default `~/.pgpass`):
//!    `hostname:port:database:username:password`, each of the first four fields either literal
//!    or `*`, with `\:` and `\\` as escapes and `#` starting a comment line. The host of a
//!    connection through the default Unix socket directory matches `localhost`, the port
//!    defaults to 5432, the database to the user name, the user to the operating-system account.
//!
//! As libpq does, a password file that is not a regular file, or that the group or others may
//! read or write, is ignored (with a warning in the log): it would leak the passwords anyway.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// The socket directory libpq (as built by Debian) uses when a URL names none: its connections
/// match the password-file host `localhost`.
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// libpq's default port.
const DEFAULT_PORT: u16 = 5432;

/// Gives `config` a password from `PGPASSWORD` or the password file when it has none.
pub(crate) fn fill_password(config: &mut tokio_postgres::Config) {
    if config.get_password().is_some() {
        return;
    }
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        config.password(password.as_encoded_bytes());
        return;
    }
    let Some(file) = password_file() else {
        return;
    };
    let text = match read_private(&file) {
        Ok(text) => text,
        Err(reason) => {
            if let Some(reason) = reason {
                tracing::warn!("{reason}");
            }
            return;
        }
    };
    let wanted = Wanted::of(config);
    if let Some(password) = lookup(&text, &wanted) {
        config.password(password);
    }
}

/// `$PGPASSFILE`, or `~/.pgpass`.
fn password_file() -> Option<PathBuf> {
    match std::env::var_os("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(path) => Some(PathBuf::from(path)),
        None => std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(|home| Path::new(&home).join(".pgpass")),
    }
}

/// The file's text when it is a regular file that only its owner may read and write; why not
/// otherwise (`None`: there is no file, the common case, not worth a word).
fn read_private(file: &Path) -> Result<String, Option<String>> {
    let meta = std::fs::metadata(file).map_err(|_| None)?;
    if !meta.is_file() {
        return Err(Some(format!(
            "password file {} is not a plain file; ignored",
            file.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Some(format!(
            "password file {} has group or world access and is ignored; permissions should be \
             u=rw (0600) or less",
            file.display()
        )));
    }
    std::fs::read_to_string(file)
        .map_err(|e| Some(format!("cannot read password file {}: {e}", file.display())))
}

/// Why the password file will not be used, when a connection string without a password would
/// look there and it exists but is unusable: for the user, who would otherwise only see the
/// server's "password authentication failed".
pub(crate) fn unusable_password_file(config: &tokio_postgres::Config) -> Option<String> {
    if config.get_password().is_some()
        || std::env::var_os("PGPASSWORD").is_some_and(|p| !p.is_empty())
    {
        return None;
    }
    read_private(&password_file()?).err().flatten()
}

/// The four fields a password-file line is matched against.
#[derive(Debug, PartialEq, Eq)]
struct Wanted {
    host: String,
    port: String,
    database: String,
    user: String,
}

impl Wanted {
    fn of(config: &tokio_postgres::Config) -> Wanted {
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(name)) => name.clone(),
            Some(Host::Unix(dir)) if dir != Path::new(DEFAULT_SOCKET_DIR) => {
                dir.display().to_string()
            }
            Some(Host::Unix(_)) | None => "localhost".to_owned(),
        };
        let port = config
            .get_ports()
            .first()
            .copied()
            .unwrap_or(DEFAULT_PORT)
            .to_string();
        let user = config
            .get_user()
            .map(str::to_owned)
            .or_else(os_user)
            .unwrap_or_default();
        let database = config
            .get_dbname()
            .map(str::to_owned)
            .unwrap_or_else(|| user.clone());
        Wanted {
            host,
            port,
            database,
            user,
        }
    }
}

/// The name of the account this process runs as.
fn os_user() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::effective())
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// The password of the first line of `text` that matches `wanted`.
fn lookup(text: &str, wanted: &Wanted) -> Option<String> {
    let expected = [
        wanted.host.as_str(),
        wanted.port.as_str(),
        wanted.database.as_str(),
        wanted.user.as_str(),
    ];
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .find_map(|line| {
            let fields = split_fields(line);
            let [host, port, database, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, database, user]
                .iter()
                .zip(expected)
                .all(|(field, want)| field.as_str() == "*" || field.as_str() == want);
            matches.then(|| password.clone())
        })
}

/// Splits a line at unescaped `:` into at most five fields (the password keeps any further
/// colons), undoing `\:` and `\\`.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut chars = line.trim_end_matches('\r').chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    fields.push(current);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn wanted(host: &str, port: &str, database: &str, user: &str) -> Wanted {
        Wanted {
            host: host.into(),
            port: port.into(),
            database: database.into(),
            user: user.into(),
        }
    }

    #[test]
    fn first_matching_line_wins_and_wildcards_match_anything() {
        let text = "# a comment\n\
                    db.example.com:5432:mirror:alice:first\n\
                    *:*:*:alice:second\n\
                    *:*:*:*:third\n";
        let w = wanted("db.example.com", "5432", "mirror", "alice");
        assert_eq!(lookup(text, &w).as_deref(), Some("first"));
        let w = wanted("other", "6543", "x", "alice");
        assert_eq!(lookup(text, &w).as_deref(), Some("second"));
        let w = wanted("other", "6543", "x", "bob");
        assert_eq!(lookup(text, &w).as_deref(), Some("third"));
        assert_eq!(lookup("h:1:d:u:p\n", &wanted("h", "2", "d", "u")), None);
    }

    #[test]
    fn escapes_and_colons_in_passwords() {
        let text = r"h\:x:5432:d:u:pa\:ss:word\\";
        assert_eq!(
            lookup(text, &wanted("h:x", "5432", "d", "u")).as_deref(),
            Some(r"pa:ss:word\")
        );
        // A line with fewer than five fields matches nothing.
        assert_eq!(lookup("h:5432:d:u\n", &wanted("h", "5432", "d", "u")), None);
    }

    #[test]
    fn connection_defaults_follow_libpq() {
        let config =
            tokio_postgres::Config::from_str("host=/var/run/postgresql user=alice dbname=mirror")
                .unwrap();
        assert_eq!(
            Wanted::of(&config),
            wanted("localhost", "5432", "mirror", "alice")
        );
        let config = tokio_postgres::Config::from_str("postgresql://bob@10.0.0.5:6000").unwrap();
        assert_eq!(
            Wanted::of(&config),
            wanted("10.0.0.5", "6000", "bob", "bob")
        );
        let config =
            tokio_postgres::Config::from_str("host=/tmp/sock user=carol dbname=x").unwrap();
        assert_eq!(Wanted::of(&config).host, "/tmp/sock");
    }

    #[test]
    fn a_file_others_can_read_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pgpass");
        std::fs::write(&file, "*:*:*:*:secret\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let reason = read_private(&file).unwrap_err().unwrap();
        assert!(reason.contains("group or world access"), "{reason}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_private(&file).unwrap(), "*:*:*:*:secret\n");
        assert!(read_private(dir.path()).unwrap_err().is_some());
        assert_eq!(read_private(&dir.path().join("absent")), Err(None));
    }
}
