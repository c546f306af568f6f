//! Migrations, upserts and every SQL view, on a real Postgres with known data.

use chrono::{TimeZone, Utc};
use tokio_postgres::NoTls;
use wandbfs::mirror::schema::{self, MIGRATIONS, SCHEMA_VERSION};
use wandbfs::mirror::testing::{empty_database, fresh_database};
use wandbfs::mirror::*;

async fn raw(config: &tokio_postgres::Config) -> tokio_postgres::Client {
    let (client, connection) = config.connect(NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[test]
fn every_migration_file_is_compiled_in() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mirror/migrations");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".sql"))
        .collect();
    files.sort();
    let compiled: Vec<String> = MIGRATIONS
        .iter()
        .map(|m| format!("{:04}_{}.sql", m.version, m.name))
        .collect();
    assert_eq!(files, compiled);
}

#[tokio::test]
async fn fresh_apply_is_idempotent_and_concurrent_appliers_do_not_race() {
    let config = empty_database().await.unwrap();
    // Four processes' worth of connections migrate the empty database at once.
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = raw(&config).await;
            schema::migrate(&mut client).await.unwrap()
        }));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.push(t.await.unwrap());
    }
    let appliers = applied.iter().filter(|r| !r.applied.is_empty()).count();
    assert_eq!(appliers, 1, "{applied:?}");
    let mut client = raw(&config).await;
    let again = schema::migrate(&mut client).await.unwrap();
    assert_eq!(again.from_version, SCHEMA_VERSION);
    assert!(again.applied.is_empty());
    assert_eq!(schema::check(&client).await.unwrap(), SCHEMA_VERSION);
}

#[tokio::test]
async fn a_newer_schema_is_refused_and_an_older_one_reported() {
    let config = empty_database().await.unwrap();
    let client = raw(&config).await;
    // Read-only connections do not migrate: an empty database is "too old".
    let err = schema::check(&client).await.unwrap_err();
    assert!(
        matches!(err, MirrorError::SchemaTooOld { found: 0, .. }),
        "{err}"
    );
    let err = Mirror::connect_config(
        config.clone(),
        &ConnectOptions {
            schema: SchemaPolicy::RequireCurrent,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("run a writer"), "{err}");

    let mirror = Mirror::connect_config(config.clone(), &ConnectOptions::default())
        .await
        .unwrap();
    drop(mirror);
    client
        .execute(
            "INSERT INTO wandb.schema_version (version, name, checksum) VALUES ($1, 'future', 'x')",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .unwrap();
    let err = Mirror::connect_config(config.clone(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MirrorError::SchemaTooNew { found, supported }
            if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("upgrade wandbfs"), "{err}");
    assert!(matches!(
        schema::check(&client).await.unwrap_err(),
        MirrorError::SchemaTooNew { .. }
    ));
}

#[tokio::test]
async fn a_changed_migration_is_detected() {
    let db = fresh_database().await.unwrap();
    let client = db.raw_client().await.unwrap();
    client
        .execute(
            "UPDATE wandb.schema_version SET checksum = 'tampered' WHERE version = 1",
            &[],
        )
        .await
        .unwrap();
    let err = Mirror::connect_config(db.config.clone(), &ConnectOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, MirrorError::MigrationMismatch { version: 1, .. }),
        "{err}"
    );
}

fn ts(secs: i64) -> chrono::DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + secs, 0).unwrap()
}

