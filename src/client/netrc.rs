//! netrc lookup as the SDK does it (`wandb/sdk/lib/wbauth/wbnetrc.py` on top of Python's
//! `netrc` module).
//!
//! - File: `$NETRC` (with `~` expanded), else `~/.netrc` if it exists, else `~/_netrc` if it
//!   exists, else `~/.netrc` (which then does not exist → no key).
//! - Machine: the base URL's netloc *including the port* (`127.0.0.1:8080`), then, for Forge
//!   hosts, the W&B API host behind it. A `default` entry matches any machine.
//! - Only the password is used; an entry without one is ignored (the SDK warns).
//! - A file that does not parse is ignored with a warning, as in the SDK.
//!
//! The tokenizer follows Python's `netrc` (3.11+): whitespace-separated tokens, `"…"` quoting
//! with `\` escapes, `#` comments to end of line, `macdef` bodies skipped up to a blank line,
//! and a later entry for the same machine replaces an earlier one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::env::Environment;

/// One `machine` (or `default`) entry.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct NetrcEntry {
    /// `login` (or `user`) value.
    pub login: String,
    /// `password` value.
    pub password: String,
}

impl std::fmt::Debug for NetrcEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetrcEntry")
            .field("login", &self.login)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// A parsed netrc file.
#[derive(Debug, Default)]
pub struct Netrc {
    hosts: HashMap<String, NetrcEntry>,
    default: Option<NetrcEntry>,
}

impl Netrc {
    /// Python's `netrc.authenticators(host)`: the machine's entry, else the `default` entry.
    pub fn authenticators(&self, host: &str) -> Option<&NetrcEntry> {
        self.hosts.get(host).or(self.default.as_ref())
    }

    /// Parses netrc text.
    pub fn parse(text: &str) -> Result<Netrc, String> {
        let mut lexer = Lexer::new(text);
        let mut netrc = Netrc::default();
        while let Some(token) = lexer.next_token() {
            let target = match token.as_str() {
                "machine" => match lexer.next_token() {
                    Some(name) => Some(name),
                    None => return Err("`machine` without a name".into()),
                },
                "default" => None,
                "macdef" => {
                    lexer.next_token();
                    lexer.skip_macro_body()?;
                    continue;
                }
                other => return Err(format!("bad toplevel token {other:?}")),
            };
            let mut entry = NetrcEntry::default();
            loop {
                match lexer.peek_token().as_deref() {
                    Some("login" | "user") => {
                        lexer.next_token();
                        entry.login = lexer.next_token().unwrap_or_default();
                    }
                    Some("password") => {
                        lexer.next_token();
                        entry.password = lexer.next_token().unwrap_or_default();
                    }
                    Some("account") => {
                        lexer.next_token();
                        lexer.next_token();
                    }
                    Some("machine" | "default" | "macdef") | None => break,
                    Some(other) => return Err(format!("bad follower token {other:?}")),
                }
            }
            match target {
                Some(name) => {
                    netrc.hosts.insert(name, entry);
                }
                None => netrc.default = Some(entry),
            }
        }
        Ok(netrc)
    }
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    peeked: Option<Option<String>>,
}

impl<'a> Lexer<'a> {
    fn new(text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            peeked: None,
        }
    }

    fn peek_token(&mut self) -> Option<String> {
        if self.peeked.is_none() {
            let token = self.read_token();
            self.peeked = Some(token);
        }
        self.peeked.clone().flatten()
    }

    fn next_token(&mut self) -> Option<String> {
        match self.peeked.take() {
            Some(token) => token,
            None => self.read_token(),
        }
    }

    fn read_token(&mut self) -> Option<String> {
        loop {
            match self.chars.peek().copied() {
                None => return None,
                Some(c) if c.is_whitespace() => {
                    self.chars.next();
                }
                Some('#') => {
                    for c in self.chars.by_ref() {
                        if c == '\n' {
                            break;
                        }
                    }
                }
                Some('"') => {
                    self.chars.next();
                    let mut token = String::new();
                    while let Some(c) = self.chars.next() {
                        match c {
                            '"' => break,
                            '\\' => token.extend(self.chars.next()),
                            c => token.push(c),
                        }
                    }
                    return Some(token);
                }
                Some(_) => {
                    let mut token = String::new();
                    while let Some(&c) = self.chars.peek() {
                        if c.is_whitespace() {
                            break;
                        }
                        self.chars.next();
                        if c == '\\' {
                            token.extend(self.chars.next());
                        } else {
                            token.push(c);
                        }
                    }
                    return Some(token);
                }
            }
        }
    }

    /// A `macdef` body: Python's lexer has consumed the whitespace character after the macro
    /// name; the body is the following lines up to a line that is exactly `\n`.
    fn skip_macro_body(&mut self) -> Result<(), String> {
        if self.chars.peek().is_some_and(|c| c.is_whitespace()) {
            self.chars.next();
        }
        loop {
            let mut line = String::new();
            for c in self.chars.by_ref() {
                line.push(c);
                if c == '\n' {
                    break;
                }
            }
            if line.is_empty() {
                return Err("macro definition missing null line terminator".into());
            }
            if line == "\n" {
                return Ok(());
            }
        }
    }
}

