//! Database URLs: parsing, the normalisation of Python-style URLs, and password redaction.
//!
//! Users copy URLs from Python projects, where SQLAlchemy spells the driver into the scheme
//! (`postgresql+psycopg://`, `postgresql+psycopg2://`, `postgres+asyncpg://`) and asyncpg takes
//! `ssl=` instead of libpq's `sslmode=`. [`DatabaseUrl::parse`] accepts those, rewrites them to
//! the libpq form that `tokio_postgres` understands and says what it changed, so the user can fix
//! their copy if they want to.
//!
//! The password is kept only inside [`DatabaseUrl`] and the `tokio_postgres::Config` built from
//! it (whose `Debug` redacts it too); `Display` and `Debug` of `DatabaseUrl` print `***` in its
//! place.

use std::fmt;
use std::str::FromStr;

use std::path::PathBuf;

use super::error::{MirrorError, Result};
use super::tls::TlsPolicy;

/// A Postgres connection string in libpq form (`postgresql://…` URL or `key=value` pairs).
///
/// `Display`/`Debug` never show the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    /// The normalised connection string, password included, in the dialect `tokio_postgres`
    /// parses (`sslmode=verify-*` and `sslrootcert` taken out into `tls`).
    text: String,
    /// TLS policy from `sslmode` / `sslrootcert`.
    tls: TlsPolicy,
}

/// The result of [`DatabaseUrl::parse`]: the URL and what was changed to get it.
#[derive(Clone, Debug)]
pub struct ParsedDatabaseUrl {
    /// The normalised URL.
    pub url: DatabaseUrl,
    /// One human-readable note per normalisation applied (empty when the input was already in
    /// libpq form).
    pub normalised: Vec<String>,
}

impl DatabaseUrl {
    /// Parses `input`, normalising Python-style spellings, and checks that `tokio_postgres`
    /// accepts the result.
    pub fn parse(input: &str) -> Result<ParsedDatabaseUrl> {
        let input = input.trim();
        let mut normalised = Vec::new();
        let text = if let Some((scheme, rest)) = input.split_once("://") {
            let (base, driver) = match scheme.split_once('+') {
                Some((base, driver)) => (base, Some(driver)),
                None => (scheme, None),
            };
            let base_lower = base.to_ascii_lowercase();
            if base_lower != "postgres" && base_lower != "postgresql" {
                return Err(MirrorError::InvalidUrl {
                    reason: format!(
                        "scheme `{scheme}://` is not a PostgreSQL URL (expected postgresql:// or \
                         postgres://)"
                    ),
                });
            }
            if let Some(driver) = driver {
                normalised.push(format!(
                    "dropped the Python driver suffix `+{driver}` from the scheme \
                     (`{scheme}://` → `postgresql://`)"
                ));
            }
            let rest = normalise_query(rest, &mut normalised);
            format!("postgresql://{rest}")
        } else if input.contains('=') {
            // libpq key/value form: `host=/run/pg dbname=x user=y`.
            input.to_string()
        } else {
            return Err(MirrorError::InvalidUrl {
                reason: "expected a URL such as postgresql://user:password@host:5432/dbname"
                    .to_string(),
            });
        };
        let (text, tls) = extract_tls(&text, &mut normalised)?;
        let url = DatabaseUrl { text, tls };
        // Validate now so that a typo is reported before any connection attempt; the driver's
        // message names the bad option, never the password.
        url.parsed()?;
        Ok(ParsedDatabaseUrl { url, normalised })
    }

    /// The `tokio_postgres` configuration for this URL. Without a password in the URL, the
    /// password comes from `PGPASSWORD` or the password file (`$PGPASSFILE`, `~/.pgpass`), as
    /// libpq finds it ([`super::pgpass`]).
    pub fn config(&self) -> Result<tokio_postgres::Config> {
        let mut config = self.parsed()?;
        super::pgpass::fill_password(&mut config);
        Ok(config)
    }

    /// True when the connection string itself carries a password (which then shows wherever
    /// the string does: a command line, for example).
    pub fn has_password(&self) -> bool {
        self.parsed()
            .map(|c| c.get_password().is_some())
            .unwrap_or(false)
    }

    /// Why the password file will not be used although this URL would need it (it exists but
    /// others may read it, say); `None` when there is nothing to say.
    pub fn password_file_problem(&self) -> Option<String> {
        super::pgpass::unusable_password_file(&self.parsed().ok()?)
    }

