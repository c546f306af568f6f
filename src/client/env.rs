//! The process environment as seen by settings resolution, injectable for tests.
//!
//! Resolution reads environment variables, the home directory and the working directory. Tests
//! must not mutate the real process environment (tests run in parallel threads), so everything is
//! read through an [`Environment`] value: [`Environment::from_process`] snapshots the real one,
//! [`Environment::isolated`] starts empty.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A snapshot of environment variables plus home and working directories.
#[derive(Clone, Default)]
pub struct Environment {
    vars: BTreeMap<String, String>,
    home: Option<PathBuf>,
    cwd: Option<PathBuf>,
}

impl std::fmt::Debug for Environment {
    /// Lists variable *names* only: values may be secrets (`WANDB_API_KEY`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Environment")
            .field("vars", &self.vars.keys().collect::<Vec<_>>())
            .field("home", &self.home)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl Environment {
    /// Snapshot of the real process: all (UTF-8) variables, `$HOME` and the current directory.
    pub fn from_process() -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .collect::<BTreeMap<_, _>>();
        let home = vars
            .get("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(home_from_passwd);
        Environment {
            vars,
            home,
            cwd: std::env::current_dir().ok(),
        }
    }

    /// An empty environment: no variables, no home, no working directory. Build it up with
    /// [`with_var`](Self::with_var), [`with_home`](Self::with_home), [`with_cwd`](Self::with_cwd).
    pub fn isolated() -> Self {
        Environment::default()
    }

    /// Sets a variable.
    pub fn with_var(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.vars.insert(name.into(), value.into());
        self
    }

    /// Sets the home directory (used for `~/.netrc`, `~/.config/wandb/…`).
    pub fn with_home(mut self, home: impl Into<PathBuf>) -> Self {
        self.home = Some(home.into());
        self
    }

    /// Sets the working directory (used for the workspace settings file `./wandb/settings`).
    pub fn with_cwd(mut self, cwd: impl Into<PathBuf>) -> Self {
        self.cwd = Some(cwd.into());
        self
    }

    /// A variable's value; empty values count as unset, as in the SDK's `if api_key:` checks.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// The home directory, if known.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The working directory, if known.
    pub fn cwd(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// Python's `os.path.expanduser` for `~` and `~/…` (other users' `~name` are left alone).
    pub fn expand_user(&self, path: &str) -> PathBuf {
        match (path.strip_prefix('~'), self.home()) {
            (Some(""), Some(home)) => home.to_path_buf(),
            (Some(rest), Some(home)) if rest.starts_with('/') => {
                home.join(rest.trim_start_matches('/'))
            }
            _ => PathBuf::from(path),
        }
    }

    /// A path relative to the working directory, made absolute.
    pub fn absolute(&self, path: PathBuf) -> PathBuf {
        match self.cwd() {
            Some(cwd) if path.is_relative() => cwd.join(path),
            _ => path,
        }
    }
}

/// `$HOME` fallback like Python's `expanduser`: the passwd entry of the current user.
fn home_from_passwd() -> Option<PathBuf> {
    // Without libc bindings, read /etc/passwd for the effective uid reported by /proc.
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .to_owned();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2] == uid).then(|| PathBuf::from(fields[5]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_user_only_touches_own_home() {
        let env = Environment::isolated().with_home("/h");
        assert_eq!(env.expand_user("~"), PathBuf::from("/h"));
        assert_eq!(env.expand_user("~/x/y"), PathBuf::from("/h/x/y"));
        assert_eq!(env.expand_user("~bob/x"), PathBuf::from("~bob/x"));
        assert_eq!(env.expand_user("/abs"), PathBuf::from("/abs"));
    }

    #[test]
    fn empty_variables_count_as_unset_and_debug_hides_values() {
        let env = Environment::isolated()
            .with_var("WANDB_API_KEY", "")
            .with_var("X", "secret-value");
        assert_eq!(env.var("WANDB_API_KEY"), None);
        assert_eq!(env.var("X"), Some("secret-value"));
        assert!(!format!("{env:?}").contains("secret-value"));
    }
}
