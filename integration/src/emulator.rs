//! The [`Emulator`] handle: starts the server on its own runtime and exposes seeding,
//! inspection, mutation, fault injection and counters to tests.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::app::{AppState, HistoryExports};
use crate::blobs::BlobStore;
use crate::config::{EmulatorConfig, generate_api_key};
use crate::faults::{FaultSettings, Faults};
use crate::http::{self, HttpState};
use crate::persist::{self, Persister};
use crate::reqlog::{Counters, Listener, RequestLog, RequestRecord};
use crate::schema;
use crate::seed::{SeedReport, SeedSpec, seed_project};
use crate::signing::Signer;
use crate::state::{Clock, JsonText, Micros, RunKey, RunRecord, Viewer, World, format_datetime};

/// A running emulator. Dropping it shuts the server down (and saves state when persistent).
pub struct Emulator {
    app: Arc<AppState>,
    runtime: Option<tokio::runtime::Runtime>,
    shutdown: watch::Sender<bool>,
    generated_key: bool,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("base_url", &self.app.base_url)
            .field("direct_url", &self.app.direct_url)
            .finish_non_exhaustive()
    }
}

/// A snapshot of one run's metadata (for assertions).
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Path.
    pub key: RunKey,
    /// Storage id.
    pub storage_id: String,
    /// Display name.
    pub display_name: Option<String>,
    /// State.
    pub state: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Group.
    pub group: Option<String>,
    /// Config text as served.
    pub config: String,
    /// Summary text as served.
    pub summary: String,
    /// `createdAt` as served.
    pub created_at: String,
    /// `heartbeatAt` as served.
    pub heartbeat_at: String,
    /// `updatedAt` as served.
    pub updated_at: String,
    /// `historyLineCount`.
    pub history_line_count: u64,
    /// `historyKeys.lastStep`.
    pub last_step: Option<i64>,
    /// Console line count.
    pub log_line_count: u64,
    /// Files: name, size, base64 MD5 (not computed for uncached generated blobs: empty).
    pub files: Vec<(String, u64, String)>,
}

/// A run-level edit, applied by [`Emulator::update_run`].
#[derive(Debug, Clone, Default)]
pub struct RunEdit {
    /// New state.
    pub state: Option<String>,
    /// New tags.
    pub tags: Option<Vec<String>>,
    /// New notes.
    pub notes: Option<String>,
    /// New display name.
    pub display_name: Option<String>,
    /// New summary (W&B-dialect JSON text).
    pub summary: Option<String>,
    /// New config (W&B-dialect JSON text, `{"k": {"value": v}}`).
    pub config: Option<String>,
}

impl Emulator {
    /// Starts an in-memory emulator with defaults (one generated key, entity `emulator`).
    pub fn start() -> anyhow::Result<Emulator> {
        Self::start_with(EmulatorConfig::default())
    }

    /// Starts an emulator. Works from sync and async callers: the server runs on its own
    /// multi-thread runtime.
    pub fn start_with(config: EmulatorConfig) -> anyhow::Result<Emulator> {
        let main = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("binding {}", config.listen))?;
        let direct = std::net::TcpListener::bind(config.direct_listen)
            .with_context(|| format!("binding {}", config.direct_listen))?;
        main.set_nonblocking(true)?;
        direct.set_nonblocking(true)?;
        let base_url = format!("http://{}", main.local_addr()?);
        let direct_url = format!("http://{}", direct.local_addr()?);