    fn parsed(&self) -> Result<tokio_postgres::Config> {
        tokio_postgres::Config::from_str(&self.text).map_err(|e| MirrorError::InvalidUrl {
            reason: format!("{} (in {self})", super::error::describe_pg_error(&e)),
        })
    }

    /// How connections to this server are secured (from `sslmode` / `sslrootcert`).
    pub fn tls_policy(&self) -> &TlsPolicy {
        &self.tls
    }

    /// The URL with its password, for handing to another program through the environment
    /// (never through argv, never into logs).
    pub fn expose_secret(&self) -> &str {
        &self.text
    }

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.text)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&self.redacted())
            .finish()
    }
}

/// Takes `sslmode=verify-ca|verify-full` and `sslrootcert=…` out of a connection string
/// (`tokio_postgres` knows neither) and returns the rest with the TLS policy they describe.
fn extract_tls(text: &str, notes: &mut Vec<String>) -> Result<(String, TlsPolicy)> {
    let is_url = text.contains("://");
    // URL query parameters are `&`-separated; key/value strings are whitespace-separated.
    let (head, params, sep): (&str, Vec<&str>, &str) = if is_url {
        match text.split_once('?') {
            Some((head, query)) => (head, query.split('&').collect(), "&"),
            None => (text, Vec::new(), "&"),
        }
    } else {
        ("", text.split_whitespace().collect(), " ")
    };
    let mut mode: Option<String> = None;
    let mut root_cert: Option<PathBuf> = None;
    let mut kept: Vec<String> = Vec::new();
    for param in params {
        match param.split_once('=') {
            Some(("sslmode", value)) => {
                let value = value.trim_matches('\'').to_ascii_lowercase();
                if value == "verify-ca" || value == "verify-full" {
                    kept.push("sslmode=require".to_string());
                } else {
                    kept.push(format!("sslmode={value}"));
                }
                mode = Some(value);
            }
            Some(("sslrootcert", value)) => {
                let value = value.trim_matches('\'');
                root_cert = Some(PathBuf::from(if is_url {
                    percent_decode(value)
                } else {
                    value.to_string()
                }));
            }
            _ => kept.push(param.to_string()),
        }
    }
    let policy = match mode.as_deref() {
        Some("disable") => TlsPolicy::Disable,
        Some("verify-ca") | Some("verify-full") => TlsPolicy::Verify { root_cert },
        Some("allow") | Some("prefer") | Some("require") | None => {
            if root_cert.is_some() {
                notes.push(
                    "sslrootcert is only used with sslmode=verify-ca/verify-full; ignored"
                        .to_string(),
                );
            }
            TlsPolicy::Encrypt
        }
        Some(other) => {
            return Err(MirrorError::InvalidUrl {
                reason: format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ),
            });
        }
    };
    // tokio_postgres has no `allow`; `prefer` is the closest (it also falls back to plain).
    let kept: Vec<String> = kept
        .into_iter()
        .map(|p| {
            if p == "sslmode=allow" {
                "sslmode=prefer".into()
            } else {
                p
            }
        })
        .collect();
    let rebuilt = if is_url {
        if kept.is_empty() {
            head.to_string()
        } else {
            format!("{head}?{}", kept.join(sep))
        }
    } else {
        kept.join(sep)
    };
    Ok((rebuilt, policy))
}

/// Decodes `%XX` escapes of a URL query value.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && value.is_char_boundary(i + 1)
            && value.is_char_boundary(i + 3)
            && let Ok(b) = u8::from_str_radix(&value[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Rewrites asyncpg's `ssl=` query parameter into libpq's `sslmode=`.
fn normalise_query(rest: &str, notes: &mut Vec<String>) -> String {
    let Some((before, query)) = rest.split_once('?') else {
        return rest.to_string();
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some(("ssl", value)) => {
                let mode = match value.to_ascii_lowercase().as_str() {
                    "true" | "1" | "on" | "require" => "require",
                    "false" | "0" | "off" | "disable" => "disable",
                    "prefer" => "prefer",
                    "allow" => "allow",
                    // verify-ca / verify-full are libpq values too.
                    other => return format!("sslmode={other}"),
                };
                notes.push(format!(
                    "rewrote asyncpg's `ssl={value}` to libpq's `sslmode={mode}`"
                ));
                format!("sslmode={mode}")
            }
            _ => param.to_string(),
        })
        .collect();
    format!("{before}?{}", params.join("&"))
}

/// Replaces the password in a URL's user-info, and any `password` parameter, by `***`.
///
/// Users paste passwords unescaped, and the driver accepts many of those (it takes the
/// credentials up to the first `@`, whatever `/` or `?` they hold), so the redaction follows
/// the driver's own reading and errs on the side of hiding more: in a URL everything between
/// the first `:` of the user-info and the last `@` before the path is hidden; in a key/value
/// string the value of every `password` key (any case, spaces around `=`, quotes, escapes).
fn redact(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => format!("{scheme}://{}", redact_url_rest(rest)),
        None => redact_key_values(text),
    }
}

