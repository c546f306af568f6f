//! Run mutations: `upsertBucket`, `createRunFiles`, `markRunFilesUploaded`, `deleteFiles`,
//! `deleteRun`, `updateRunState`, `stopRun`, `upsertModel`.

use async_graphql::{Context, Error, ID, InputObject, Object, Result, SimpleObject};

use super::files::FileView;
use super::scalars::JsonString;
use super::{FileObject, ProjectObject, ProjectRef, RunObject, app};
use crate::state::{JsonText, RunKey, RunRecord, parse_file_id};

/// `UpsertBucketInput` (create or update a run; null fields are left unchanged).
#[derive(InputObject, Default)]
pub struct UpsertBucketInput {
    /// Storage id of an existing run (wins over name/project/entity).
    pub id: Option<String>,
    /// Run id.
    pub name: Option<String>,
    /// Group.
    pub group_name: Option<String>,
    /// Project.
    pub model_name: Option<String>,
    /// Entity (null = the viewer's).
    pub entity_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Notes.
    pub notes: Option<String>,
    /// Config (`{"k": {"value": v}}`), replaces the stored config.
    pub config: Option<JsonString>,
    /// Commit.
    pub commit: Option<String>,
    /// Host.
    pub host: Option<String>,
    /// Debug flag.
    pub debug: Option<bool>,
    /// Program.
    pub job_program: Option<String>,
    /// Repository.
    pub job_repo: Option<String>,
    /// Job type.
    pub job_type: Option<String>,
    /// State.
    pub state: Option<String>,
    /// Sweep name.
    pub sweep: Option<String>,
    /// Tags (replace).
    pub tags: Option<Vec<String>>,
    /// Summary (replaces the stored summary).
    pub summary_metrics: Option<JsonString>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `UpsertBucketPayload`.
#[derive(SimpleObject)]
pub struct UpsertBucketPayload {
    /// The run.
    pub bucket: Option<RunObject>,
    /// Whether it was created.
    pub inserted: Option<bool>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `CreateRunFilesInput`.
#[derive(InputObject)]
pub struct CreateRunFilesInput {
    /// Entity.
    pub entity_name: Option<String>,
    /// Project.
    pub project_name: Option<String>,
    /// Run id.
    pub run_name: Option<String>,
    /// Run-relative file names.
    pub files: Vec<String>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `CreateRunFilesPayload`.
#[derive(SimpleObject)]
pub struct CreateRunFilesPayload {
    /// The run's storage id.
    #[graphql(name = "runID")]
    pub run_id: ID,
    /// Headers (`Name:Value`) to send with every PUT.
    pub upload_headers: Vec<String>,
    /// One file per requested name, with `uploadUrl`.
    pub files: Vec<FileObject>,
}

/// `MarkRunFilesUploadedInput`.
#[derive(InputObject)]
pub struct MarkRunFilesUploadedInput {
    /// Entity.
    pub entity_name: Option<String>,
    /// Project.
    pub project_name: Option<String>,
    /// Run id.
    pub run_name: Option<String>,
    /// File names.
    pub files: Vec<String>,
}

/// `{ success }` payloads.
#[derive(SimpleObject)]
#[graphql(name = "SuccessPayload")]
pub struct Success {
    /// Whether the mutation took effect.
    pub success: bool,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteFilesInput`.
#[derive(InputObject)]
pub struct DeleteFilesInput {
    /// File ids.
    pub files: Vec<ID>,
    /// Project internal id (ignored: ids identify the run).
    pub project_id: Option<i64>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteRunInput`.
#[derive(InputObject)]
pub struct DeleteRunInput {
    /// Storage id.
    pub id: ID,
    /// Also delete artifacts (no effect here).
    pub delete_artifacts: Option<bool>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `DeleteRunPayload`.
#[derive(SimpleObject)]
pub struct DeleteRunPayload {
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
    /// Always true when returned.
    pub success: bool,
}

/// `UpdateRunStateInput`.
#[derive(InputObject)]
pub struct UpdateRunStateInput {
    /// Storage id.
    pub id: ID,
    /// Target state (`pending` or `failed`).
    pub state: String,
}

/// `StopRunInput`.
#[derive(InputObject)]
pub struct StopRunInput {
    /// Storage id.
    pub id: ID,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `UpsertModelInput` (create a project).
#[derive(InputObject)]
pub struct UpsertModelInput {
    /// Project id (unused).
    pub id: Option<String>,
    /// Project name.
    pub name: Option<String>,
    /// Entity.
    pub entity_name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Access.
    pub access: Option<String>,
    /// Views.
    pub views: Option<String>,
    /// Benchmark flag.
    pub is_benchmark: Option<bool>,
    /// Published flag.
    pub is_published: Option<bool>,
    /// Framework.
    pub framework: Option<String>,
    /// Repository.
    pub repo: Option<String>,
    /// Docker image.
    pub docker_image: Option<String>,
    /// Registry setting (ignored).
    pub allow_all_artifact_types_in_registry: Option<bool>,
    /// Relay mutation id.
    pub client_mutation_id: Option<String>,
}

/// `UpsertModelPayload`.
#[derive(SimpleObject)]
pub struct UpsertModelPayload {
    /// The project.
    pub project: Option<ProjectObject>,
    /// The project (legacy name).
    pub model: Option<ProjectObject>,
    /// Whether it was created.
    pub inserted: bool,
}

/// Run mutations.
#[derive(Default)]
pub struct RunMutations;

fn random_run_name() -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..8)
        .map(|_| ALPHABET[rand::random_range(0..36)] as char)
        .collect()
}

fn run_by_id(ctx: &Context<'_>, id: &str) -> Result<crate::state::RunHandle> {
    app(ctx)
        .world
        .read()
        .run_by_storage_id(id)
        .ok_or_else(|| Error::new(format!("run with id {id} not found")))
}

#[Object]
impl RunMutations {
    /// Creates or updates a run (`bucket`). The run is found by `id`, else by
    /// `(entityName ?? viewer entity, modelName ?? "uncategorized", name)`; a missing name
    /// creates a run with a random id.
    async fn upsert_bucket(
        &self,
        ctx: &Context<'_>,
        input: UpsertBucketInput,
    ) -> Result<UpsertBucketPayload> {
        let app = app(ctx);
        let now = app.now();
        let (run, inserted) = if let Some(id) = &input.id {
            (run_by_id(ctx, id)?, false)
        } else {
            let mut world = app.world.write();
            let entity = input
                .entity_name
                .clone()
                .unwrap_or_else(|| world.viewer.entity.clone());
            let project = input
                .model_name
                .clone()
                .unwrap_or_else(|| "uncategorized".into());
            let name = input.name.clone().unwrap_or_else(random_run_name);
            let username = world.viewer.username.clone();
            world.insert_run(
                RunKey::new(entity, project, name),
                RunRecord::new(&username, now),
                now,
            )
        };
        {
            let mut rec = run.record.write();
            let set = |field: &mut Option<String>, value: &Option<String>| {
                if let Some(v) = value {
                    *field = Some(v.clone());
                }
            };
            set(&mut rec.display_name, &input.display_name);
            set(&mut rec.description, &input.description);
            set(&mut rec.notes, &input.notes);
            set(&mut rec.group, &input.group_name);
            set(&mut rec.job_type, &input.job_type);
            set(&mut rec.commit, &input.commit);
            set(&mut rec.host, &input.host);
            set(&mut rec.program, &input.job_program);
            set(&mut rec.repo, &input.job_repo);
            set(&mut rec.sweep, &input.sweep);
            if let Some(state) = &input.state {
                rec.state = state.clone();
            }
            if let Some(tags) = &input.tags {
                rec.tags = tags.clone();
            }
            if let Some(config) = &input.config {
                rec.config = JsonText::new(config.0.clone());
            }
            if let Some(summary) = &input.summary_metrics {
                rec.summary = JsonText::new(summary.0.clone());
            }
            rec.touch(now);
        }
        app.mark_dirty();
        Ok(UpsertBucketPayload {
            bucket: Some(RunObject::new(run)),
            inserted: Some(inserted),
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Signed upload URLs for run files; the files appear once their bytes are PUT.
    async fn create_run_files(
        &self,
        ctx: &Context<'_>,
        input: CreateRunFilesInput,
    ) -> Result<CreateRunFilesPayload> {
        let app = app(ctx);
        let entity = input
            .entity_name
            .unwrap_or_else(|| app.world.read().viewer.entity.clone());
        let project = input.project_name.unwrap_or_else(|| "uncategorized".into());
        let name = input
            .run_name
            .ok_or_else(|| Error::new("runName is required"))?;
        let run = app
            .run(&entity, &project, &name)
            .ok_or_else(|| Error::new(format!("run {entity}/{project}/{name} not found")))?;
        let files = input
            .files
            .iter()
            .map(|f| {
                FileObject::new(FileView {
                    id: crate::state::file_id(&run.key, f),
                    name: f.clone(),
                    upload_url: Some(app.run_file_upload_url(&run.key, f)),
                    ..FileView::default()
                })
            })
            .collect();
        Ok(CreateRunFilesPayload {
            run_id: ID(run.storage_id.clone()),
            upload_headers: Vec::new(),
            files,
        })
    }

    /// Confirms uploads (files are registered at PUT time; this checks they exist).
    async fn mark_run_files_uploaded(
        &self,
        ctx: &Context<'_>,
        input: MarkRunFilesUploadedInput,
    ) -> Result<Success> {
        let app = app(ctx);
        let entity = input
            .entity_name
            .unwrap_or_else(|| app.world.read().viewer.entity.clone());
        let project = input.project_name.unwrap_or_else(|| "uncategorized".into());
        let name = input
            .run_name
            .ok_or_else(|| Error::new("runName is required"))?;
        let run = app
            .run(&entity, &project, &name)
            .ok_or_else(|| Error::new(format!("run {entity}/{project}/{name} not found")))?;
        let rec = run.record.read();
        let success = input.files.iter().all(|f| rec.files.contains_key(f));
        Ok(Success {
            success,
            client_mutation_id: None,
        })
    }

    /// Deletes run files by id.
    async fn delete_files(&self, ctx: &Context<'_>, input: DeleteFilesInput) -> Result<Success> {
        let app = app(ctx);
        let now = app.now();
        let mut success = true;
        for id in &input.files {
            let Some((key, name)) = parse_file_id(id) else {
                return Err(Error::new(format!("invalid file id {}", id.as_str())));
            };
            match app.run(&key.entity, &key.project, &key.name) {
                Some(run) => {
                    let mut rec = run.record.write();
                    success &= rec.files.remove(&name).is_some();
                    rec.touch(now);
                }
                None => success = false,
            }
        }
        app.mark_dirty();
        Ok(Success {
            success,
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Deletes a run.
    async fn delete_run(
        &self,
        ctx: &Context<'_>,
        input: DeleteRunInput,
    ) -> Result<DeleteRunPayload> {
        let app = app(ctx);
        let run = run_by_id(ctx, &input.id)?;
        app.world.write().delete_run(&run.key);
        app.mark_dirty();
        Ok(DeleteRunPayload {
            client_mutation_id: input.client_mutation_id,
            success: true,
        })
    }

    /// Moves a run to `pending` (from running/failed/crashed/preempted) or `failed` (from
    /// pending/running).
    async fn update_run_state(
        &self,
        ctx: &Context<'_>,
        input: UpdateRunStateInput,
    ) -> Result<Success> {
        let app = app(ctx);
        let run = run_by_id(ctx, &input.id)?;
        let mut rec = run.record.write();
        let allowed = match input.state.as_str() {
            "pending" => matches!(
                rec.state.as_str(),
                "running" | "failed" | "crashed" | "preempted"
            ),
            "failed" => matches!(rec.state.as_str(), "pending" | "running"),
            _ => false,
        };
        if !allowed {
            return Err(Error::new(format!(
                "cannot change run state from {} to {}",
                rec.state, input.state
            )));
        }
        rec.state = input.state;
        rec.touch(app.now());
        drop(rec);
        app.mark_dirty();
        Ok(Success {
            success: true,
            client_mutation_id: None,
        })
    }

    /// Flags a run to stop; its next file_stream response says `{"stopped": true}`.
    async fn stop_run(&self, ctx: &Context<'_>, input: StopRunInput) -> Result<Success> {
        let app = app(ctx);
        let run = run_by_id(ctx, &input.id)?;
        {
            let mut rec = run.record.write();
            rec.stopped = true;
            rec.touch(app.now());
        }
        app.mark_dirty();
        Ok(Success {
            success: true,
            client_mutation_id: input.client_mutation_id,
        })
    }

    /// Creates (or updates the description of) a project.
    async fn upsert_model(
        &self,
        ctx: &Context<'_>,
        input: UpsertModelInput,
    ) -> Result<UpsertModelPayload> {
        let app = app(ctx);
        let now = app.now();
        let name = input.name.ok_or_else(|| Error::new("name is required"))?;
        let mut world = app.world.write();
        let entity = input
            .entity_name
            .unwrap_or_else(|| world.viewer.entity.clone());
        let inserted = world.project(&entity, &name).is_none();
        let project = world.ensure_project(&entity, &name, now);
        if input.description.is_some() {
            project.description = input.description;
        }
        let project = ProjectRef::from_record(project);
        drop(world);
        app.mark_dirty();
        Ok(UpsertModelPayload {
            project: Some(ProjectObject::new(project.clone())),
            model: Some(ProjectObject::new(project)),
            inserted,
        })
    }
}
