//! Persistence: a JSON snapshot of the world in `<data-dir>/state.json`, written atomically by a
//! background thread shortly after mutations (debounced) and at shutdown. Uploaded bytes live in
//! `<data-dir>/blobs/` (written when uploaded); generated data is saved as its generator spec.
//! API keys are never written to disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::blobs::{BlobSpec, BlobStore, hex, write_atomically};
use crate::seed::SeedSpec;
use crate::state::{Micros, ProjectRecord, RunKey, RunRecord, Viewer, World};

const SNAPSHOT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    viewer: Viewer,
    signer_secret: String,
    counters: (u64, u64, u64),
    seeds: Vec<SeedSpec>,
    entities: Vec<EntitySnap>,
    blobs: Vec<BlobSnap>,
    #[serde(default)]
    extensions: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct EntitySnap {
    name: String,
    num: u64,
    is_team: bool,
    created_at: Micros,
    projects: Vec<ProjectSnap>,
}

#[derive(Serialize, Deserialize)]
struct ProjectSnap {
    name: String,
    internal_id: u64,
    created_at: Micros,
    description: Option<String>,
    runs: Vec<RunSnap>,
}

#[derive(Serialize, Deserialize)]
struct RunSnap {
    name: String,
    seq: u64,
    record: RunRecord,
}

#[derive(Serialize, Deserialize)]
struct BlobSnap {
    key: String,
    spec: BlobSpec,
    md5: Option<String>,
}

/// What a snapshot restores.
pub struct Restored {
    /// The world.
    pub world: World,
    /// Seed specs already applied (not re-applied on restart).
    pub seeds: Vec<SeedSpec>,
    /// The URL-signing secret.
    pub signer_secret: [u8; 32],
    /// Extension states by name.
    pub extensions: std::collections::BTreeMap<String, serde_json::Value>,
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

/// Loads `<dir>/state.json` into a world (and the blob store), if it exists.
pub fn load(dir: &Path, blobs: &BlobStore) -> anyhow::Result<Option<Restored>> {
    let path = snapshot_path(dir);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    };
    let snap: Snapshot = serde_json::from_slice(&bytes)
        .map_err(|e| anyhow::anyhow!("{} is not a valid emulator snapshot: {e}", path.display()))?;
    if snap.version != SNAPSHOT_VERSION {
        anyhow::bail!(
            "{} has snapshot version {}, this emulator reads version {SNAPSHOT_VERSION}",
            path.display(),
            snap.version
        );
    }
    for b in &snap.blobs {
        blobs
            .restore(&b.key, &b.spec, b.md5.as_deref())
            .map_err(|e| anyhow::anyhow!("restoring blob {}: {e}", b.key))?;
    }
    let mut world = World::new(snap.viewer, 0);
    for e in snap.entities {
        world.restore_entity(e.name.clone(), e.num, e.is_team, e.created_at);
        for p in e.projects {
            world.restore_project(ProjectRecord {
                name: p.name.clone(),
                entity: e.name.clone(),
                internal_id: p.internal_id,
                created_at: p.created_at,
                description: p.description,
                runs: Default::default(),
            });
            for r in p.runs {
                world.restore_run(RunKey::new(&e.name, &p.name, r.name), r.seq, r.record);
            }
        }
    }
    let (a, b, c) = snap.counters;
    world.restore_counters(a, b, c);
    let mut secret = [0u8; 32];
    for (i, chunk) in snap.signer_secret.as_bytes().chunks(2).take(32).enumerate() {
        secret[i] = std::str::from_utf8(chunk)
            .ok()
            .and_then(|s| u8::from_str_radix(s, 16).ok())
            .unwrap_or(0);
    }
    Ok(Some(Restored {
        world,
        seeds: snap.seeds,
        signer_secret: secret,
        extensions: snap.extensions,
    }))
}