/// Two runs with config, summary, history and files; one artifact collection with versions.
async fn seed(mirror: &Mirror) -> (ProjectPk, RunPk, RunPk) {
    let project = mirror
        .upsert_project(&ProjectRecord {
            entity: "team".into(),
            name: "vision".into(),
            storage_id: Some("UHJvamVjdDox".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let run_a = mirror
        .upsert_run(
            project,
            &RunRecord {
                run_id: "aaaa1111".into(),
                display_name: Some("happy-run-1".into()),
                state: Some("finished".into()),
                username: Some("alice".into()),
                tags: vec!["baseline".into(), "v1".into()],
                created_at: Some(ts(0)),
                heartbeat_at: Some(ts(60)),
                history_line_count: Some(3),
                config: Some(
                    r#"{"lr": {"value": 0.001, "desc": null}, "layers": {"value": 4},
                        "opt": {"value": {"name": "adam", "beta": [0.9, 0.99]}},
                        "_wandb": {"value": {"cli_version": "0.31.0"}}}"#
                        .into(),
                ),
                summary: Some(
                    r#"{"loss": NaN, "acc": 0.5, "best": Infinity, "img": {"_type": "image-file", "path": "x.png"}, "nested": {"a": 1}}"#
                        .into(),
                ),
                system_metrics: Some(r#"{"system.cpu": 12.5}"#.into()),
                history_keys: Some(serde_json::json!({"lastStep": 2, "keys": {}})),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(run_a.inserted);
    let run_b = mirror
        .upsert_run(
            project,
            &RunRecord {
                run_id: "bbbb2222".into(),
                state: Some("running".into()),
                config: Some(r#"{"lr": {"value": 0.01}}"#.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let rows = [
        (0, r#"{"_step":0,"loss":1.5,"acc":0.1,"sub":{"x":2}}"#),
        (
            1,
            r#"{"_step":1,"loss":NaN,"acc":0.2,"img":{"_type":"image-file","path":"a.png","width":28}}"#,
        ),
        (2, r#"{"_step":2,"loss":-Infinity,"acc":0.3,"label":"cat"}"#),
    ];
    mirror
        .ingest_batch(run_a.run_pk, Stream::History, &rows)
        .await
        .unwrap();
    mirror
        .replace_run_files(
            run_a.run_pk,
            &[
                RunFileRecord {
                    name: "media/images/a.png".into(),
                    size_bytes: Some(1234),
                    md5: Some("abc==".into()),
                    updated_at: Some(ts(30)),
                    mimetype: Some("image/png".into()),
                    url: Some("http://h/files/team/vision/aaaa1111/media/images/a.png".into()),
                    storage_id: None,
                },
                RunFileRecord {
                    name: "output.log".into(),
                    size_bytes: Some(10),
                    ..Default::default()
                },
            ],
        )
        .await
        .unwrap();
    let ty = mirror
        .upsert_artifact_type(
            project,
            &ArtifactTypeRecord {
                name: "dataset".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let coll = mirror
        .upsert_artifact_collection(
            project,
            ty,
            &ArtifactCollectionRecord {
                name: "mnist".into(),
                kind: "sequence".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let v0 = mirror
        .upsert_artifact_version(
            coll,
            &ArtifactVersionRecord {
                version_index: 0,
                digest: Some("d0".into()),
                size_bytes: Some(100),
                state: Some("COMMITTED".into()),
                metadata: Some(r#"{"rows": 60000, "score": NaN}"#.into()),
                aliases: vec!["latest".into(), "v0".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    mirror
        .replace_manifest(
            v0,
            &[ManifestEntryRecord {
                path: "train.csv".into(),
                digest: Some("md5==".into()),
                size_bytes: Some(100),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    mirror
        .link_run_artifact(run_a.run_pk, v0, ArtifactDirection::Output)
        .await
        .unwrap();
    // v1 takes over `latest`.
    mirror
        .upsert_artifact_version(
            coll,
            &ArtifactVersionRecord {
                version_index: 1,
                digest: Some("d1".into()),
                state: Some("COMMITTED".into()),
                aliases: vec!["latest".into(), "best".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    (project, run_a.run_pk, run_b.run_pk)
}

#[tokio::test]
async fn views_return_the_known_data() {
    let db = fresh_database().await.unwrap();
    let (_, _run_a, _) = seed(&db.mirror).await;
    let c = db.raw_client().await.unwrap();

    // runs_flat: names, unwrapped config without _wandb, summary as jsonb with NaN spelled.
    let row = c
        .query_one(
            "SELECT entity, project, display_name, config, summary ->> 'loss', tags,
                    (summary ->> 'loss')::float8
             FROM wandb.runs_flat WHERE run_id = 'aaaa1111'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "team");
    assert_eq!(row.get::<_, String>(1), "vision");
    assert_eq!(row.get::<_, String>(2), "happy-run-1");
    let config: serde_json::Value = row.get(3);
    assert_eq!(
        config,
        serde_json::json!({"lr": 0.001, "layers": 4, "opt": {"name": "adam", "beta": [0.9, 0.99]}})
    );
    assert_eq!(row.get::<_, String>(4), "NaN");
    assert_eq!(row.get::<_, Vec<String>>(5), vec!["baseline", "v1"]);
    assert!(row.get::<_, f64>(6).is_nan());

    // run_values: dotted leaves; media objects stay whole; numbers as float8.
    let values: Vec<(String, String, String, Option<f64>)> = c
        .query(
            "SELECT run_id, source, key, number FROM wandb.run_values ORDER BY 1, 2, 3",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let keys: Vec<String> = values
        .iter()
        .filter(|v| v.0 == "aaaa1111")
        .map(|v| format!("{}:{}", v.1, v.2))
        .collect();
    assert_eq!(
        keys,
        [
            "config:layers",
            "config:lr",
            "config:opt.beta",
            "config:opt.name",
            "summary:acc",
            "summary:best",
            "summary:img",
            "summary:loss",
            "summary:nested.a",
        ]
    );
    let best = values.iter().find(|v| v.2 == "best").unwrap().3.unwrap();
    assert_eq!(best, f64::INFINITY);
    assert!(
        values
            .iter()
            .any(|v| v.0 == "bbbb2222" && v.2 == "lr" && v.3 == Some(0.01))
    );

    // metrics: long format, nested keys dotted, NaN/-Infinity as float8, strings and media
    // left out.
    let metrics: Vec<(i64, String, f64)> = c
        .query(
            "SELECT step, key, value FROM wandb.metrics
             WHERE entity = 'team' AND project = 'vision' AND run_id = 'aaaa1111'
             ORDER BY step, key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let shape: Vec<(i64, &str)> = metrics.iter().map(|m| (m.0, m.1.as_str())).collect();
    assert_eq!(
        shape,
        [
            (0, "acc"),
            (0, "loss"),
            (0, "sub.x"),
            (1, "acc"),
            (1, "loss"),
            (2, "acc"),
            (2, "loss")
        ]
    );
    assert!(metrics[4].2.is_nan());
    assert_eq!(metrics[6].2, f64::NEG_INFINITY);
    assert_eq!(metrics[2].2, 2.0);

    // A wide per-project view with typed config./summary. columns.
    let name: String = c
        .query_one(
            "SELECT wandb.create_runs_wide_view('wandb.vision_wide', 'team', 'vision')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(name, "wandb.vision_wide");
    let wide = c
        .query(
            "SELECT run_id, \"config.lr\", \"config.opt\", \"summary.loss\",
                    pg_typeof(\"config.lr\")::text, pg_typeof(\"config.opt\")::text
             FROM wandb.vision_wide ORDER BY run_id",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(wide.len(), 2);
    assert_eq!(wide[0].get::<_, Option<f64>>(1), Some(0.001));
    assert_eq!(wide[1].get::<_, Option<f64>>(1), Some(0.01));
    assert_eq!(
        wide[0].get::<_, Option<serde_json::Value>>(2),
        Some(serde_json::json!({"name": "adam", "beta": [0.9, 0.99]}))
    );
    assert!(wide[0].get::<_, Option<f64>>(3).unwrap().is_nan());
    assert_eq!(wide[1].get::<_, Option<f64>>(3), None);
    assert_eq!(wide[0].get::<_, String>(4), "double precision");
    assert_eq!(wide[0].get::<_, String>(5), "jsonb");

    // history_rows.
    let label: String = c
        .query_one(
            "SELECT row ->> 'label' FROM wandb.history_rows WHERE run_id = 'aaaa1111' AND step = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(label, "cat");

    // files.
    let files: Vec<(String, Option<i64>)> = c
        .query(
            "SELECT name, size_bytes FROM wandb.files ORDER BY name",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        files,
        [
            ("media/images/a.png".to_string(), Some(1234)),
            ("output.log".to_string(), Some(10))
        ]
    );

    // artifacts: `latest` moved to v1; metadata NaN spelled for SQL.
    let arts: Vec<(String, String, Vec<String>, Option<String>)> = c
        .query(
            "SELECT type, version, aliases, metadata ->> 'score' FROM wandb.artifacts
             WHERE collection = 'mnist' ORDER BY version_index",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        arts,
        [
            (
                "dataset".into(),
                "v0".into(),
                vec!["v0".to_string()],
                Some("NaN".into())
            ),
            (
                "dataset".into(),
                "v1".into(),
                vec!["best".to_string(), "latest".into()],
                None
            ),
        ]
    );
    let linked: i64 = c
        .query_one(
            "SELECT count(*) FROM wandb.run_artifacts ra JOIN wandb.artifact_manifest_entries m
             USING (version_pk) WHERE ra.direction = 'output' AND m.path = 'train.csv'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(linked, 1);
}

#[tokio::test]
async fn documents_listings_partial_updates_and_deletion_marks() {
    let db = fresh_database().await.unwrap();
    let m = &db.mirror;
    let (project, run_a, run_b) = seed(m).await;

    // Documents come back byte for byte.
    let summary = m
        .read_document(run_a, Document::Summary)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        &summary[..],
        br#"{"loss": NaN, "acc": 0.5, "best": Infinity, "img": {"_type": "image-file", "path": "x.png"}, "nested": {"a": 1}}"#
    );
    assert!(
        m.read_document(run_b, Document::Summary)
            .await
            .unwrap()
            .is_none()
    );
    let meta = m.run_metadata(run_a).await.unwrap();
    assert_eq!(meta.id, "aaaa1111");
    assert_eq!(meta.entity, "team");
    assert_eq!(meta.tags, ["baseline", "v1"]);
    assert_eq!(meta.created_at, Some(ts(0)));
    assert_eq!(meta.last_step, Some(2));
    assert!(!meta.deleted);
    assert_eq!(
        meta.summary.as_deref().map(str::as_bytes),
        Some(&summary[..])
    );
    assert!(meta.config.as_deref().unwrap().contains("\"_wandb\""));

    // A lightweight update (no config/summary) keeps them; authoritative fields change.
    let light = RunRecord {
        run_id: "aaaa1111".into(),
        state: Some("finished".into()),
        tags: vec!["edited".into()],
        notes: Some("new notes".into()),
        ..Default::default()
    };
    let outcome = m.upsert_run(project, &light).await.unwrap();
    assert_eq!(
        outcome,
        RunOutcome {
            run_pk: run_a,
            inserted: false
        }
    );
    let meta = m.run_metadata(run_a).await.unwrap();
    assert_eq!(meta.tags, ["edited"]);
    assert_eq!(meta.notes.as_deref(), Some("new notes"));
    assert_eq!(
        meta.last_step,
        Some(2),
        "kept: the light fragment has no historyKeys"
    );
    assert!(
        m.read_document(run_a, Document::Config)
            .await
            .unwrap()
            .is_some()
    );

    // Listings.
    assert_eq!(m.list_entities().await.unwrap(), ["team"]);
    assert_eq!(m.list_projects("team").await.unwrap(), ["vision"]);
    let runs = m.list_runs(project).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].history_bytes, m.history_len(run_a).await.unwrap());
    assert_eq!(
        m.resolve_run("team", "vision", "bbbb2222").await.unwrap(),
        Some(run_b)
    );
    assert_eq!(m.resolve_run("team", "vision", "nope").await.unwrap(), None);
    let files = m.list_run_files(run_a).await.unwrap();
    assert_eq!(files.len(), 2);

    // Replacing the file listing drops vanished files.
    m.replace_run_files(
        run_a,
        &[RunFileRecord {
            name: "output.log".into(),
            size_bytes: Some(20),
            ..Default::default()
        }],
    )
    .await
    .unwrap();
    let files = m.list_run_files(run_a).await.unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].size_bytes, Some(20));

    // Deletion is a mark, and a run that reappears is un-marked.
    let gone = m
        .mark_missing_runs_deleted(project, &["aaaa1111".to_string()])
        .await
        .unwrap();
    assert_eq!(gone, ["bbbb2222"]);
    assert!(m.run_metadata(run_b).await.unwrap().deleted);
    assert!(m.run_metadata(run_b).await.unwrap().deleted_at.is_some());
    assert!(
        m.mark_missing_runs_deleted(project, &["aaaa1111".into()])
            .await
            .unwrap()
            .is_empty()
    );
    m.upsert_run(
        project,
        &RunRecord {
            run_id: "bbbb2222".into(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(!m.run_metadata(run_b).await.unwrap().deleted);

    // Artifact listings for the store.
    let versions = m.list_artifact_versions(project).await.unwrap();
    let shape: Vec<(String, i32, Vec<String>, bool)> = versions
        .iter()
        .map(|v| {
            (
                v.collection.clone(),
                v.version_index,
                v.aliases.clone(),
                v.manifest_synced,
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("mnist".to_string(), 0, vec!["v0".to_string()], true),
            (
                "mnist".to_string(),
                1,
                vec!["best".to_string(), "latest".into()],
                false
            ),
        ]
    );
    let entries = m.manifest_entries(versions[0].version_pk).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].path, "train.csv");
    assert_eq!(entries[0].size_bytes, Some(100));

    // Sync bookkeeping round-trips.
    let mut state = m.project_sync_state(project).await.unwrap();
    assert_eq!(state.created_watermark, None);
    state.created_watermark = Some("2024-01-02T03:04:05Z".into());
    state.last_full_pass_at = Some(ts(99));
    state.engine_state = serde_json::json!({"cursor": 7});
    m.set_project_sync_state(project, &state).await.unwrap();
    assert_eq!(m.project_sync_state(project).await.unwrap(), state);
    m.record_run_error(run_b, "HTTP 502 from history")
        .await
        .unwrap();
    m.record_run_error(run_b, "HTTP 502 from history")
        .await
        .unwrap();
    let s = m.run_sync_state(run_b).await.unwrap();
    assert_eq!((s.attempts, s.consecutive_errors), (2, 2));
    assert_eq!(s.last_error.as_deref(), Some("HTTP 502 from history"));
    m.record_run_success(run_b).await.unwrap();
    let s = m.run_sync_state(run_b).await.unwrap();
    assert_eq!((s.attempts, s.consecutive_errors), (3, 0));
    assert!(s.last_success_at.is_some());
}
