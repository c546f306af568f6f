//! Differential tests (JuiceFS's fsrand idea): thousands of random `stat`s, directory reads
//! and ranged reads — through fresh handles and through long-lived ones that seek around — on
//! the mount and on a local copy of the same tree made from `WandbStore` over the live API
//! (and the tables, which only the mirror renders);
//! zero differences. And 8 parallel readers of different files and offsets: every checksum
//! right, the daemon's memory bounded.

mod mount_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::os::fd::AsRawFd as _;
use std::path::{Path as FsPath, PathBuf};

use futures::TryStreamExt;
use mount_support::*;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wandb_emulator::{EmulatorConfig, RunKey, SeedSpec};
use wandbfs::store::WandbStore;

/// Writes every object under `prefix` into `dir` (the oracle tree).
async fn local_copy(store: &WandbStore, prefix: &str, dir: &FsPath) {
    let objects: Vec<_> = store
        .list(Some(&Path::parse(prefix).unwrap()))
        .try_collect()
        .await
        .unwrap();
    for o in objects {
        let path = dir.join(o.location.as_ref());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap();
        std::fs::write(&path, &bytes).unwrap();
    }
}

/// Drops the kernel's cached pages of an open file, so the next read reaches the daemon.
fn forget_pages(file: &std::fs::File) {
    // SAFETY: fadvise on a valid descriptor.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

fn read_range(file: &mut std::fs::File, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = file.read(&mut buf[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    buf.truncate(got);
    Ok(buf)
}

/// What a path is, as `stat` says (kind, size for files), or its errno.
fn describe(path: &FsPath) -> Result<(bool, u64), i32> {
    std::fs::metadata(path)
        .map(|m| (m.is_dir(), if m.is_dir() { 0 } else { m.len() }))
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

fn names(dir: &FsPath) -> Result<BTreeSet<String>, i32> {
    std::fs::read_dir(dir)
        .map_err(|e| e.raw_os_error().unwrap_or(-1))?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|e| e.raw_os_error().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_operations_agree_with_a_local_copy() {
    let env = Env::new(
        EmulatorConfig::default().seed(
            SeedSpec::new("alice", "rand")
                .runs(3)
                .steps(3_000)
                .keys(8)
                .files(8)
                .bigfile(9 << 20),
        ),
    )
    .await;
    env.sync("alice/rand");
    let local = tempfile::tempdir().unwrap();
    local_copy(&live_store(&env), "alice/rand", local.path()).await;
    for (location, bytes) in table_objects(&env, "alice/rand").await {
        std::fs::write(local.path().join(location), bytes).unwrap();
    }
    let mount = env.mount(&[]);
    let local_root = local.path().join("alice/rand");
    let mount_root = mount.join("alice/rand");

    // Every path of the oracle, plus names that exist nowhere.
    let mut paths: Vec<String> = walk(&local_root);
    let files: Vec<String> = paths
        .iter()
        .filter(|p| !p.ends_with('/'))
        .cloned()
        .collect();
    let dirs: Vec<String> = paths.iter().filter(|p| p.ends_with('/')).cloned().collect();
    paths.extend(dirs.iter().map(|d| format!("{d}nothing-here")));
    paths.push("nope/".into());
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let mut handles: BTreeMap<String, (std::fs::File, std::fs::File)> = BTreeMap::new();
    let mut counts = BTreeMap::<&str, u32>::new();
    for op in 0..3_000 {
        match rng.random_range(0..10) {
            0..=2 => {
                let p = &paths[rng.random_range(0..paths.len())];
                let want = describe(&local_root.join(p));
                let got = describe(&mount_root.join(p));
                assert_eq!(got, want, "op {op}: stat {p}");
                *counts.entry("stat").or_default() += 1;
            }
            3 => {
                let d = &dirs[rng.random_range(0..dirs.len())];
                assert_eq!(
                    names(&mount_root.join(d)),
                    names(&local_root.join(d)),
                    "op {op}: readdir {d}"
                );
                *counts.entry("readdir").or_default() += 1;
            }
            4..=6 => {
                // A fresh handle, a random range.
                let f = &files[rng.random_range(0..files.len())];
                let size = std::fs::metadata(local_root.join(f)).unwrap().len();
                let offset = rng.random_range(0..=size);
                let len = rng.random_range(0..(2 << 20)) as usize;
                let mut m = std::fs::File::open(mount_root.join(f)).unwrap();
                forget_pages(&m);
                let mut l = std::fs::File::open(local_root.join(f)).unwrap();
                assert!(
                    read_range(&mut m, offset, len).unwrap()
                        == read_range(&mut l, offset, len).unwrap(),
                    "op {op}: read {f} at {offset}+{len}"
                );
                *counts.entry("read").or_default() += 1;
            }
            _ => {
                // A long-lived handle that reads on or seeks (the readers' state machines).
                let f = files[rng.random_range(0..files.len())].clone();
                let size = std::fs::metadata(local_root.join(&f)).unwrap().len();
                let (m, l) = handles.entry(f.clone()).or_insert_with(|| {
                    (
                        std::fs::File::open(mount_root.join(&f)).unwrap(),
                        std::fs::File::open(local_root.join(&f)).unwrap(),
                    )
                });
                let offset = if rng.random_bool(0.6) {
                    l.stream_position().unwrap()
                } else {
                    rng.random_range(0..=size)
                };
                let len = rng.random_range(1..(1 << 20)) as usize;
                forget_pages(m);
                assert!(
                    read_range(m, offset, len).unwrap() == read_range(l, offset, len).unwrap(),
                    "op {op}: handle read {f} at {offset}+{len}"
                );
                *counts.entry("handle read").or_default() += 1;
            }
        }
    }
    eprintln!("3,000 operations, 0 differences: {counts:?}");
    drop(handles);
    mount.unmount();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_readers_get_their_bytes_in_bounded_memory() {
    let env = Env::new(
        EmulatorConfig::default().seed(
            SeedSpec::new("alice", "par")
                .runs(1)
                .steps(10)
                .keys(2)
                .files(1)
                .bigfile(0),
        ),
    )
    .await;
    let run: RunKey = env.emu.runs("alice", "par")[0].clone();
    let mut sums = Vec::new();
    for i in 0..8u64 {
        let mut rng = StdRng::seed_from_u64(i);
        let bytes: Vec<u8> = (0..(16u64 << 20)).map(|_| rng.random()).collect();
        sums.push(md5_hex(&bytes));
        env.emu
            .put_run_file(&run, &format!("shards/shard-{i}.bin"), bytes)
            .unwrap();
    }
    env.sync("alice/par");
    let mount = env.mount(&["--no-cache"]);
    let dir = mount.join(&format!("alice/par/{}/shards", run.name));
    let readers: Vec<_> = (0..8u64)
        .map(|i| {
            let path: PathBuf = dir.join(format!("shard-{i}.bin"));
            std::thread::spawn(move || {
                // Each starts at its own offset, reads to the end, then the start.
                let mut f = std::fs::File::open(&path).unwrap();
                let start = i * (1 << 20) + 4096 * i;
                let mut tail = Vec::new();
                f.seek(SeekFrom::Start(start)).unwrap();
                f.read_to_end(&mut tail).unwrap();
                let mut head = vec![0u8; start as usize];
                f.seek(SeekFrom::Start(0)).unwrap();
                f.read_exact(&mut head).unwrap();
                head.extend_from_slice(&tail);
                md5_hex(&head)
            })
        })
        .collect();
    for (i, reader) in readers.into_iter().enumerate() {
        assert_eq!(reader.join().unwrap(), sums[i], "shard {i}");
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", mount.pid)).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    eprintln!(
        "daemon peak RSS with 8 readers of 16 MiB files: {} MiB",
        peak_kib >> 10
    );
    // Readahead holds at most 256 MiB in all (16 MiB per reader here); the rest is the
    // runtime, the pool and the client.
    assert!(peak_kib < 384 << 10, "peak RSS {} MiB", peak_kib >> 10);
    mount.unmount();
}
