//! object_store's own conformance helpers (`object_store::integration`, 0.14.2) against a
//! writable `WandbStore` on the emulator.
//!
//! The helpers treat the store root as an empty bucket they may fill and wipe, so they run
//! inside one fresh run's directory (`PrefixStore` at `<entity>/<project>/<run>`), with the
//! synthetic files switched off (they cannot be deleted, and the helpers expect an empty
//! bucket). Helpers that need conditional writes (`put_opts`, `copy_if_not_exists`) do not
//! apply: W&B has none, and the store says so with `NotImplemented` (checked in
//! `store_read.rs`). Multipart uploads apply: the parts are spooled to a temporary file and
//! uploaded from it in one streamed PUT at `complete` (so the last writer wins), and
//! `object_store`'s own multipart helpers check it.

mod store_support;

use object_store::integration;
use object_store::prefix::PrefixStore;
use store_support::*;
use wandb_emulator::RunKey;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_conformance_in_a_run_directory() {
    let emu = seeded();
    let key = RunKey::new("alice", PROJECT, "conformance");
    assert!(emu.create_run(&key));
    let store = builder(&emu)
        .with_writes(true)
        .with_synthetic_files(false)
        .build();
    let bucket = PrefixStore::new(store, run_prefix(&key).as_str());

    integration::put_get_delete_list(&bucket).await;
    integration::get_opts(&bucket).await;
    integration::list_uses_directories_correctly(&bucket).await;
    integration::list_with_delimiter(&bucket).await;
    integration::list_with_offset_exclusivity(&bucket).await;
    integration::rename_and_copy(&bucket).await;
    integration::copy_rename_nonexistent_object(&bucket).await;
    integration::stream_get(&bucket).await;
    integration::multipart_out_of_order(&bucket).await;
    integration::multipart_race_condition(&bucket, true).await;
    let missing = integration::get_nonexistent_object(&bucket, None).await;
    assert!(
        matches!(missing, Err(object_store::Error::NotFound { .. })),
        "{missing:?}"
    );

    // The multipart helpers leave their files: deleted through the store.
    use futures::TryStreamExt as _;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};
    let left: Vec<_> = bucket.list(None).try_collect().await.unwrap();
    for object in left {
        bucket.delete(&object.location).await.unwrap();
    }

    // The helpers wrote through W&B: the run saw uploads and deletions, and is empty again.
    let c = emu.counters();
    assert!(c.operation("CreateRunFiles") >= 30, "{:?}", c.by_operation);
    assert!(c.operation("deleteFiles") >= 20, "{:?}", c.by_operation);
    assert_eq!(emu.run_info(&key).expect("run").files, Vec::new());
}
