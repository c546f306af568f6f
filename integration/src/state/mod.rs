//! The state model: entities → projects → runs, with ids and the emulator clock.
//!
//! [`World`] is guarded by one `RwLock` in [`crate::app::AppState`]; each run sits behind its own
//! lock in a [`RunCell`], so history writes and reads of different runs never contend and long
//! renders hold only their run's read lock. Lock order: world before run, never the reverse.

pub mod history;
pub mod run;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use base64::Engine as _;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

pub use run::{JsonText, RunFile, RunRecord};

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The emulator's clock: wall time plus an offset tests can advance (to expire URLs, age
/// heartbeats or separate `updatedAt` values without sleeping).
#[derive(Debug, Default)]
pub struct Clock {
    offset_micros: AtomicI64,
}

impl Clock {
    /// Current emulator time in µs.
    pub fn now(&self) -> Micros {
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        wall + self.offset_micros.load(Ordering::Relaxed)
    }

    /// Current emulator time in whole seconds.
    pub fn now_secs(&self) -> u64 {
        (self.now() / 1_000_000).max(0) as u64
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: std::time::Duration) {
        self.offset_micros
            .fetch_add(by.as_micros() as i64, Ordering::Relaxed);
    }
}

/// Formats a time as W&B's `DateTime` scalar does: `YYYY-MM-DDTHH:MM:SS` (UTC, no zone).
pub fn format_datetime(micros: Micros) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Parses the date-time forms users put in filters (`2024-01-02T03:04:05[.fff][Z|±hh:mm]`,
/// `2024-01-02 03:04:05`, `2024-01-02`), as UTC when no zone is given.
pub fn parse_datetime(text: &str) -> Option<Micros> {
    let text = text.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(text.trim_end_matches('Z'), fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Decodes a base64 id; `None` when malformed.
pub fn unb64(text: &str) -> Option<String> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
}

/// Full path of a run.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunKey {
    /// Entity name.
    pub entity: String,
    /// Project name.
    pub project: String,
    /// Run name (the run id, e.g. `3kx9a1bz`).
    pub name: String,
}

impl RunKey {
    /// Builds a key.
    pub fn new(
        entity: impl Into<String>,
        project: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            entity: entity.into(),
            project: project.into(),
            name: name.into(),
        }
    }

    /// The storage id (`Run.id`): base64 of `Run:v1:<name>:<project>:<entity>`, as on SaaS.
    pub fn storage_id(&self) -> String {
        b64(&format!(
            "Run:v1:{}:{}:{}",
            self.name, self.project, self.entity
        ))
    }
}

impl std::fmt::Display for RunKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.entity, self.project, self.name)
    }
}

/// A run: immutable identity plus its lockable record.
#[derive(Debug)]
pub struct RunCell {
    /// Where the run lives.
    pub key: RunKey,
    /// `Run.id`.
    pub storage_id: String,
    /// Creation sequence number (stable tie-breaker for ordering).
    pub seq: u64,
    /// The owning project's `internalId`.
    pub project_internal_id: u64,
    /// The mutable record.
    pub record: RwLock<RunRecord>,
}

/// Shared handle to a run.
pub type RunHandle = Arc<RunCell>;

/// A file's id encodes its run and name, so `deleteFiles(files: [ID])` needs no index.
pub fn file_id(run: &RunKey, name: &str) -> String {
    let json = serde_json::json!([run.entity, run.project, run.name, name]).to_string();
    b64(&format!("File:{json}"))
}

/// Decodes a [`file_id`].
pub fn parse_file_id(id: &str) -> Option<(RunKey, String)> {
    let text = unb64(id)?;
    let json = text.strip_prefix("File:")?;
    let parts: Vec<String> = serde_json::from_str(json).ok()?;
    let [entity, project, name, file]: [String; 4] = parts.try_into().ok()?;
    Some((RunKey::new(entity, project, name), file))
}

/// A project.
#[derive(Debug)]
pub struct ProjectRecord {
    /// Name.
    pub name: String,
    /// Owning entity.
    pub entity: String,
    /// Numeric id (`internalId`, `Run.projectId`).
    pub internal_id: u64,
    /// Creation time.
    pub created_at: Micros,
    /// Description.
    pub description: Option<String>,
    /// Runs by name.
    pub runs: BTreeMap<String, RunHandle>,
}

impl ProjectRecord {
    /// `Project.id`: base64 of `Project:v1:<name>:<entity>`.
    pub fn graphql_id(&self) -> String {
        b64(&format!("Project:v1:{}:{}", self.name, self.entity))
    }
}

/// A user or team entity.
#[derive(Debug)]
pub struct EntityRecord {
    /// Name.
    pub name: String,
    /// Numeric id.
    pub num: u64,
    /// Teams are entities other than the viewer's own.
    pub is_team: bool,
    /// Creation time.
    pub created_at: Micros,
    /// Projects by name.
    pub projects: BTreeMap<String, ProjectRecord>,
}

