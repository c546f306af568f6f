//! What every subcommand shares: verbosity, logging, and how a failure reaches the user.
//!
//! A failure is one line, `error: <what went wrong>`, plus a `hint: <what to do>` line when
//! there is a fix, whatever `RUST_BACKTRACE` says: that variable is set in many developers'
//! shells, and a user error is not a crash. `-v` adds the error's causes and, when one was
//! captured (`RUST_BACKTRACE`/`RUST_LIB_BACKTRACE`), its backtrace. Panics keep Rust's own
//! report.

use std::process::ExitCode;

use wandbfs::client;
use wandbfs::mirror::MirrorError;
use wandbfs::sync::SyncError;

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: an error; the command did not do what was asked.
pub const EXIT_ERROR: u8 = 1;
/// Exit status of `wandbfs sync`: it finished, but some runs or projects failed or were
/// skipped (the summary names them). clap also exits 2 on a malformed command line.
pub const EXIT_PARTIAL: u8 = 2;
/// Exit status: interrupted (Ctrl-C / SIGINT); what was committed stays.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The exit statuses, for `--help`.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success
  1    error (bad target, credentials, W&B unreachable, database); one `error:` line says why
  2    malformed command line; for `sync`: finished, but some runs or projects failed
  3    `db status`: the embedded server is not running
  130  interrupted (Ctrl-C)

Logging: -v (info), -vv (debug), -vvv (trace), or WANDBFS_LOG=<filter> (e.g. wandbfs=debug).";

/// `-v`/`-q`, given anywhere on the command line.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct Verbosity {
    /// More output: -v logs what happens (info), -vv debug, -vvv trace; errors show their
    /// causes (and a backtrace when RUST_BACKTRACE or RUST_LIB_BACKTRACE captured one).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Less output: no progress, no notes; errors and requested output only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
}

impl Verbosity {
    /// The tracing filter: `WANDBFS_LOG` when set, else from `-v`.
    pub fn filter(&self) -> tracing_subscriber::EnvFilter {
        if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("WANDBFS_LOG") {
            return filter;
        }
        let level = match self.verbose {
            0 => "error",
            1 => "info",
            2 => "debug",
            _ => "trace",
        };
        tracing_subscriber::EnvFilter::new(level)
    }

    /// Logs to stderr.
    pub fn init_logging(&self) {
        self.init_logging_at(self.verbose);
    }

    /// Logs to stderr at the level `-v` repeated `verbose` times gives.
    pub fn init_logging_at(&self, verbose: u8) {
        let with = Verbosity { verbose, ..*self };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(with.filter())
            .with_target(verbose >= 2)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

/// A failure with a known fix, raised by the commands themselves.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct UserError {
    /// What went wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl UserError {
    /// An error with a hint line.
    pub fn with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        UserError {
            message: message.into(),
            hint: Some(hint.into()),
        }
    }
}

/// Prints `error`'s report on stderr and returns the exit status for it.
pub fn report(error: &anyhow::Error, verbosity: &Verbosity) -> ExitCode {
    if verbosity.verbose > 0 {
        // anyhow's Debug: the message, every cause, and the backtrace when one was captured.
        eprintln!("error: {error:?}");
    } else {
        eprintln!("error: {}", one_line(error));
    }
    if let Some(hint) = hint(error) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(EXIT_ERROR)
}

/// The error and its causes on one line, without repeating a cause a message already quotes.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace('\n', " ")
}

/// What to do about `error`, when there is something to do.
fn hint(error: &anyhow::Error) -> Option<String> {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<UserError>() {
            return e.hint.clone();
        }
        let client_error = cause.downcast_ref::<client::Error>().or_else(|| {
            cause.downcast_ref::<SyncError>().and_then(|e| match e {
                SyncError::Client(c) => Some(c),
                _ => None,
            })
        });
        if let Some(e) = client_error {
            return client_hint(e);
        }
        let mirror_error = cause.downcast_ref::<MirrorError>().or_else(|| {
            cause.downcast_ref::<SyncError>().and_then(|e| match e {
                SyncError::Mirror(m) => Some(m),
                _ => None,
            })
        });
        if let Some(e) = mirror_error {
            return mirror_hint(e);
        }
    }
    None
}

fn client_hint(error: &client::Error) -> Option<String> {
    match error {
        client::Error::Unauthenticated { .. } => Some(
            "check the key: `wandb login --relogin` (or WANDB_API_KEY) for this server; \
             `wandbfs` uses the key the SDK would"
                .to_owned(),
        ),
        client::Error::RetriesExhausted {
            last_status: None, ..
        } => Some(
            "check WANDB_BASE_URL (or `wandb login --host`) and the network; the server did not \
             answer"
                .to_owned(),
        ),
        client::Error::RateLimited { .. } => Some(
            "W&B rate-limited every attempt: lower --max-rps or --jobs, or try later".to_owned(),
        ),
        _ => None,
    }
}

fn mirror_hint(error: &MirrorError) -> Option<String> {
    match error {
        MirrorError::InvalidUrl { .. } => Some(
            "--database-url / WANDBFS_DATABASE_URL takes postgresql://user@host:port/dbname \
             (or omit it to use the embedded cluster)"
                .to_owned(),
        ),
        MirrorError::Pool(_) | MirrorError::Db { .. } => Some(
            "is the database server running and reachable? `wandbfs db status` shows where the \
             mirror is"
                .to_owned(),
        ),
        _ => None,
    }
}