/// Writes a snapshot of `app` to `<dir>/state.json`.
pub fn save(app: &AppState, dir: &Path, seeds: &[SeedSpec]) -> anyhow::Result<()> {
    let snap = {
        let world = app.world.read();
        let entities = world
            .entities()
            .map(|e| EntitySnap {
                name: e.name.clone(),
                num: e.num,
                is_team: e.is_team,
                created_at: e.created_at,
                projects: e
                    .projects
                    .values()
                    .map(|p| ProjectSnap {
                        name: p.name.clone(),
                        internal_id: p.internal_id,
                        created_at: p.created_at,
                        description: p.description.clone(),
                        runs: p
                            .runs
                            .values()
                            .map(|r| RunSnap {
                                name: r.key.name.clone(),
                                seq: r.seq,
                                record: r.record.read().clone(),
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect();
        Snapshot {
            version: SNAPSHOT_VERSION,
            viewer: world.viewer.clone(),
            signer_secret: hex(&app.signer.secret()),
            counters: world.counters(),
            seeds: seeds.to_vec(),
            entities,
            blobs: app
                .blobs
                .specs()
                .into_iter()
                .map(|(key, spec, md5)| BlobSnap { key, spec, md5 })
                .collect(),
            extensions: {
                // Registered extensions save themselves; unclaimed restored states are kept.
                let mut out = app.restored_extensions.lock().clone();
                for ext in app.extensions.read().iter() {
                    out.insert(ext.name().to_string(), ext.save());
                }
                out
            },
        }
    };
    let bytes = serde_json::to_vec(&snap)?;
    write_atomically(&snapshot_path(dir), &bytes)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", snapshot_path(dir).display()))
}

#[derive(Default)]
struct Flags {
    dirty: bool,
    stop: bool,
}

/// Debounced background snapshot writer.
#[derive(Debug)]
pub struct Persister {
    shared: Arc<PersisterShared>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct PersisterShared {
    dir: PathBuf,
    flags: Mutex<Flags>,
    wake: Condvar,
    app: OnceLock<Weak<AppState>>,
    seeds: Mutex<Vec<SeedSpec>>,
}

impl std::fmt::Debug for PersisterShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersisterShared")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Persister {
    /// A writer for `dir` that waits `debounce` after the first mutation before saving.
    pub fn new(dir: PathBuf, debounce: Duration, seeds: Vec<SeedSpec>) -> Self {
        let shared = Arc::new(PersisterShared {
            dir,
            flags: Mutex::new(Flags::default()),
            wake: Condvar::new(),
            app: OnceLock::new(),
            seeds: Mutex::new(seeds),
        });
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("wandb-emulator-persist".into())
            .spawn(move || {
                // Saving cost grows with the world (10,000 seeded runs ≈ tens of MB of JSON), so
                // the pause between saves grows with it too: at most ~20% of a core.
                let mut pause = debounce;
                loop {
                    {
                        let mut flags = worker.flags.lock();
                        while !flags.dirty && !flags.stop {
                            worker.wake.wait(&mut flags);
                        }
                        if flags.stop && !flags.dirty {
                            return;
                        }
                        let stopping = flags.stop;
                        drop(flags);
                        if !stopping {
                            std::thread::sleep(pause);
                        }
                        worker.flags.lock().dirty = false;
                    }
                    let started = std::time::Instant::now();
                    worker.save_now();
                    pause = debounce.max(started.elapsed() * 4);
                }
            })
            .ok();
        Self {
            shared,
            thread: Mutex::new(thread),
        }
    }

    /// Connects the writer to the state it saves.
    pub fn attach(&self, app: &Arc<AppState>) {
        let _ = self.shared.app.set(Arc::downgrade(app));
    }

    /// Records an applied seed spec (saved so a restart does not re-seed).
    pub fn add_seed(&self, spec: SeedSpec) {
        self.shared.seeds.lock().push(spec);
        self.mark_dirty();
    }

    /// Whether a seed spec was already applied.
    pub fn has_seed(&self, spec: &SeedSpec) -> bool {
        self.shared.seeds.lock().contains(spec)
    }

    /// Schedules a save.
    pub fn mark_dirty(&self) {
        self.shared.flags.lock().dirty = true;
        self.shared.wake.notify_one();
    }

    /// Saves immediately (on the caller's thread).
    pub fn save_now(&self) {
        self.shared.save_now();
    }

    /// Saves a last time and stops the writer.
    pub fn stop(&self) {
        {
            let mut flags = self.shared.flags.lock();
            flags.stop = true;
            flags.dirty = true;
        }
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

impl PersisterShared {
    fn save_now(&self) {
        let Some(app) = self.app.get().and_then(Weak::upgrade) else {
            return;
        };
        let seeds = self.seeds.lock().clone();
        if let Err(e) = save(&app, &self.dir, &seeds) {
            tracing::error!("saving emulator state failed: {e:#}");
        }
    }
}