impl EntityRecord {
    /// `Entity.id`.
    pub fn graphql_id(&self) -> String {
        b64(&format!("Entity:{}", self.num))
    }
}

/// The signed-in user (every valid key authenticates as this user).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Viewer {
    /// User name (also the personal entity's name).
    pub username: String,
    /// Default entity (`viewer.entity`).
    pub entity: String,
    /// Display name.
    pub name: String,
    /// E-mail address.
    pub email: String,
}

impl Viewer {
    /// A viewer whose user name and default entity are `entity`.
    pub fn for_entity(entity: &str) -> Self {
        Self {
            username: entity.into(),
            entity: entity.into(),
            name: format!("{entity} (emulated)"),
            email: format!("{entity}@example.com"),
        }
    }

    /// `User.id`.
    pub fn graphql_id(&self) -> String {
        b64(&format!("User:{}", self.username))
    }
}

/// All entities, projects and runs.
#[derive(Debug)]
pub struct World {
    /// The signed-in user.
    pub viewer: Viewer,
    entities: BTreeMap<String, EntityRecord>,
    runs_by_storage_id: HashMap<String, RunHandle>,
    next_entity_num: u64,
    next_project_id: u64,
    next_run_seq: u64,
}

impl World {
    /// A world holding only the viewer's own entity.
    pub fn new(viewer: Viewer, now: Micros) -> Self {
        let mut world = Self {
            viewer,
            entities: BTreeMap::new(),
            runs_by_storage_id: HashMap::new(),
            next_entity_num: 1,
            next_project_id: 1,
            next_run_seq: 0,
        };
        let own = world.viewer.entity.clone();
        world.ensure_entity(&own, now);
        world
    }

    /// Looks an entity up.
    pub fn entity(&self, name: &str) -> Option<&EntityRecord> {
        self.entities.get(name)
    }

    /// All entities, by name.
    pub fn entities(&self) -> impl Iterator<Item = &EntityRecord> {
        self.entities.values()
    }

    /// Returns the entity, creating it (as one of the viewer's teams) if needed.
    pub fn ensure_entity(&mut self, name: &str, now: Micros) -> &mut EntityRecord {
        let is_team = name != self.viewer.entity;
        let num = &mut self.next_entity_num;
        self.entities.entry(name.to_string()).or_insert_with(|| {
            let rec = EntityRecord {
                name: name.to_string(),
                num: *num,
                is_team,
                created_at: now,
                projects: BTreeMap::new(),
            };
            *num += 1;
            rec
        })
    }

    /// Looks a project up.
    pub fn project(&self, entity: &str, project: &str) -> Option<&ProjectRecord> {
        self.entities.get(entity)?.projects.get(project)
    }

    /// Returns the project, creating it (and its entity) if needed.
    pub fn ensure_project(
        &mut self,
        entity: &str,
        project: &str,
        now: Micros,
    ) -> &mut ProjectRecord {
        let next_id = &mut self.next_project_id;
        let is_team = entity != self.viewer.entity;
        let num = &mut self.next_entity_num;
        let ent = self.entities.entry(entity.to_string()).or_insert_with(|| {
            let rec = EntityRecord {
                name: entity.to_string(),
                num: *num,
                is_team,
                created_at: now,
                projects: BTreeMap::new(),
            };
            *num += 1;
            rec
        });
        ent.projects.entry(project.to_string()).or_insert_with(|| {
            let rec = ProjectRecord {
                name: project.to_string(),
                entity: entity.to_string(),
                internal_id: *next_id,
                created_at: now,
                description: None,
                runs: BTreeMap::new(),
            };
            *next_id += 1;
            rec
        })
    }

    /// Looks a run up by path.
    pub fn run(&self, entity: &str, project: &str, name: &str) -> Option<RunHandle> {
        self.project(entity, project)?.runs.get(name).cloned()
    }

    /// Looks a run up by its storage id (`Run.id`).
    pub fn run_by_storage_id(&self, id: &str) -> Option<RunHandle> {
        self.runs_by_storage_id.get(id).cloned()
    }

