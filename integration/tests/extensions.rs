//! The extension points other modules (artifacts) build on: extension state that persists,
//! signed upload sinks, signed direct URLs for blobs, and exported-history providers.

mod support;

use std::any::Any;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;
use support::TEST_KEY;
use support::gql::Gql;
use wandb_emulator::app::{AppState, Extension, HistoryExports, UploadSink};
use wandb_emulator::blobs::Blob;
use wandb_emulator::state::RunCell;
use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};

#[derive(Debug, Default)]
struct Notes {
    items: Mutex<Vec<String>>,
}

impl Extension for Notes {
    fn name(&self) -> &'static str {
        "notes"
    }
    fn save(&self) -> serde_json::Value {
        json!(*self.items.lock())
    }
    fn restore(&self, state: serde_json::Value) -> anyhow::Result<()> {
        *self.items.lock() = serde_json::from_value(state)?;
        Ok(())
    }
    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

#[derive(Debug)]
struct NoteSink;

impl UploadSink for NoteSink {
    fn uploaded(&self, app: &AppState, segments: &[String], blob: Arc<Blob>) -> Result<(), String> {
        let notes = app.extension::<Notes>().ok_or("notes extension missing")?;
        notes
            .items
            .lock()
            .push(format!("{}={}", segments.join("/"), blob.key()));
        Ok(())
    }
}

#[derive(Debug)]
struct HalfExported;

impl HistoryExports for HalfExported {
    fn exports(&self, app: &AppState, run: &RunCell) -> Option<(Vec<String>, i64)> {
        let blob = app.blobs.put_generated(1, 100, b"PAR1".to_vec());
        Some((
            vec![app.direct_blob_url(&blob, &format!("{}.parquet", run.key.name))],
            5,
        ))
    }
}

#[tokio::test]
async fn extension_state_upload_sinks_and_history_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || {
        EmulatorConfig::default()
            .api_key(TEST_KEY)
            .data_dir(dir.path())
            .seed(
                SeedSpec::new("emulator", "p")
                    .runs(1)
                    .steps(10)
                    .keys(2)
                    .files(0)
                    .bigfile(0),
            )
    };
    let emu = Emulator::start_with(config()).expect("emulator");
    emu.app()
        .register_extension(Arc::new(Notes::default()))
        .expect("register");
    emu.app().register_upload_sink("note", Arc::new(NoteSink));
    let gql = Gql::new(emu.base_url(), TEST_KEY);

    let url = emu.app().signed_main_url("/_upload/note/a/b%20c");
    assert_eq!(
        gql.http
            .put(&url)
            .body("payload")
            .send()
            .await
            .expect("PUT")
            .status(),
        200
    );
    assert_eq!(
        gql.http
            .put(url.replace("sig=", "sig=1"))
            .body("x")
            .send()
            .await
            .expect("PUT")
            .status(),
        403
    );
    let unknown = emu.app().signed_main_url("/_upload/nobody/x");
    assert_eq!(
        gql.http
            .put(&unknown)
            .body("x")
            .send()
            .await
            .expect("PUT")
            .status(),
        404
    );
    let recorded = emu
        .app()
        .extension::<Notes>()
        .expect("registered")
        .items
        .lock()
        .clone();
    assert_eq!(recorded.len(), 1);
    assert!(recorded[0].starts_with("a/b c=md5-"), "{recorded:?}");

    // Exported history: the provider's URLs are served, live data starts at its boundary.
    emu.set_history_exports(Some(Arc::new(HalfExported)));
    let run = emu.runs("emulator", "p")[0].name.clone();
    let data = gql
        .data(
            "query($run: String!) { project(name: \"p\", entityName: \"emulator\") { run(name: $run) { parquetHistory(liveKeys: [\"_step\"]) { parquetUrls liveData } } } }",
            json!({"run": run}),
        )
        .await;
    let ph = &data["project"]["run"]["parquetHistory"];
    assert_eq!(
        ph["liveData"],
        json!([{"_step": 5}, {"_step": 6}, {"_step": 7}, {"_step": 8}, {"_step": 9}])
    );
    let parquet = gql
        .get(
            ph["parquetUrls"][0].as_str().expect("url"),
            false,
            &[("Range", "bytes=0-3")],
        )
        .await;
    assert_eq!(parquet.status(), 206);
    assert_eq!(parquet.bytes().await.expect("bytes").as_ref(), b"PAR1");
    emu.shutdown();

    // After a restart the extension's state comes back when it registers again.
    let emu = Emulator::start_with(config()).expect("restarted");
    let notes = Arc::new(Notes::default());
    emu.app()
        .register_extension(notes.clone())
        .expect("register");
    assert_eq!(*notes.items.lock(), recorded);
}