        let clock = Clock::default();
        let now = clock.now();
        if let Some(dir) = &config.data_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let blobs = BlobStore::new(config.data_dir.as_ref().map(|d| d.join("blobs")))
            .context("opening the blob store")?;
        let restored = match &config.data_dir {
            Some(dir) => persist::load(dir, &blobs)?,
            None => None,
        };
        let (mut world, applied_seeds, secret, restored_extensions) = match restored {
            Some(r) => (r.world, r.seeds, r.signer_secret, r.extensions),
            None => (
                World::new(Viewer::for_entity(&config.entity), now),
                Vec::new(),
                rand::random(),
                Default::default(),
            ),
        };
        if world.viewer.entity != config.entity {
            world.viewer = Viewer::for_entity(&config.entity);
            world.ensure_entity(&config.entity, now);
        }
        let generated_key = config.api_keys.is_empty();
        let api_keys = if generated_key {
            vec![generate_api_key()]
        } else {
            config.api_keys.clone()
        };
        let persister = config
            .data_dir
            .as_ref()
            .map(|dir| Persister::new(dir.clone(), config.save_debounce, applied_seeds));
        let app = Arc::new(AppState {
            world: RwLock::new(world),
            blobs,
            signer: Signer::new(secret, config.signed_url_ttl.as_secs()),
            clock,
            faults: Faults::new(config.faults.clone(), config.fault_seed),
            profile: RwLock::new(config.profile.clone()),
            budgets: crate::profile::Budgets::default(),
            log: RequestLog::default(),
            api_keys: RwLock::new(api_keys),
            features: RwLock::new(config.features.clone()),
            base_url,
            direct_url,
            persister,
            history_exports: RwLock::new(None),
            splice_nonce: format!("{:016x}", rand::random::<u64>()),
            max_page_size: config.max_page_size,
            extensions: RwLock::new(Vec::new()),
            restored_extensions: parking_lot::Mutex::new(restored_extensions),
            upload_sinks: RwLock::new(Default::default()),
        });
        crate::artifacts::install(&app)?;
        if let Some(p) = &app.persister {
            p.attach(&app);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("wandb-emulator")
            .enable_all()
            .build()
            .context("starting the emulator runtime")?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(HttpState {
            app: Arc::clone(&app),
            schema: schema::build(Arc::clone(&app)),
        });
        {
            let _guard = runtime.enter();
            let main = tokio::net::TcpListener::from_std(main)?;
            let direct = tokio::net::TcpListener::from_std(direct)?;
            runtime.spawn(http::serve(
                main,
                Listener::Main,
                Arc::clone(&state),
                shutdown_rx.clone(),
            ));
            runtime.spawn(http::serve(direct, Listener::Direct, state, shutdown_rx));
        }
        let emulator = Emulator {
            app,
            runtime: Some(runtime),
            shutdown,
            generated_key,
        };
        for spec in &config.seeds {
            emulator.seed(spec)?;
        }
        Ok(emulator)
    }

