//! `WandbStore` over artifacts, against the emulator's seeded artifact collections:
//! `<entity>/<project>/artifacts/<type>/<collection>/<version>/<file path>` listed and read at
//! every level, aliases resolving on get/head (and listable as a prefix, but not listed),
//! digests as entity tags, ranges, API calls, and paths that name nothing.

mod store_support;

use std::collections::BTreeSet;

use object_store::{GetRange, ObjectStore, ObjectStoreExt, PutPayload};
use store_support::*;
use wandb_emulator::{Emulator, EmulatorConfig, RouteKind, SeedSpec};

const ENTITY: &str = "alice";
const PROJECT_A: &str = "arts";

fn emulator() -> Emulator {
    // 3 collections: dataset-0 (2 versions, with a 2 MiB shard), model-1 (3), dataset-2 (4).
    let spec = SeedSpec::new(ENTITY, PROJECT_A)
        .runs(2)
        .steps(10)
        .files(3)
        .bigfile(0)
        .artifacts(3)
        .artifact_bigfile(2 << 20);
    Emulator::start_with(
        EmulatorConfig::default()
            .api_key(KEY)
            .entity(ENTITY)
            .seed(spec),
    )
    .expect("emulator")
}

fn strings(paths: &[object_store::path::Path]) -> Vec<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifacts_at_every_level() {
    let emu = emulator();
    let store = store(&emu);
    let base = format!("{ENTITY}/{PROJECT_A}/artifacts");

    // The project shows `artifacts/` next to its runs.
    let project = store
        .list_with_delimiter(Some(&p(&format!("{ENTITY}/{PROJECT_A}"))))
        .await
        .unwrap();
    assert!(
        project.common_prefixes.contains(&p(&base)),
        "{:?}",
        project.common_prefixes
    );
    assert_eq!(project.common_prefixes.len(), 3, "2 runs + artifacts");

    // Types, collections, versions (labels only: aliases are not listed).
    let types = store.list_with_delimiter(Some(&p(&base))).await.unwrap();
    assert_eq!(
        strings(&types.common_prefixes),
        [format!("{base}/dataset"), format!("{base}/model")]
    );
    let datasets = store
        .list_with_delimiter(Some(&p(&format!("{base}/dataset"))))
        .await
        .unwrap();
    assert_eq!(
        strings(&datasets.common_prefixes),
        [
            format!("{base}/dataset/dataset-0"),
            format!("{base}/dataset/dataset-2")
        ]
    );
    for collection in emu.artifact_collections(ENTITY, PROJECT_A) {
        let prefix = format!("{base}/{}/{}", collection.type_name, collection.name);
        let versions = store.list_with_delimiter(Some(&p(&prefix))).await.unwrap();
        let expected: Vec<String> = collection
            .versions
            .iter()
            .map(|v| format!("{prefix}/v{v}"))
            .collect();
        assert_eq!(strings(&versions.common_prefixes), expected);

        for v in &collection.versions {
            let label = format!("{}:v{v}", collection.name);
            let truth = emu
                .artifact_files(ENTITY, PROJECT_A, &label)
                .expect("version");
            let listed = list_all(&store, &format!("{prefix}/v{v}")).await;
            let listed_names: BTreeSet<_> = listed.iter().map(|m| m.location.to_string()).collect();
            let truth_names: BTreeSet<_> = truth
                .iter()
                .map(|f| format!("{prefix}/v{v}/{}", f.path))
                .collect();
            assert_eq!(listed_names, truth_names);
            for file in &truth {
                let path = format!("{prefix}/v{v}/{}", file.path);
                let meta = listed.iter().find(|m| m.location.as_ref() == path).unwrap();
                assert_eq!(meta.size, file.size, "{path}");
                assert_eq!(meta.e_tag.as_deref(), Some(file.digest.as_str()), "{path}");
                let bytes = emu
                    .artifact_file_bytes(ENTITY, PROJECT_A, &label, &file.path)
                    .unwrap();
                assert_eq!(get_bytes(&store, &path).await, bytes, "{path}");
            }
        }

        // Aliases resolve on get/head and as a listing prefix, to the same objects.
        for (alias, v) in &collection.aliases {
            let aliased = format!("{prefix}/{alias}");
            let files = list_all(&store, &aliased).await;
            assert_eq!(
                files.len() as u64,
                emu.artifact_files(ENTITY, PROJECT_A, &format!("{}:v{v}", collection.name))
                    .unwrap()
                    .len() as u64
            );
            for meta in files {
                assert!(meta.location.as_ref().starts_with(&aliased));
                let versioned =
                    meta.location
                        .as_ref()
                        .replacen(&aliased, &format!("{prefix}/v{v}"), 1);
                let head = store.head(&p(&versioned)).await.unwrap();
                assert_eq!((head.size, &head.e_tag), (meta.size, &meta.e_tag));
                assert_eq!(
                    get_bytes(&store, meta.location.as_ref()).await,
                    get_bytes(&store, &versioned).await
                );
            }
        }
    }

    // One level inside a version: files and sub-directories.
    let v1 = format!("{base}/dataset/dataset-0/v1");
    let level = store.list_with_delimiter(Some(&p(&v1))).await.unwrap();
    assert_eq!(
        strings(&level.common_prefixes),
        [
            format!("{v1}/data"),
            format!("{v1}/large"),
            format!("{v1}/meta")
        ]
    );
    assert_eq!(
        level
            .objects
            .iter()
            .map(|m| m.location.to_string())
            .collect::<Vec<_>>(),
        [format!("{v1}/README.md")]
    );
    let data = store
        .list_with_delimiter(Some(&p(&format!("{v1}/data"))))
        .await
        .unwrap();
    assert_eq!(data.objects.len(), 2);

    // The recursive listing of the project includes every artifact file once.
    let all = list_all(&store, &format!("{ENTITY}/{PROJECT_A}")).await;
    let artifact_files: usize = emu
        .artifact_collections(ENTITY, PROJECT_A)
        .iter()
        .flat_map(|c| c.versions.iter().map(move |v| format!("{}:v{v}", c.name)))
        .map(|label| emu.artifact_files(ENTITY, PROJECT_A, &label).unwrap().len())
        .sum();
    assert_eq!(
        all.iter()
            .filter(|m| m.location.as_ref().starts_with(&base))
            .count(),
        artifact_files
    );

    // Paths that name nothing: a wrong type, a missing version, alias or file.
    for missing in [
        format!("{base}/model/dataset-0/v0/README.md"),
        format!("{base}/dataset/dataset-0/v9/README.md"),
        format!("{base}/dataset/dataset-0/no-such-alias/README.md"),
        format!("{base}/dataset/dataset-0/v0/nope.txt"),
        format!("{base}/dataset/no-such-collection/v0/README.md"),
        format!("{base}/dataset/dataset-0/v0"),
    ] {
        let err = store.head(&p(&missing)).await.unwrap_err();
        assert!(
            matches!(err, object_store::Error::NotFound { .. }),
            "{missing}: {err}"
        );
        assert!(list_all(&store, &format!("{missing}/x")).await.is_empty());
    }
    assert!(
        list_all(&store, &format!("{base}/model/dataset-0"))
            .await
            .is_empty()
    );

    // Artifacts are immutable, even on a writable store.
    let writable = builder(&emu).with_writes(true).build();
    let err = writable
        .put(&p(&format!("{v1}/README.md")), PutPayload::from("x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, object_store::Error::PermissionDenied { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn artifact_ranges_and_api_calls() {
    let emu = emulator();
    let store = store(&emu);
    let path =
        format!("{ENTITY}/{PROJECT_A}/artifacts/dataset/dataset-0/latest/large/shard-000.bin");
    let label = "dataset-0:latest";
    let truth = emu
        .artifact_file_bytes(ENTITY, PROJECT_A, label, "large/shard-000.bin")
        .unwrap();

    // Cold: server features (once per client), the collection's type, the file, the bytes.
    emu.reset_counters();
    let bytes = get_range(&store, &path, GetRange::Bounded(100_000..300_000)).await;
    assert_eq!(bytes, truth[100_000..300_000]);
    let c = emu.counters();
    assert!(c.total.requests <= 4, "{:?}", emu.requests());
    assert_eq!(
        c.operation("ArtifactMembershipFiles"),
        1,
        "{:?}",
        c.by_operation
    );
    assert_eq!(c.route(RouteKind::SignedDownload), 1);
    assert_eq!(c.by_route[&RouteKind::SignedDownload].bytes_sent, 200_000);

    // Warm (within the cache TTL): the bytes only; a head costs nothing.
    emu.reset_counters();
    let tail = get_range(&store, &path, GetRange::Suffix(1000)).await;
    assert_eq!(tail, truth[truth.len() - 1000..]);
    assert_eq!(
        store.head(&p(&path)).await.unwrap().size,
        truth.len() as u64
    );
    let c = emu.counters();
    assert_eq!(
        (c.total.requests, c.total.bytes_sent),
        (1, 1000),
        "{:?}",
        emu.requests()
    );
}