/// A URL after its `scheme://`.
fn redact_url_rest(rest: &str) -> String {
    let Some(first_at) = rest.find('@') else {
        return redact_query_passwords(rest);
    };
    // The user-info ends at the last `@` before the path or query that follows the first `@`
    // (a password may hold `@`, `/` and `?` unescaped).
    let after = first_at + 1;
    let authority_end = rest[after..]
        .find(['/', '?'])
        .map_or(rest.len(), |p| after + p);
    let last_at = rest[..authority_end].rfind('@').unwrap_or(first_at);
    let userinfo = &rest[..last_at];
    let user = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => userinfo.to_string(),
    };
    format!("{user}@{}", redact_query_passwords(&rest[last_at + 1..]))
}

/// `password=` query parameters (any case) of a URL's host, path and query.
fn redact_query_passwords(text: &str) -> String {
    let mut out = text.to_string();
    let mut search_from = 0;
    while let Some(pos) = out[search_from..].to_ascii_lowercase().find("password=") {
        let start = search_from + pos + "password=".len();
        let end = out[start..].find('&').map_or(out.len(), |p| start + p);
        out.replace_range(start..end, "***");
        search_from = start + 3;
    }
    out
}

/// A libpq `key=value` string, read as the driver reads it: whitespace around `=` allowed,
/// values either `'quoted'` or bare, `\` escaping the next character in both.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        out.push_str(&rest[..rest.len() - trimmed.len()]);
        rest = trimmed;
        if rest.is_empty() {
            return out;
        }
        let key_end = rest
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let key = &rest[..key_end];
        let Some(after_eq) = rest[key_end..].trim_start().strip_prefix('=') else {
            // Not `key=value` (the driver rejects it): keep the word, read on.
            out.push_str(key);
            rest = &rest[key_end..];
            continue;
        };
        let value = after_eq.trim_start();
        let consumed = rest.len() - value.len() + value_len(value);
        if key.eq_ignore_ascii_case("password") {
            out.push_str(key);
            out.push_str("=***");
        } else {
            out.push_str(&rest[..consumed]);
        }
        rest = &rest[consumed..];
    }
}