/// The netrc file the SDK would use (`wbnetrc._get_netrc_file_path`). The file may not exist.
pub fn netrc_path(env: &Environment) -> Option<PathBuf> {
    if let Some(path) = env.var("NETRC") {
        return Some(env.expand_user(path));
    }
    let home = env.home()?;
    let unix = home.join(".netrc");
    if unix.exists() {
        return Some(unix);
    }
    let windows = home.join("_netrc");
    if windows.exists() {
        return Some(windows);
    }
    Some(unix)
}

/// Reads `path` and returns the password for the first machine name that has one.
/// Missing file → `None`; unreadable or malformed file → `None` with a warning (SDK behaviour).
pub fn lookup_password(path: &Path, machines: &[&str]) -> Option<(String, String)> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!("failed to read netrc file at {}: {e}", path.display());
            return None;
        }
    };
    let netrc = match Netrc::parse(&text) {
        Ok(netrc) => netrc,
        Err(e) => {
            tracing::warn!("failed to read netrc file at {}: {e}", path.display());
            return None;
        }
    };
    // The SDK tries the next machine only when the first has no entry at all; an entry with an
    // empty password ends the lookup with a warning.
    for machine in machines {
        if let Some(entry) = netrc.authenticators(machine) {
            if entry.password.is_empty() {
                tracing::warn!(
                    "found entry for machine {machine:?} with no API key at {}",
                    path.display()
                );
                return None;
            }
            return Some(((*machine).to_owned(), entry.password.clone()));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wandb_login_output_and_python_forms() {
        let text = "machine api.wandb.ai\n  login user\n  password abc\n\n\
                    # a comment line\n\
                    machine 127.0.0.1:8080 login user password \"q w\\\"e\"\n\
                    macdef init\n  cd /x\n  ls\n\n\
                    machine dup password first\nmachine dup password second\n\
                    default login anon password dflt account acct\n";
        let n = Netrc::parse(text).unwrap();
        assert_eq!(n.authenticators("api.wandb.ai").unwrap().password, "abc");
        assert_eq!(n.authenticators("api.wandb.ai").unwrap().login, "user");
        assert_eq!(
            n.authenticators("127.0.0.1:8080").unwrap().password,
            "q w\"e"
        );
        assert_eq!(n.authenticators("dup").unwrap().password, "second");
        assert_eq!(n.authenticators("elsewhere").unwrap().password, "dflt");
    }

    #[test]
    fn malformed_files_are_errors() {
        assert!(Netrc::parse("bogus token\n").is_err());
        assert!(Netrc::parse("machine\n").is_err());
        assert!(Netrc::parse("machine h frobnicate x\n").is_err());
    }

    #[test]
    fn netrc_path_precedence() {
        let dir = tempfile::tempdir().unwrap();
        let env = Environment::isolated().with_home(dir.path());
        assert_eq!(netrc_path(&env).unwrap(), dir.path().join(".netrc"));
        std::fs::write(dir.path().join("_netrc"), "").unwrap();
        assert_eq!(netrc_path(&env).unwrap(), dir.path().join("_netrc"));
        std::fs::write(dir.path().join(".netrc"), "").unwrap();
        assert_eq!(netrc_path(&env).unwrap(), dir.path().join(".netrc"));
        let env = env.with_var("NETRC", "~/custom");
        assert_eq!(netrc_path(&env).unwrap(), dir.path().join("custom"));
    }
}