    /// All runs of a project (unordered).
    pub fn runs(&self, entity: &str, project: &str) -> Vec<RunHandle> {
        self.project(entity, project)
            .map(|p| p.runs.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Every run in the world.
    pub fn all_runs(&self) -> Vec<RunHandle> {
        self.entities
            .values()
            .flat_map(|e| e.projects.values())
            .flat_map(|p| p.runs.values().cloned())
            .collect()
    }

    /// Inserts a new run record (creating entity and project as needed). Returns the existing
    /// run instead when the name is taken.
    pub fn insert_run(&mut self, key: RunKey, record: RunRecord, now: Micros) -> (RunHandle, bool) {
        if let Some(existing) = self.run(&key.entity, &key.project, &key.name) {
            return (existing, false);
        }
        let seq = self.next_run_seq;
        self.next_run_seq += 1;
        let project = self.ensure_project(&key.entity, &key.project, now);
        let cell = Arc::new(RunCell {
            storage_id: key.storage_id(),
            key: key.clone(),
            seq,
            project_internal_id: project.internal_id,
            record: RwLock::new(record),
        });
        project.runs.insert(key.name.clone(), Arc::clone(&cell));
        self.runs_by_storage_id
            .insert(cell.storage_id.clone(), Arc::clone(&cell));
        (cell, true)
    }

    /// Deletes a run; returns it when it existed.
    pub fn delete_run(&mut self, key: &RunKey) -> Option<RunHandle> {
        let run = self
            .entities
            .get_mut(&key.entity)?
            .projects
            .get_mut(&key.project)?
            .runs
            .remove(&key.name)?;
        self.runs_by_storage_id.remove(&run.storage_id);
        Some(run)
    }

    /// Counters, for snapshots.
    pub(crate) fn counters(&self) -> (u64, u64, u64) {
        (
            self.next_entity_num,
            self.next_project_id,
            self.next_run_seq,
        )
    }

    /// Restores counters and records from a snapshot.
    pub(crate) fn restore_entity(
        &mut self,
        name: String,
        num: u64,
        is_team: bool,
        created_at: Micros,
    ) {
        self.entities.entry(name.clone()).or_insert(EntityRecord {
            name,
            num,
            is_team,
            created_at,
            projects: BTreeMap::new(),
        });
    }

    /// Restores a project from a snapshot.
    pub(crate) fn restore_project(&mut self, project: ProjectRecord) {
        if let Some(ent) = self.entities.get_mut(&project.entity) {
            ent.projects.insert(project.name.clone(), project);
        }
    }

    /// Restores a run from a snapshot.
    pub(crate) fn restore_run(&mut self, key: RunKey, seq: u64, record: RunRecord) {
        let Some(project) = self
            .entities
            .get_mut(&key.entity)
            .and_then(|e| e.projects.get_mut(&key.project))
        else {
            return;
        };
        let cell = Arc::new(RunCell {
            storage_id: key.storage_id(),
            key: key.clone(),
            seq,
            project_internal_id: project.internal_id,
            record: RwLock::new(record),
        });
        project.runs.insert(key.name.clone(), Arc::clone(&cell));
        self.runs_by_storage_id
            .insert(cell.storage_id.clone(), cell);
    }

    /// Restores the id counters from a snapshot.
    pub(crate) fn restore_counters(&mut self, entity: u64, project: u64, run_seq: u64) {
        self.next_entity_num = self.next_entity_num.max(entity);
        self.next_project_id = self.next_project_id.max(project);
        self.next_run_seq = self.next_run_seq.max(run_seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datetimes_round_trip_in_common_forms() {
        let t = parse_datetime("2024-01-02T03:04:05").expect("parses");
        assert_eq!(format_datetime(t), "2024-01-02T03:04:05");
        for form in [
            "2024-01-02T03:04:05Z",
            "2024-01-02T03:04:05.000Z",
            "2024-01-02 03:04:05",
            "2024-01-02T04:04:05+01:00",
        ] {
            assert_eq!(parse_datetime(form), Some(t), "{form}");
        }
        assert_eq!(
            parse_datetime("2024-01-02").map(format_datetime).as_deref(),
            Some("2024-01-02T00:00:00")
        );
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn ids_decode() {
        let key = RunKey::new("e", "p", "r:1");
        let id = file_id(&key, "media/a:b.png");
        assert_eq!(
            parse_file_id(&id),
            Some((key.clone(), "media/a:b.png".to_string()))
        );
        assert_eq!(unb64(&key.storage_id()).as_deref(), Some("Run:v1:r:1:p:e"));
    }

    #[test]
    fn other_entities_become_teams() {
        let mut world = World::new(Viewer::for_entity("alice"), 0);
        let (run, inserted) = world.insert_run(
            RunKey::new("team-x", "p", "r1"),
            RunRecord::new("alice", 0),
            0,
        );
        assert!(inserted);
        assert!(world.entity("team-x").is_some_and(|e| e.is_team));
        assert!(world.entity("alice").is_some_and(|e| !e.is_team));
        assert!(world.run_by_storage_id(&run.storage_id).is_some());
        let (_, inserted) = world.insert_run(
            RunKey::new("team-x", "p", "r1"),
            RunRecord::new("alice", 0),
            0,
        );
        assert!(!inserted);
        assert!(world.delete_run(&run.key).is_some());
        assert!(world.run_by_storage_id(&run.storage_id).is_none());
    }
}
