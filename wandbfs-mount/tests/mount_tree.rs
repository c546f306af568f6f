//! The mounted tree against its contract, with real kernel mounts: every object `WandbStore`
//! serves over the live API is a file of the mount with the same size and bytes (and nothing
//! else is); the standard tools work on it; a synced project costs no request to list, stat or
//! read again (also after a remount); inode numbers survive a remount; writes are refused.

mod mount_support;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;

use futures::TryStreamExt;
use mount_support::*;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use wandb_emulator::{EmulatorConfig, SeedSpec};

fn spec() -> SeedSpec {
    SeedSpec::new("alice", "proj")
        .runs(4)
        .steps(2_500)
        .keys(6)
        .files(6)
        .bigfile(20 << 20)
        .artifacts(2)
        .artifact_bigfile(3 << 20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mounted_tree_is_the_store_tree() {
    let env = Env::new(EmulatorConfig::default().seed(spec())).await;
    let runs = env.emu.runs("alice", "proj");
    // A run file that collides with a synthetic name, and one deeper that does not.
    env.emu
        .put_run_file(&runs[1], "summary.json", "an uploaded summary\n")
        .unwrap();
    env.emu
        .put_run_file(&runs[1], "media/summary.json", "[1, 2]\n")
        .unwrap();
    env.sync("alice/proj");

    // The oracle: the store's tree over the live API, plus the tables only the mirror renders.
    let store = live_store(&env);
    let objects: Vec<_> = store
        .list(Some(&Path::parse("alice/proj").unwrap()))
        .try_collect()
        .await
        .unwrap();
    assert!(objects.len() > 40, "{}", objects.len());
    let mut truth = BTreeMap::new();
    for o in &objects {
        let bytes = store.get(&o.location).await.unwrap().bytes().await.unwrap();
        assert_eq!(bytes.len() as u64, o.size);
        truth.insert(o.location.to_string(), md5_hex(&bytes));
    }
    let tables = table_objects(&env, "alice/proj").await;
    assert_eq!(
        tables.len(),
        2 + 2 * runs.len(),
        "runs.* and each run's two tables"
    );
    for (location, bytes) in tables {
        truth.insert(location, md5_hex(&bytes));
    }

    let mount = env.mount(&[]);
    let root = mount.join("alice/proj");

    // Every file of the mount is an object of the store, and every object a file; sizes from
    // a plain stat, bytes by reading.
    let mut seen = BTreeMap::new();
    for rel in walk(&root) {
        let path = root.join(&rel);
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if rel.ends_with('/') || meta.file_type().is_symlink() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(meta.len(), bytes.len() as u64, "stat size of {rel}");
        seen.insert(format!("alice/proj/{rel}"), md5_hex(&bytes));
    }
    assert_eq!(seen, truth, "the mount's files and bytes are the store's");

    // The escapes: an uploaded `summary.json` is `@summary.json`; the synthetic one is W&B's.
    let run1 = root.join(&runs[1].name);
    assert_eq!(
        std::fs::read_to_string(run1.join("@summary.json")).unwrap(),
        "an uploaded summary\n"
    );
    assert!(
        std::fs::read_to_string(run1.join("summary.json"))
            .unwrap()
            .starts_with('{')
    );
    assert_eq!(
        std::fs::read_to_string(run1.join("media/summary.json")).unwrap(),
        "[1, 2]\n"
    );
    // An `@` that escapes nothing names nothing.
    let err = std::fs::metadata(run1.join("@output.log")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));

    // Aliases are symbolic links to their version, and a recursive copy keeps them links.
    let collections = sh_ok(&format!("ls -d {}/artifacts/*/*", root.display()));
    let collection = collections.lines().next().unwrap().to_owned();
    let latest = std::fs::read_link(format!("{collection}/latest")).unwrap();
    assert!(latest.to_string_lossy().starts_with('v'), "{latest:?}");
    let copy = tempfile::tempdir().unwrap();
    sh_ok(&format!("cp -r {collection} {}/c", copy.path().display()));
    assert!(
        std::fs::symlink_metadata(copy.path().join("c/latest"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    sh_ok(&format!(
        "rsync -a {} {}/r",
        run1.display(),
        copy.path().display()
    ));
    let rsynced = walk(&copy.path().join("r").join(&runs[1].name));
    let listed = walk(&run1);
    assert_eq!(rsynced, listed);
    sh_ok(&format!(
        "diff -r {} {}/r/{}",
        run1.display(),
        copy.path().display(),
        runs[1].name
    ));

    // The usual tools.
    let history = run1.join("history.jsonl");
    let lines = sh_ok(&format!("wc -l < {}", history.display()));
    assert_eq!(lines.trim(), "2500");
    let body = std::fs::read(&history).unwrap();
    let head = sh_ok(&format!("head -c 100 {}", history.display()));
    assert_eq!(head.as_bytes(), &body[..100]);
    let tail = sh_ok(&format!("tail -c 77 {}", history.display()));
    assert_eq!(tail.as_bytes(), &body[body.len() - 77..]);
    let big = root.join(&runs[0].name).join("large/blob-1GiB.bin");
    let truth_big = env
        .emu
        .run_file_range(&runs[0], "large/blob-1GiB.bin", 5 << 20, 6 << 20)
        .unwrap();
    let dd = sh_ok(&format!(
        "dd if={} bs=1M skip=5 count=1 status=none | md5sum",
        big.display()
    ));
    assert!(dd.starts_with(&md5_hex(&truth_big)), "{dd}");
    let found = sh_ok(&format!("find {} -name '*.png' | wc -l", root.display()));
    assert!(found.trim().parse::<u32>().unwrap() >= 4, "{found}");
    let du = sh_ok(&format!("du -sk {}", root.join(&runs[0].name).display()));
    assert!(
        du.split_whitespace()
            .next()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 20 << 10,
        "{du}"
    );
    let grep = sh_ok(&format!(
        "grep -rl --include=history.jsonl '\"_step\":2499,' {} | wc -l",
        root.display()
    ));
    assert_eq!(grep.trim(), "4", "every history.jsonl holds step 2499");
    let attrs = sh_ok(&format!("getfattr -d {}", history.display()));
    assert!(attrs.contains("user.wandb.state="), "{attrs}");
    assert!(
        attrs.contains(&format!("user.wandb.run_id=\"{}\"", runs[1].name)),
        "{attrs}"
    );
    let md5 = sh_ok(&format!(
        "getfattr --only-values -n user.wandb.md5 {}",
        run1.join("output.log").display()
    ));
    assert!(!md5.is_empty());
    // Names outside user.: EOPNOTSUPP at once (`ls` stops asking); other user. names:
    // ENODATA; and the mount keeps answering xattrs after both.
    let (code, _, err) = sh(&format!(
        "getfattr -n security.selinux {}",
        history.display()
    ));
    assert_ne!(code, 0);
    assert!(err.contains("Operation not supported"), "{err}");
    let (code, _, err) = sh(&format!("getfattr -n user.nosuch {}", history.display()));
    assert_ne!(code, 0);
    assert!(err.contains("No such attribute"), "{err}");
    assert!(sh_ok(&format!("getfattr -d {}", history.display())).contains("user.wandb."));

    // Writes are refused: the mount is read-only.
    let (code, _, err) = sh(&format!("touch {}/new.txt", run1.display()));
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");

    // A synced project: listing, stat and reading everything again cost no request at all.
    let inodes: BTreeMap<String, u64> = walk(&root)
        .into_iter()
        .map(|rel| {
            let ino = std::fs::symlink_metadata(root.join(&rel)).unwrap().ino();
            (rel, ino)
        })
        .collect();
    env.emu.reset_counters();
    sh_ok(&format!("ls -lR {} > /dev/null", root.display()));
    for rel in inodes.keys() {
        std::fs::symlink_metadata(root.join(rel)).unwrap();
    }
    sh_ok("sync; echo 3 > /proc/sys/vm/drop_caches");
    for (rel, sum) in &seen {
        let bytes = std::fs::read(mount.join(rel)).unwrap();
        assert_eq!(&md5_hex(&bytes), sum, "{rel}");
    }
    let counters = env.emu.counters();
    assert_eq!(counters.total.requests, 0, "{:?}", counters.by_operation);

    // After a remount: the same inode numbers, still no request.
    let mount = env.remount(mount, &[]);
    for (rel, ino) in &inodes {
        let now = std::fs::symlink_metadata(root.join(rel)).unwrap().ino();
        assert_eq!(now, *ino, "inode of {rel}");
    }
    for (rel, sum) in &seen {
        let bytes = std::fs::read(mount.join(rel)).unwrap();
        assert_eq!(&md5_hex(&bytes), sum, "{rel}");
    }
    let counters = env.emu.counters();
    assert_eq!(counters.total.requests, 0, "{:?}", counters.by_operation);
    mount.unmount();
}