    /// Base URL of the API (`WANDB_BASE_URL`), e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> &str {
        &self.app.base_url
    }

    /// Base URL of the signed-URL listener (a different port).
    pub fn direct_base_url(&self) -> &str {
        &self.app.direct_url
    }

    /// The first accepted API key.
    pub fn api_key(&self) -> String {
        self.app
            .api_keys
            .read()
            .first()
            .cloned()
            .unwrap_or_default()
    }

    /// Whether the key was generated (not configured).
    pub fn api_key_was_generated(&self) -> bool {
        self.generated_key
    }

    /// The viewer's entity.
    pub fn entity(&self) -> String {
        self.app.world.read().viewer.entity.clone()
    }

    /// The shared state (for extension modules and advanced tests).
    pub fn app(&self) -> &Arc<AppState> {
        &self.app
    }

    /// Generates fixtures (unless this exact spec was applied before, e.g. before a restart).
    pub fn seed(&self, spec: &SeedSpec) -> anyhow::Result<SeedReport> {
        if let Some(p) = &self.app.persister
            && p.has_seed(spec)
        {
            let runs = self.runs(&spec.entity, &spec.project);
            return Ok(SeedReport { runs });
        }
        let now = self.app.now();
        let report = {
            let mut world = self.app.world.write();
            seed_project(&mut world, &self.app.blobs, spec, now)?
        };
        if spec.artifacts > 0 {
            crate::artifacts::seed::seed_artifacts(&self.app, spec, &report.runs)?;
        }
        if let Some(p) = &self.app.persister {
            p.add_seed(spec.clone());
        }
        Ok(report)
    }

    /// Runs of a project, in creation order.
    pub fn runs(&self, entity: &str, project: &str) -> Vec<RunKey> {
        let mut runs = self.app.world.read().runs(entity, project);
        runs.sort_by_key(|r| (r.record.read().created_at, r.seq));
        runs.iter().map(|r| r.key.clone()).collect()
    }

    /// Projects of an entity.
    pub fn projects(&self, entity: &str) -> Vec<String> {
        self.app
            .world
            .read()
            .entity(entity)
            .map(|e| e.projects.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// A run's metadata as the API serves it.
    pub fn run_info(&self, key: &RunKey) -> Option<RunInfo> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let rec = run.record.read();
        Some(RunInfo {
            key: key.clone(),
            storage_id: run.storage_id.clone(),
            display_name: rec.display_name.clone(),
            state: rec.state.clone(),
            tags: rec.tags.clone(),
            notes: rec.notes.clone(),
            group: rec.group.clone(),
            config: rec.config.raw().to_string(),
            summary: rec.summary.raw().to_string(),
            created_at: format_datetime(rec.created_at),
            heartbeat_at: format_datetime(rec.heartbeat_at),
            updated_at: format_datetime(rec.updated_at),
            history_line_count: rec.history.line_count(),
            last_step: rec.history.last_step(),
            log_line_count: rec.console.len() as u64,
            files: rec
                .files
                .values()
                .map(|f| {
                    let md5 = self
                        .app
                        .blobs
                        .get(&f.blob)
                        .filter(|b| b.md5_is_cached())
                        .map(|b| b.md5_base64())
                        .unwrap_or_default();
                    (f.name.clone(), f.size, md5)
                })
                .collect(),
        })
    }

    /// Ground truth: every history row exactly as `history` serves it (materialises seeded
    /// history — fine for tests, not for 10M rows).
    pub fn history_rows(&self, key: &RunKey) -> Option<Vec<String>> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let rows = run.record.read().history.all_raw();
        Some(rows)
    }

    /// Ground truth for `minStep <= _step < maxStep`.
    pub fn history_rows_between(
        &self,
        key: &RunKey,
        min_step: i64,
        max_step: i64,
    ) -> Option<Vec<String>> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let rec = run.record.read();
        let c = rec.history.select(Some(min_step), Some(max_step));
        Some(
            (0..c.len())
                .map(|i| rec.history.raw(rec.history.line_ref(&c, i)))
                .collect(),
        )
    }

    /// Ground truth of the system-metric event rows.
    pub fn events_rows(&self, key: &RunKey) -> Option<Vec<String>> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let rows = run.record.read().events.all_raw();
        Some(rows)
    }

    /// Console lines as stored.
    pub fn console_lines(&self, key: &RunKey) -> Option<Vec<String>> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let lines = run.record.read().console.clone();
        Some(lines)
    }

    /// Creates an empty running run (entity/project created as needed). Returns false when it
    /// existed.
    pub fn create_run(&self, key: &RunKey) -> bool {
        let now = self.app.now();
        let mut world = self.app.world.write();
        let user = world.viewer.username.clone();
        let (_, inserted) = world.insert_run(key.clone(), RunRecord::new(&user, now), now);
        drop(world);
        self.app.mark_dirty();
        inserted
    }

    /// Appends history rows (W&B-dialect JSON objects with `_step`) after the last line, as the
    /// SDK would; bumps `heartbeatAt` and `updatedAt`. Returns the new line count.
    pub fn append_history(&self, key: &RunKey, rows: &[String]) -> anyhow::Result<u64> {
        let run = self
            .app
            .run(&key.entity, &key.project, &key.name)
            .with_context(|| format!("run {key} not found"))?;
        let now = self.app.now();
        let count = {
            let mut rec = run.record.write();
            for row in rows {
                crate::json::parse_lenient(row)
                    .with_context(|| format!("row is not JSON: {row}"))?;
                let offset = rec.history.line_count();
                rec.history.write_line(offset, row.clone());
            }
            rec.heartbeat(now);
            rec.touch(now);
            rec.history.line_count()
        };
        self.app.mark_dirty();
        Ok(count)
    }

    /// Edits a run's metadata (bumps `updatedAt`).
    pub fn update_run(&self, key: &RunKey, edit: RunEdit) -> anyhow::Result<()> {
        let run = self
            .app
            .run(&key.entity, &key.project, &key.name)
            .with_context(|| format!("run {key} not found"))?;
        let now = self.app.now();
        {
            let mut rec = run.record.write();
            if let Some(s) = edit.state {
                rec.state = s;
            }
            if let Some(t) = edit.tags {
                rec.tags = t;
            }
            if let Some(n) = edit.notes {
                rec.notes = Some(n);
            }
            if let Some(d) = edit.display_name {
                rec.display_name = Some(d);
            }
            if let Some(s) = edit.summary {
                rec.summary = JsonText::new(s);
            }
            if let Some(c) = edit.config {
                rec.config = JsonText::new(c);
            }
            rec.touch(now);
        }
        self.app.mark_dirty();
        Ok(())
    }

    /// Sets a run's state.
    pub fn set_state(&self, key: &RunKey, state: &str) -> anyhow::Result<()> {
        self.update_run(
            key,
            RunEdit {
                state: Some(state.into()),
                ..RunEdit::default()
            },
        )
    }

    /// Sets a run's tags.
    pub fn set_tags(&self, key: &RunKey, tags: &[&str]) -> anyhow::Result<()> {
        self.update_run(
            key,
            RunEdit {
                tags: Some(tags.iter().map(|t| t.to_string()).collect()),
                ..RunEdit::default()
            },
        )
    }

    /// Sets a run's notes.
    pub fn set_notes(&self, key: &RunKey, notes: &str) -> anyhow::Result<()> {
        self.update_run(
            key,
            RunEdit {
                notes: Some(notes.into()),
                ..RunEdit::default()
            },
        )
    }

    /// Replaces a run's summary.
    pub fn set_summary(&self, key: &RunKey, summary: &str) -> anyhow::Result<()> {
        self.update_run(
            key,
            RunEdit {
                summary: Some(summary.into()),
                ..RunEdit::default()
            },
        )
    }

    /// Deletes a run. Returns whether it existed.
    pub fn delete_run(&self, key: &RunKey) -> bool {
        let existed = self.app.world.write().delete_run(key).is_some();
        self.app.mark_dirty();
        existed
    }

    /// All bytes of a run file.
    pub fn run_file_bytes(&self, key: &RunKey, name: &str) -> Option<Bytes> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let (_, blob) = self.app.run_file_blob(&run, name)?;
        Some(blob.read_all())
    }

    /// Bytes `[start, end)` of a run file.
    pub fn run_file_range(&self, key: &RunKey, name: &str, start: u64, end: u64) -> Option<Bytes> {
        let run = self.app.run(&key.entity, &key.project, &key.name)?;
        let (_, blob) = self.app.run_file_blob(&run, name)?;
        Some(blob.read_range(start, end))
    }

    /// Adds or replaces a run file.
    pub fn put_run_file(
        &self,
        key: &RunKey,
        name: &str,
        bytes: impl Into<Bytes>,
    ) -> anyhow::Result<()> {
        let run = self
            .app
            .run(&key.entity, &key.project, &key.name)
            .with_context(|| format!("run {key} not found"))?;
        let blob = self.app.blobs.put_bytes(bytes.into())?;
        let now = self.app.now();
        {
            let mut rec = run.record.write();
            rec.files.insert(
                name.to_string(),
                crate::state::RunFile {
                    name: name.to_string(),
                    blob: blob.key().to_string(),
                    size: blob.len(),
                    mimetype: mime_guess::from_path(name)
                        .first_or_octet_stream()
                        .to_string(),
                    updated_at: now,
                },
            );
            rec.touch(now);
        }
        self.app.mark_dirty();
        Ok(())
    }

    /// Counters since the last reset.
    pub fn counters(&self) -> Counters {
        self.app.log.counters()
    }

    /// The request log since the last reset.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.app.log.records()
    }

    /// Clears counters and the request log.
    pub fn reset_counters(&self) {
        self.app.log.reset();
    }

    /// Current fault settings.
    pub fn faults(&self) -> FaultSettings {
        self.app.faults.settings()
    }

    /// Replaces the fault settings.
    pub fn set_faults(&self, faults: FaultSettings) {
        self.app.faults.set(faults);
    }

    /// Replaces the W&B profile (budget windows start over).
    pub fn set_profile(&self, profile: crate::profile::WandbProfile) {
        *self.app.profile.write() = profile;
        self.app.budgets.reset();
    }

    /// Edits the fault settings.
    pub fn update_faults(&self, f: impl FnOnce(&mut FaultSettings)) {
        self.app.faults.update(f);
    }

    /// Makes a run's history fields answer 502 (or stop doing so).
    pub fn set_poisoned(&self, key: &RunKey, poisoned: bool) {
        self.app.faults.update(|f| {
            if poisoned {
                f.poisoned_runs.insert(key.clone());
            } else {
                f.poisoned_runs.remove(key);
            }
        });
    }

    /// Changes the lifetime of signed URLs minted from now on.
    pub fn set_signed_url_ttl(&self, ttl: Duration) {
        self.app.signer.set_ttl_secs(ttl.as_secs());
    }

    /// Invalidates every signed URL minted so far (they answer 403).
    pub fn revoke_signed_urls(&self) {
        self.app.signer.rotate();
    }

    /// Moves the emulator clock forward (expires URLs, ages timestamps) without sleeping.
    pub fn advance_clock(&self, by: Duration) {
        self.app.clock.advance(by);
    }

    /// Current emulator time (µs).
    pub fn now(&self) -> Micros {
        self.app.now()
    }

    /// Replaces the advertised server features.
    pub fn set_features(&self, features: &[&str]) {
        *self.app.features.write() = features.iter().map(|s| s.to_string()).collect();
    }

    /// Plugs in exported (parquet) history.
    pub fn set_history_exports(&self, exports: Option<Arc<dyn HistoryExports>>) {
        *self.app.history_exports.write() = exports;
    }

    /// Writes the snapshot now (no-op without a data dir).
    pub fn save_now(&self) {
        if let Some(p) = &self.app.persister {
            p.save_now();
        }
    }

    /// Stops the server and saves state.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(rt) = self.runtime.take() {
            // Safe inside async callers too (no blocking drop).
            rt.shutdown_background();
        }
        if let Some(p) = &self.app.persister {
            p.stop();
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop();
    }
}