/// Byte length of the key/value-string value at the start of `s`.
fn value_len(s: &str) -> usize {
    let quoted = s.starts_with('\'');
    let mut chars = s.char_indices().skip(usize::from(quoted));
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' if quoted => return i + 1,
            c if !quoted && c.is_whitespace() => return i,
            _ => {}
        }
    }
    s.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_urls_are_kept() {
        for u in [
            "postgresql://u:p@localhost:5432/db",
            "postgres://u@h/db",
            "host=/tmp dbname=x user=y",
        ] {
            let parsed = DatabaseUrl::parse(u).unwrap();
            assert!(parsed.normalised.is_empty(), "{u}: {:?}", parsed.normalised);
        }
    }

    #[test]
    fn python_driver_suffixes_are_dropped_and_reported() {
        for (input, driver) in [
            ("postgresql+psycopg://u:secret@h:5433/db", "psycopg"),
            ("postgresql+psycopg2://u:secret@h/db", "psycopg2"),
            ("postgres+asyncpg://u:secret@h/db", "asyncpg"),
        ] {
            let parsed = DatabaseUrl::parse(input).unwrap();
            assert!(
                parsed
                    .url
                    .expose_secret()
                    .starts_with("postgresql://u:secret@h")
            );
            assert_eq!(parsed.normalised.len(), 1);
            assert!(parsed.normalised[0].contains(&format!("+{driver}")));
            assert!(!parsed.normalised[0].contains("secret"));
        }
        let cfg = DatabaseUrl::parse("postgresql+psycopg://u:pw@db.example:6000/mydb")
            .unwrap()
            .url
            .config()
            .unwrap();
        assert_eq!(cfg.get_ports(), &[6000]);
        assert_eq!(cfg.get_dbname(), Some("mydb"));
        assert_eq!(cfg.get_password(), Some(&b"pw"[..]));
    }

    #[test]
    fn asyncpg_ssl_parameter_becomes_sslmode() {
        let parsed = DatabaseUrl::parse("postgres+asyncpg://u@h/db?ssl=disable").unwrap();
        assert_eq!(
            parsed.url.expose_secret(),
            "postgresql://u@h/db?sslmode=disable"
        );
        assert_eq!(parsed.normalised.len(), 2);
    }

    #[test]
    fn passwords_never_appear_in_display_debug_or_errors() {
        let parsed = DatabaseUrl::parse("postgresql://alice:s3cr3t@h/db?password=other").unwrap();
        let shown = format!("{} {:?}", parsed.url, parsed);
        assert!(
            !shown.contains("s3cr3t") && !shown.contains("other"),
            "{shown}"
        );
        assert!(shown.contains("alice:***@h"), "{shown}");
        let kv = DatabaseUrl::parse("host=h password='a b' user=u").unwrap();
        assert!(!kv.url.to_string().contains("a b"), "{}", kv.url);
        let err = DatabaseUrl::parse("postgresql://alice:s3cr3t@h/db?bogus_option=1")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("s3cr3t"), "{err}");
        assert!(err.contains("bogus_option"), "{err}");
    }

    #[test]
    fn passwords_the_driver_accepts_unescaped_are_still_hidden() {
        // Each input is accepted by `tokio_postgres` (or rejected with the URL quoted in the
        // error); none may show any part of "s3cr3t" / "more" in Display, Debug or the error.
        for input in [
            "postgresql://alice:s3/cr3t@h/db",
            "postgresql://alice:s3?cr3t@h/db",
            "postgresql://alice:s3cr3t@h:5432/db?options=a@b",
            "host=h password = s3cr3t user=u",
            "host=h password=s3\\ cr3t user=u",
            "host=h password='s3\\'cr3t' user=u",
            "host=h stray password=s3cr3t user=u",
            "host=h PASSWORD=s3cr3t user=u",
            "postgresql://h/db?user=u&PASSWORD=s3cr3t",
        ] {
            let shown = match DatabaseUrl::parse(input) {
                Ok(parsed) => format!("{} {:?}", parsed.url, parsed),
                Err(e) => format!("{e} {e:?}"),
            };
            for part in ["s3", "cr3t", "more"] {
                assert!(!shown.contains(part), "{input:?} shows {part:?}: {shown}");
            }
        }
        // What is not a password is kept.
        let kv = DatabaseUrl::parse("host=h password = 'x y' user=u dbname=d").unwrap();
        assert_eq!(kv.url.to_string(), "host=h password=*** user=u dbname=d");
        let url = DatabaseUrl::parse("postgresql://alice:p/w@h:5432/db?sslmode=disable").unwrap();
        assert_eq!(
            url.url.to_string(),
            "postgresql://alice:***@h:5432/db?sslmode=disable"
        );
    }

    #[test]
    fn sslmode_and_sslrootcert_become_a_tls_policy() {
        let parse = |u: &str| DatabaseUrl::parse(u).unwrap().url;
        assert_eq!(
            parse("postgresql://u@h/db").tls_policy(),
            &TlsPolicy::Encrypt
        );
        assert_eq!(
            parse("postgresql://u@h/db?sslmode=disable").tls_policy(),
            &TlsPolicy::Disable
        );
        let url = parse("postgresql://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem");
        assert_eq!(
            url.tls_policy(),
            &TlsPolicy::Verify {
                root_cert: Some(PathBuf::from("/etc/ca.pem"))
            }
        );
        assert_eq!(url.expose_secret(), "postgresql://u@h/db?sslmode=require");
        let kv = parse("host=h sslmode=verify-ca sslrootcert=/ca.pem dbname=x");
        assert_eq!(kv.expose_secret(), "host=h sslmode=require dbname=x");
        assert!(matches!(kv.tls_policy(), TlsPolicy::Verify { .. }));
        let asyncpg = parse("postgres+asyncpg://u@h/db?ssl=require");
        assert_eq!(asyncpg.tls_policy(), &TlsPolicy::Encrypt);
        let err = DatabaseUrl::parse("postgresql://u:pw@h/db?sslmode=bogus")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sslmode=bogus") && !err.contains("pw"),
            "{err}"
        );
    }

    #[test]
    fn non_postgres_urls_are_rejected() {
        let err = DatabaseUrl::parse("mysql://u:pw@h/db")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mysql://") && !err.contains("pw"), "{err}");
        assert!(DatabaseUrl::parse("just-a-name").is_err());
    }
}
