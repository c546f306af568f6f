//! Artifact versions and collections deleted in W&B (by the real SDK: `Artifact.delete()`,
//! `ArtifactCollection.delete()`) are marked deleted in the mirror by the next artifact pass,
//! lose their aliases, and disappear from what the mirror serves (`list_artifact_versions`, the
//! store's source), while the `artifacts` view keeps them with `deleted = true`.

mod sync_support;

use sync_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};
use wandbfs::sync::SyncOptions;

const ENTITY: &str = "emulator";
const PROJECT: &str = "arts";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_artifact_versions_and_collections_are_marked() {
    // dataset-0 has v0, v1; model-1 has v0, v1, v2 (integration/src/artifacts/seed.rs).
    let spec = SeedSpec::new(ENTITY, PROJECT)
        .runs(2)
        .steps(20)
        .keys(3)
        .files(1)
        .bigfile(0)
        .artifacts(2)
        .artifact_bigfile(0);
    let emu = Emulator::start_with(EmulatorConfig::default().seed(spec)).expect("emulator");
    let db = database().await;
    let target = format!("{ENTITY}/{PROJECT}");
    let full = SyncOptions {
        full: true,
        ..SyncOptions::default()
    };
    let engine = engine(client(&emu), &db.mirror, full);
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        (report.artifact_versions, report.artifact_versions_deleted),
        (5, 0)
    );
    let project = db
        .mirror
        .resolve_project(ENTITY, PROJECT)
        .await
        .unwrap()
        .expect("project");
    let listed = |versions: Vec<wandbfs::mirror::ArtifactVersionSummary>| {
        versions
            .into_iter()
            .map(|v| format!("{}:v{}", v.collection, v.version_index))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(db.mirror.list_artifact_versions(project).await.unwrap()),
        [
            "dataset-0:v0",
            "dataset-0:v1",
            "model-1:v0",
            "model-1:v1",
            "model-1:v2"
        ]
    );

    // The real SDK deletes one version and one whole collection.
    let dir = tempfile::tempdir().unwrap();
    let out = run_sdk(
        &emu,
        dir.path(),
        r#"
import json, wandb
api = wandb.Api(timeout=60)
path = "emulator/arts"
api.artifact(f"{path}/dataset-0:v0").delete(delete_aliases=True)
api.artifact_collection("model", f"{path}/model-1").delete()
print(json.dumps({
    "models": [c.name for c in api.artifact_collections(path, "model")],
    "datasets": sorted(a.version for a in api.artifacts("dataset", f"{path}/dataset-0")),
}))
"#,
        &[],
    );
    let seen: serde_json::Value =
        serde_json::from_str(out.lines().last().unwrap_or_default()).expect("json");
    assert_eq!(
        seen,
        serde_json::json!({"models": [], "datasets": ["v1"]}),
        "the SDK sees the deletions"
    );

    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(
        (report.artifact_versions, report.artifact_versions_deleted),
        (1, 4),
        "{report:#?}"
    );
    assert_eq!(
        listed(db.mirror.list_artifact_versions(project).await.unwrap()),
        ["dataset-0:v1"]
    );
    let sql = db.mirror.pool().get().await.unwrap();
    let rows = sql
        .query(
            "SELECT collection || ':' || version, deleted FROM wandb.artifacts
             WHERE project = $1 ORDER BY 1",
            &[&PROJECT],
        )
        .await
        .unwrap();
    let view: Vec<(String, bool)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        view,
        [
            ("dataset-0:v0".to_owned(), true),
            ("dataset-0:v1".to_owned(), false),
            ("model-1:v0".to_owned(), true),
            ("model-1:v1".to_owned(), true),
            ("model-1:v2".to_owned(), true),
        ]
    );
    let dangling: i64 = sql
        .query_one(
            "SELECT count(*) FROM wandb.artifact_aliases a
             JOIN wandb.artifact_versions v USING (version_pk) WHERE v.deleted",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dangling, 0, "aliases of deleted versions are dropped");

    // Nothing more to mark on the next pass.
    let report = sync(&engine, &target).await;
    assert!(report.is_success(), "{report:#?}");
    assert_eq!(report.artifact_versions_deleted, 0, "{report:#?}");
    assert_mirror_matches(&emu, &db, ENTITY, PROJECT).await;
}
