//! `wandbfs mount` flags, with every default explained where it is defined.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::db::DatabaseArgs;

/// `wandbfs mount MOUNTPOINT [SCOPE]`
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Where to mount (an existing, empty directory).
    pub mountpoint: PathBuf,

    /// Mount only this subtree at the mount point's root: `entity`, `entity/project` or
    /// `entity/project/run_id` [default: everything].
    pub scope: Option<String>,

    /// Stay in the foreground (logs on stderr) instead of returning once the mount answers.
    #[arg(short, long)]
    pub foreground: bool,

    /// Read-only (the default; the kernel refuses every write with EROFS).
    #[arg(long, conflicts_with = "allow_write")]
    pub read_only: bool,

    /// Let run files be created, written, renamed and deleted (uploads to and deletions in
    /// W&B). Synthetic files, artifacts and the levels above runs stay read-only.
    #[arg(long)]
    pub allow_write: bool,

    /// Let other users access the mount (needs `user_allow_other` in /etc/fuse.conf unless
    /// root).
    #[arg(long, conflicts_with = "allow_root")]
    pub allow_other: bool,

    /// Let root access the mount too.
    #[arg(long)]
    pub allow_root: bool,

    /// Unmount automatically when the daemon exits, even when killed (needs fusermount3 from
    /// the fuse3 package; implies --allow-root unless --allow-other).
    #[arg(long)]
    pub auto_unmount: bool,

    /// Owner of every file [default: the user who mounts].
    #[arg(long)]
    pub uid: Option<u32>,

    /// Group of every file [default: the user's group].
    #[arg(long)]
    pub gid: Option<u32>,

    /// Seconds listings and attributes are trusted (by the kernel and by wandbfs) before they
    /// are asked again. Changes the mount makes or syncs itself are seen at once. Also the
    /// age after which a running run's files are refreshed on access.
    #[arg(long, env = "WANDBFS_METADATA_TTL", value_name = "SECS", default_value_t = DEFAULT_METADATA_TTL.as_secs_f64())]
    pub metadata_ttl: f64,

    /// Where file contents are cached [default: $XDG_CACHE_HOME/wandbfs, else
    /// ~/.cache/wandbfs].
    #[arg(long, env = "WANDBFS_CACHE_DIR", value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,

    /// Most bytes the content cache keeps (least recently used blocks go first): e.g. 500M,
    /// 20G.
    #[arg(long, env = "WANDBFS_CACHE_SIZE", value_name = "SIZE", default_value = DEFAULT_CACHE_SIZE, value_parser = parse_size)]
    pub cache_size: u64,

    /// Do not cache file contents on disk (the kernel's page cache still applies).
    #[arg(long, conflicts_with_all = ["cache_dir"])]
    pub no_cache: bool,

    /// No extended attributes (no `user.wandb.*`): the kernel is told the mount has none.
    /// Not needed for a fast `ls -l` (names outside `user.` are answered "not supported",
    /// which `ls` remembers for the whole mount); kept for scripts that pass it.
    #[arg(long)]
    pub no_xattr: bool,

    /// Largest file `mv` within the mount copies (W&B has no rename: the bytes go through the
    /// daemon); above it rename answers EXDEV and `mv` copies and deletes the file itself.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = parse_size)]
    pub max_rename_copy: u64,

    /// Read every file through the daemon, never by FUSE passthrough (by default a file whose
    /// bytes are complete in the content cache, and a rendered table, are read by the kernel
    /// straight from the local copy: kernel ≥ 6.9, root).
    #[arg(long)]
    pub no_passthrough: bool,

    /// Keep projects synced while mounted: the ones named (ENTITY/PROJECT), or without names
    /// the mounted scope's projects that are in the mirror. New steps of running runs show in
    /// `tail -f`, new runs in `ls`. Put it after the mount point.
    #[arg(long, num_args = 0.., value_name = "ENTITY/PROJECT")]
    pub sync: Option<Vec<String>>,

    /// Seconds between background syncs (with --sync).
    #[arg(long, env = "WANDBFS_SYNC_INTERVAL", value_name = "SECS", default_value_t = DEFAULT_SYNC_INTERVAL.as_secs_f64())]
    pub sync_interval: f64,

    /// Serve the mirror alone: no W&B request. What is not mirrored is missing; run files are
    /// readable only from the content cache.
    #[arg(long, conflicts_with_all = ["sync", "allow_write"])]
    pub offline: bool,

    /// Requests per second to W&B, shared by everything the mount does [default: 5/s; no
    /// limit for a server on this machine].
    #[arg(long, env = "WANDBFS_MAX_RPS", value_name = "RATE")]
    pub max_rps: Option<f64>,

    /// Seconds a request waits for the mirror database before it fails with EIO: a server
    /// that is paused, overloaded or cut off never hangs the mount.
    #[arg(long, env = "WANDBFS_DATABASE_TIMEOUT", value_name = "SECS", default_value_t = DEFAULT_DATABASE_TIMEOUT.as_secs_f64())]
    pub database_timeout: f64,

    /// The daemon's log file (without --foreground) [default: <cache dir>/mount.log].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// Listings and attributes are trusted for **10 s**: long enough that `ls -l` of a large
/// project and repeated `stat`s are answered from memory (the kernel's and ours), short enough
/// that a sync run elsewhere (another `wandbfs sync`) shows soon. The mount's own syncs and
/// writes invalidate at once, so `--sync` users never wait for it.
pub const DEFAULT_METADATA_TTL: Duration = Duration::from_secs(10);

/// Background syncs every **10 s**: a no-change sync of a project costs two requests (and
/// each running run about six), well inside W&B's rate limits, and `tail -f` of a running
/// run then lags W&B by at most about that.
pub const DEFAULT_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// A request gives up on the database after **10 s** in all: at most half of it waiting for a
/// free connection, half for the statement (or for a new connection). The mount's statements
/// are indexed reads that take milliseconds; a server that needs seconds is stalled, and a
/// user is better served by `EIO` than by a hung shell.
pub const DEFAULT_DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// **10 GiB** of cached file contents: a few checkpoints' worth, small next to today's disks;
/// raise it for large media sets.
pub const DEFAULT_CACHE_SIZE: &str = "10G";

/// Readahead bytes in flight across all open files: **64 MiB** bounds the mount's memory
/// however many files are read at once (16 MiB per sequential reader at most).
pub const READ_BUDGET: u64 = 64 << 20;

/// A size: a number with an optional K/M/G/T suffix (powers of 1024; a trailing `B`/`iB` is
/// accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, shift) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 10),
        Some('m' | 'M') => (&t[..t.len() - 1], 20),
        Some('g' | 'G') => (&t[..t.len() - 1], 30),
        Some('t' | 'T') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("not a size: {text:?} (e.g. 500M, 20G)"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("not a size: {text:?}"));
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// Seconds as a duration (negative or NaN = zero).
pub fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::ZERO)
}

/// The default cache directory: `$XDG_CACHE_HOME/wandbfs`, else `~/.cache/wandbfs`, else (no
/// home) `/var/cache/wandbfs`.
pub fn default_cache_dir() -> PathBuf {
    wandbfs::store::tables::user_cache_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("500M"), Ok(500 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1G").is_err());
    }
}
