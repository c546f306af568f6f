//! The filesystem logic without the kernel: `WandbFs` driven directly (lookup, getattr,
//! readdir with stable offsets, open/read at any offset, readlink, xattrs, errors) over an
//! emulator and a throwaway mirror — what the FUSE adapter calls, without a mount.

use std::ffi::OsStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use object_store::path::Path;
use secrecy::SecretString;
use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};
use wandbfs::client::{Client, ClientConfig, Environment, Overrides, settings};
use wandbfs::mirror::testing::fresh_database;
use wandbfs::store::{Layered, LiveSource, MetadataSource, MirrorSource, WandbStore};
use wandbfs::sync::{SyncEngine, SyncOptions, SyncTarget};
use wandbfs_mount::fs::refresh::Notices;
use wandbfs_mount::fs::{Backend, Catalog, CatalogConfig, FsConfig, Kind, ROOT_INO, WandbFs};

/// The first run's large file: big enough for readahead to reach its full window.
const BIG_FILE: u64 = 40 << 20;

fn client(emu: &Emulator) -> Client {
    let overrides = Overrides {
        base_url: Some(emu.base_url().to_owned()),
        api_key: Some(SecretString::from(emu.api_key())),
        ..Overrides::default()
    };
    let settings = settings::resolve(&overrides, &Environment::isolated()).unwrap();
    let mut config = ClientConfig::default();
    config.rate.requests_per_second = 0.0;
    Client::new(settings, config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_logic_answers_like_a_filesystem() {
    let emu = Emulator::start_with(
        EmulatorConfig::default().seed(
            SeedSpec::new("alice", "logic")
                .runs(3)
                .steps(400)
                .keys(4)
                .files(5)
                .bigfile(BIG_FILE)
                .artifacts(1)
                .artifact_bigfile(1 << 20),
        ),
    )
    .unwrap();
    let db = fresh_database().await.unwrap();
    let client = client(&emu);
    let engine = SyncEngine::new(client.clone(), db.mirror.clone(), SyncOptions::default());
    let report = engine
        .sync(&[SyncTarget::project("alice", "logic")])
        .await
        .unwrap();
    assert!(report.is_success());

    let mirror_source = MirrorSource::new(db.mirror.clone());
    let live: Arc<dyn MetadataSource> =
        Arc::new(LiveSource::new(client.clone(), Default::default()));
    let source: Arc<dyn MetadataSource> = Arc::new(Layered::new(
        Arc::new(mirror_source.clone()),
        Arc::clone(&live),
    ));
    let store = WandbStore::builder(client.clone())
        .with_source(Arc::clone(&source))
        .build();
    let catalog = Arc::new(Catalog::new(
        Backend {
            store: store.clone(),
            source,
            mirror_source,
            live: Some(live),
            mirror: db.mirror.clone(),
            engine: Some(engine),
            background: None,
        },
        CatalogConfig {
            metadata_ttl: Duration::from_secs(10),
            offline: false,
            allow_write: false,
            mount_time: SystemTime::now(),
        },
    ));
    let (notices, _rx) = Notices::channel();
    let fs = WandbFs::new(
        catalog,
        None,
        FsConfig {
            scope: Path::ROOT,
            read_budget: 16 << 20,
            uid: 0,
            gid: 0,
            offline: false,
            rename_copy_max: 1 << 30,
        },
        notices,
    )
    .await
    .unwrap();

    // Walk down by lookup.
    let (alice, attr) = fs.lookup(ROOT_INO, OsStr::new("alice")).await.unwrap();
    assert_eq!(attr.kind, Kind::Dir);
    let (project, _) = fs.lookup(alice, OsStr::new("logic")).await.unwrap();
    let run = emu.runs("alice", "logic")[0].name.clone();
    let (run_ino, _) = fs.lookup(project, OsStr::new(&run)).await.unwrap();
    let (history, attr) = fs
        .lookup(run_ino, OsStr::new("history.jsonl"))
        .await
        .unwrap();
    assert_eq!(fs.getattr(history).await.unwrap(), attr);
    let truth = object_store::ObjectStoreExt::get(
        &WandbStore::new(client.clone()),
        &Path::parse(format!("alice/logic/{run}/history.jsonl")).unwrap(),
    )
    .await
    .unwrap()
    .bytes()
    .await
    .unwrap();
    assert_eq!(attr.size, truth.len() as u64);

    // Errors carry their errno.
    let missing = fs.lookup(run_ino, OsStr::new("nope")).await.unwrap_err();
    assert_eq!(missing.errno, libc::ENOENT);
    let not_dir = fs.lookup(history, OsStr::new("x")).await.unwrap_err();
    assert_eq!(not_dir.errno, libc::ENOTDIR);
    assert_eq!(fs.open(run_ino).await.unwrap_err().errno, libc::EISDIR);
    assert_eq!(
        fs.getxattr(history, "security.selinux")
            .await
            .unwrap_err()
            .errno,
        libc::ENODATA
    );
    assert_eq!(fs.readlink(history).unwrap_err().errno, libc::EINVAL);

    // Reads at any offset, through one handle, out of order.
    let opened = fs.open(history).await.unwrap();
    assert!(opened.keep_cache);
    for (offset, size) in [
        (0u64, 100u32),
        (50_000, 4096),
        (10, 1 << 20),
        (truth.len() as u64 - 7, 100),
    ] {
        let got = fs.read(opened.fh, offset, size).await.unwrap();
        let end = (offset as usize + size as usize).min(truth.len());
        assert_eq!(got, truth.slice(offset as usize..end), "{offset}+{size}");
    }
    assert!(
        fs.read(opened.fh, truth.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
    fs.release(opened.fh).await.unwrap();
    assert_eq!(
        fs.read(opened.fh, 0, 1).await.unwrap_err().errno,
        libc::EBADF
    );

    // A sequential read of a large file: the right bytes, in one request per 8 MiB or so
    // once the readahead window is full (not one per 1 MiB block as the window slides), even
    // with some reads arriving out of order as the kernel's concurrent reads do (every
    // seventh pair swapped: a swap must not reset the window and download blocks again).
    let (large, _) = fs.lookup(run_ino, OsStr::new("large")).await.unwrap();
    let (blob, attr) = fs.lookup(large, OsStr::new("blob-1GiB.bin")).await.unwrap();
    assert_eq!(attr.size, BIG_FILE);
    let truth = emu
        .run_file_bytes(&emu.runs("alice", "logic")[0], "large/blob-1GiB.bin")
        .unwrap();
    let opened = fs.open(blob).await.unwrap();
    emu.reset_counters();
    let mut order: Vec<u64> = (0..BIG_FILE >> 20).collect();
    for pair in order.chunks_mut(2).skip(1).step_by(7) {
        pair.reverse();
    }
    for block in order {
        let offset = block << 20;
        let got = fs.read(opened.fh, offset, 1 << 20).await.unwrap();
        assert_eq!(got.len(), 1 << 20, "{offset}");
        assert_eq!(
            got,
            truth.slice(offset as usize..(offset as usize + (1 << 20)))
        );
    }
    fs.release(opened.fh).await.unwrap();
    let counters = emu.counters();
    let downloads = counters.route(wandb_emulator::RouteKind::Download)
        + counters.route(wandb_emulator::RouteKind::SignedDownload);
    let mib = BIG_FILE >> 20;
    assert!(
        downloads <= mib / 8 + 4,
        "{downloads} download requests for a sequential read of {mib} MiB"
    );

    // readdir: `.` and `..` first, offsets stable, readdirplus counts references.
    let fh = fs.opendir(run_ino).await.unwrap().fh;
    let mut names = Vec::new();
    let mut offsets = Vec::new();
    fs.readdir(run_ino, fh, 0, false, |e| {
        names.push(e.name.clone());
        offsets.push(e.next_offset);
        true
    })
    .unwrap();
    assert_eq!(&names[..2], [".", ".."]);
    assert!(names.contains(&"history.jsonl".to_owned()) && names.contains(&"media".to_owned()));
    // Resuming from an offset gives the rest, in the same order.
    let mut rest = Vec::new();
    fs.readdir(run_ino, fh, offsets[3], false, |e| {
        rest.push(e.name.clone());
        true
    })
    .unwrap();
    assert_eq!(rest, names[4..]);
    // A full buffer stops the listing; the next call resumes where it stopped.
    let mut first_two = Vec::new();
    fs.readdir(run_ino, fh, 0, true, |e| {
        first_two.push(e.name.clone());
        first_two.len() < 3
    })
    .unwrap();
    assert_eq!(first_two.len(), 3);
    fs.releasedir(fh);

    // Artifact aliases are links to their version.
    let (artifacts, _) = fs.lookup(project, OsStr::new("artifacts")).await.unwrap();
    let fh = fs.opendir(artifacts).await.unwrap().fh;
    let mut types = Vec::new();
    fs.readdir(artifacts, fh, 2, false, |e| {
        types.push(e.name.clone());
        true
    })
    .unwrap();
    let (ty, _) = fs.lookup(artifacts, OsStr::new(&types[0])).await.unwrap();
    let fh = fs.opendir(ty).await.unwrap().fh;
    let mut collections = Vec::new();
    fs.readdir(ty, fh, 2, false, |e| {
        collections.push(e.name.clone());
        true
    })
    .unwrap();
    let (collection, _) = fs.lookup(ty, OsStr::new(&collections[0])).await.unwrap();
    let (latest, attr) = fs.lookup(collection, OsStr::new("latest")).await.unwrap();
    assert!(matches!(attr.kind, Kind::Symlink(_)));
    assert!(fs.readlink(latest).unwrap().starts_with('v'));

    // xattrs of a run.
    let names = fs.listxattr(run_ino).unwrap();
    assert!(names.contains(&"user.wandb.state".to_owned()), "{names:?}");
    assert_eq!(
        fs.getxattr(run_ino, "user.wandb.run_id").await.unwrap(),
        run.as_bytes()
    );

    // Forgotten inodes are gone; the same object comes back with the same number.
    fs.forget(history, 1);
    let (again, _) = fs
        .lookup(run_ino, OsStr::new("history.jsonl"))
        .await
        .unwrap();
    assert_eq!(again, history);
}
