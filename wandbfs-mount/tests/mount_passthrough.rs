//! FUSE passthrough on a real kernel mount: once a run file's bytes are all in the content
//! cache, and for rendered tables, an open hands the kernel the local file. The kernel's rules
//! (`fs/fuse/iomode.c`: cached and passthrough opens of one inode exclude each other, and the
//! passthrough opens share one backing) are exercised the way users trip over them — a handle
//! kept open while another reader completes the cache, two readers at once, `mmap` — and every
//! read returns the file's bytes.

mod mount_support;

use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::time::{Duration, Instant};

use mount_support::*;
use wandb_emulator::{EmulatorConfig, SeedSpec};

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "pt")
        .runs(2)
        .steps(300)
        .keys(4)
        .files(3)
        .bigfile(12 << 20)
}

/// Opens that went passthrough so far (the daemon's trace log says so per open).
fn passthrough_opens(mount: &Mount) -> usize {
    mount.log_text().matches("open: passthrough").count()
}

/// Waits until the content cache holds a complete object (the cache writes in the background:
/// the event is the `.obj` file appearing), failing after a minute.
fn wait_for_complete_object(cache: &std::path::Path) {
    let started = Instant::now();
    loop {
        let complete = walk_files(cache).iter().any(|p| p.ends_with(".obj"));
        if complete {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no complete object in {} after a minute",
            cache.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn walk_files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p.display().to_string());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn complete_cached_files_and_tables_pass_through_with_the_right_bytes() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "pt");
    env.sync("alice/pt");
    let cache = env.home.path().join("pt-cache");
    let mount = env.mount(&["--cache-dir", &cache.display().to_string()]);
    let rel = "large/blob-1GiB.bin";
    let big = mount.join(&format!("alice/pt/{}/{rel}", runs[0].name));
    let truth = env.emu.run_file_bytes(&runs[0], rel).unwrap();
    assert_eq!(truth.len(), 12 << 20);

    // A handle opened before the object is complete (through the page cache) stays open while
    // another reader completes the cache.
    let early = std::fs::File::open(&big).unwrap();
    let mut one = [0u8; 1];
    early.read_exact_at(&mut one, 5).unwrap();
    assert_eq!(one[0], truth[5]);
    assert_eq!(std::fs::read(&big).unwrap(), truth);
    wait_for_complete_object(&cache.join("content"));
    // The inode has a cached open: a new open must be cached too (the kernel refuses a mix).
    let before = passthrough_opens(&mount);
    let mut during = Vec::new();
    std::fs::File::open(&big)
        .unwrap()
        .read_to_end(&mut during)
        .unwrap();
    assert_eq!(during, truth, "an open beside a cached one");
    assert_eq!(passthrough_opens(&mount), before, "{}", mount.log_text());
    drop(early);

    // Nothing open: the next opens pass through, share the backing, and read the bytes —
    // also through mmap, and while another passthrough handle is open.
    let a = std::fs::File::open(&big).unwrap();
    let b = std::fs::File::open(&big).unwrap();
    assert!(
        passthrough_opens(&mount) >= before + 2,
        "{}",
        mount.log_text()
    );
    let mut buf = vec![0u8; 1 << 20];
    a.read_exact_at(&mut buf, 3 << 20).unwrap();
    assert_eq!(buf, truth[3 << 20..4 << 20]);
    b.read_exact_at(&mut buf, 11 << 20).unwrap();
    assert_eq!(buf, truth[11 << 20..12 << 20]);
    // SAFETY: a read-only private mapping of an open file, unmapped below.
    let mapped = unsafe {
        let len = truth.len();
        let p = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&a),
            0,
        );
        assert_ne!(p, libc::MAP_FAILED, "{}", std::io::Error::last_os_error());
        let bytes = std::slice::from_raw_parts(p as *const u8, len).to_vec();
        libc::munmap(p, len);
        bytes
    };
    assert_eq!(mapped, truth, "mmap of a passthrough file");
    drop((a, b));

    // A rendered table passes through too.
    let table = mount.join(&format!("alice/pt/{}/history.parquet", runs[1].name));
    let before = passthrough_opens(&mount);
    let bytes = std::fs::read(&table).unwrap();
    assert_eq!(&bytes[..4], b"PAR1");
    assert_eq!(bytes.len() as u64, std::fs::metadata(&table).unwrap().len());
    assert!(passthrough_opens(&mount) > before, "{}", mount.log_text());
    mount.unmount();

    // --no-passthrough: the same bytes through the daemon, no passthrough open.
    let mount = env.mount(&[
        "--cache-dir",
        &cache.display().to_string(),
        "--no-passthrough",
    ]);
    let big = mount.join(&format!("alice/pt/{}/{rel}", runs[0].name));
    assert_eq!(std::fs::read(&big).unwrap(), truth);
    assert_eq!(passthrough_opens(&mount), 0, "{}", mount.log_text());
    mount.unmount();
}
