//! Running in the background: `wandbfs mount` without `--foreground` returns only once the
//! mount answers (exit 0), or with the reason it could not (exit 1).
//!
//! The process forks before it starts any thread (forking a multi-threaded process is
//! unsound). The child starts a session of its own, sends its output to the log file, mounts,
//! and reports `ok` or the error through a pipe; the parent prints that and exits. A child
//! that dies before reporting leaves the pipe closed without a word, which the parent reports
//! with the log file's path.

use std::io::{BufRead as _, Write as _};
use std::os::fd::{AsRawFd as _, OwnedFd};
use std::path::Path;

use anyhow::Context;

/// The child's end: how it reports readiness.
pub struct Readiness {
    pipe: Option<std::fs::File>,
}

impl Readiness {
    /// A foreground run: nobody to report to.
    pub fn foreground() -> Self {
        Readiness { pipe: None }
    }

    /// The mount answers.
    pub fn ready(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "ok {}", std::process::id());
        }
    }

    /// The mount failed.
    pub fn failed(&mut self, error: &anyhow::Error) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = writeln!(pipe, "{}", format!("{error:#}").replace('\n', " "));
        }
    }
}

/// What `fork` left us as.
pub enum Forked {
    /// The parent: the child's report — its pid once ready, or `Err(status)`.
    Parent(Result<u32, i32>),
    /// The child: mounts and reports.
    Child(Readiness),
}

/// Forks; the child detaches (new session, stdin from /dev/null, stdout and stderr to
/// `log_file`).
pub fn daemonize(log_file: &Path) -> anyhow::Result<Forked> {
    if let Some(dir) = log_file.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the log directory {}", dir.display()))?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_file)
        .with_context(|| format!("opening the log file {}", log_file.display()))?;
    let (read_end, write_end): (OwnedFd, OwnedFd) =
        nix::unistd::pipe().context("creating a pipe")?;
    // SAFETY: no thread has been started yet (the caller forks before creating the runtime),
    // so the child is a faithful copy that may run arbitrary code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { child } => {
            drop(write_end);
            let reader = std::io::BufReader::new(std::fs::File::from(read_end));
            let first = reader.lines().next().transpose().unwrap_or(None);
            Ok(Forked::Parent(match first.as_deref() {
                Some(ok) if ok.starts_with("ok ") => Ok(ok[3..].trim().parse().unwrap_or(0)),
                Some(error) => {
                    eprintln!("error: {error}");
                    eprintln!("hint: the daemon's log is {}", log_file.display());
                    Err(1)
                }
                None => {
                    eprintln!(
                        "error: the mount daemon (pid {child}) exited before the mount was ready"
                    );
                    eprintln!("hint: its log is {}", log_file.display());
                    Err(1)
                }
            }))
        }
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            let _ = nix::unistd::setsid();
            let null = std::fs::File::open("/dev/null").context("opening /dev/null")?;
            redirect(&null, 0)?;
            redirect(&log, 1)?;
            redirect(&log, 2)?;
            Ok(Forked::Child(Readiness {
                pipe: Some(std::fs::File::from(write_end)),
            }))
        }
    }
}

fn redirect(file: &std::fs::File, fd: i32) -> anyhow::Result<()> {
    // SAFETY: dup2 on two valid descriptors; `fd` is one of the standard streams.
    let rc = unsafe { libc::dup2(file.as_raw_fd(), fd) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("redirecting the standard streams");
    }
    Ok(())
}
