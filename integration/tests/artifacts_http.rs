//! Artifacts over the wire without the SDK: the write path as wandb-core drives it (including a
//! multipart upload and content deduplication), reads with pagination, filters and order,
//! signed `directUrl`s (no credentials, Range, expiry → 403), the authenticated `/artifactsV2`
//! route, and the Rust creation/inspection API with persistence across a restart.

mod support;

use std::time::Duration;

use base64::Engine as _;
use md5::Digest as _;
use serde_json::{Value, json};
use support::TEST_KEY;
use support::gql::Gql;
use wandb_emulator::{Emulator, EmulatorConfig, Listener, NewArtifactVersion, RouteKind, SeedSpec};

const CREATE_ARTIFACT: &str = "mutation CreateArtifact($input: CreateArtifactInput!) {
  createArtifact(input: $input) { artifact { id state artifactSequence { latestArtifact { id } } } } }";

const CREATE_MANIFEST: &str = "mutation CreateArtifactManifest($artifactID: ID!, $baseArtifactID: ID,
  $name: String!, $digest: String!, $entityName: String!, $projectName: String!, $runName: String!,
  $manifestType: ArtifactManifestType!, $includeUpload: Boolean!) {
  createArtifactManifest(input: {artifactID: $artifactID, baseArtifactID: $baseArtifactID, name: $name,
    digest: $digest, entityName: $entityName, projectName: $projectName, runName: $runName,
    type: $manifestType}) {
    artifactManifest { id file { id uploadUrl @include(if: $includeUpload)
      uploadHeaders @include(if: $includeUpload) } } } }";

const CREATE_FILES: &str = "mutation CreateArtifactFiles($input: CreateArtifactFilesInput!) {
  createArtifactFiles(input: $input) { files { edges { node { storagePath uploadUrl uploadHeaders
    uploadMultipartUrls { uploadID uploadUrlParts { partNumber uploadUrl } } artifact { id } } } } } }";

const COMPLETE_MULTIPART: &str = "mutation CompleteMultipartUploadArtifact(
  $completeMultipartAction: CompleteMultipartAction!, $completedParts: [UploadPartsInput!]!,
  $artifactID: ID!, $storagePath: String!, $uploadID: String!) {
  completeMultipartUploadArtifact(input: {completeMultipartAction: $completeMultipartAction,
    completedParts: $completedParts, artifactID: $artifactID, storagePath: $storagePath,
    uploadID: $uploadID}) { digest } }";

const COMMIT: &str = "mutation CommitArtifact($artifactID: ID!) {
  commitArtifact(input: {artifactID: $artifactID}) { artifact { id digest } } }";

const MEMBERSHIP: &str =
    "query ArtifactMembershipByName($entity: String!, $project: String!, $name: String!,
  $includeAliases: Boolean = true) {
  project(name: $project, entityName: $entity) { artifactCollectionMembership(name: $name) {
    __typename id versionIndex aliases { alias }
    artifactCollection { __typename name }
    artifact { __typename id versionIndex state size digest digestAlgorithm fileCount
      ttlDurationSeconds ttlIsInherited tags { name } artifactType { name }
      artifactSequence { __typename name } currentManifest { file { directUrl } }
      aliases @include(if: $includeAliases) { alias } } } } }";

const FILES_PAGE: &str = "query ArtifactMembershipFiles($entity: String!, $project: String!,
  $collection: String!, $alias: String!, $fileNames: [String!], $cursor: String, $perPage: Int = 50) {
  project(name: $project, entityName: $entity) { artifactCollection(name: $collection) { __typename
    artifactMembership(aliasName: $alias) { files(names: $fileNames, after: $cursor, first: $perPage) {
      totalCount pageInfo { __typename endCursor hasNextPage }
      edges { node { __typename id name: displayName url sizeBytes storagePath digest md5 directUrl } } } } } } }";

const VERSIONS: &str = "query ProjectArtifacts($entity: String!, $project: String!, $type: String!,
  $collection: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString) {
  project(entityName: $entity, name: $project) { artifactType(name: $type) {
    artifactCollection(name: $collection) { __typename
      artifacts(after: $cursor, first: $perPage, order: $order, filters: $filters) {
        totalCount pageInfo { endCursor hasNextPage } edges { version node { id state } } } } } } }";

fn b64md5(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(bytes))
}

fn hexmd5(bytes: &[u8]) -> String {
    md5::Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The artifact digest, spelled out independently of the emulator.
fn artifact_digest(entries: &[(&str, &[u8])]) -> String {
    let mut sorted: Vec<_> = entries.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut text = String::from("wandb-artifact-manifest-v1\n");
    for (path, bytes) in sorted {
        text.push_str(&format!("{path}:{}\n", b64md5(bytes)));
    }
    hexmd5(text.as_bytes())
}

fn manifest_json(entries: &[(&str, &[u8], &str)]) -> String {
    let contents: serde_json::Map<String, Value> = entries
        .iter()
        .map(|(p, b, birth)| {
            (
                p.to_string(),
                json!({"digest": b64md5(b), "size": b.len(), "birthArtifactID": birth}),
            )
        })
        .collect();
    json!({"version": 1, "storagePolicy": "wandb-storage-policy-v1",
           "storagePolicyConfig": {"storageLayout": "V2"}, "contents": contents})
    .to_string()
}

async fn put(gql: &Gql, url: &str, body: Vec<u8>) -> reqwest::Response {
    gql.http.put(url).body(body).send().await.expect("PUT")
}

fn create_input(digest: &str, aliases: &[&str]) -> Value {
    json!({"input": {
        "artifactTypeName": "dataset", "artifactCollectionName": "raw", "artifactCollectionNames": null,
        "entityName": "alice", "projectName": "p", "runName": null, "description": "d",
        "digest": digest, "digestAlgorithm": "MANIFEST_MD5", "labels": null,
        "aliases": aliases.iter().map(|a| json!({"alias": a, "artifactCollectionName": "raw"})).collect::<Vec<_>>(),
        "metadata": "{\"k\": 1}", "clientID": "client-1", "sequenceClientID": "seq-1",
        "enableDigestDeduplication": true, "historyStep": null, "distributedID": null,
        "storageRegion": null, "ttlDurationSeconds": null, "clientMutationId": null}})
}

fn file_spec(artifact: &str, manifest: &str, name: &str, bytes: &[u8], parts: Value) -> Value {
    json!({"artifactID": artifact, "artifactManifestID": manifest, "name": name,
           "md5": b64md5(bytes), "mimetype": null, "uploadPartsInput": parts})
}

async fn upload_manifest(gql: &Gql, artifact: &str, json_text: &str) {
    let vars = |digest: &str, include: bool| {
        json!({"artifactID": artifact, "baseArtifactID": null, "name": "wandb_manifest.json",
               "digest": digest, "entityName": "alice", "projectName": "p", "runName": "r1",
               "manifestType": "FULL", "includeUpload": include})
    };
    gql.data(CREATE_MANIFEST, vars("", false)).await;
    let m = gql
        .data(CREATE_MANIFEST, vars(&b64md5(json_text.as_bytes()), true))
        .await;
    let url = m["createArtifactManifest"]["artifactManifest"]["file"]["uploadUrl"]
        .as_str()
        .expect("manifest upload url");
    let resp = put(gql, url, json_text.as_bytes().to_vec()).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_path_multipart_dedup_and_reads() {
    let emu = Emulator::start_with(EmulatorConfig::default().api_key(TEST_KEY).entity("alice"))
        .expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    let small = b"small file\n".to_vec();
    let part1 = vec![7u8; 1000];
    let part2 = b"tail of the big file".to_vec();
    let big: Vec<u8> = [part1.clone(), part2.clone()].concat();
    let digest = artifact_digest(&[("small.txt", &small), ("deep/dir/big.bin", &big)]);

    // createArtifact → PENDING, no latest yet.
    let created = gql
        .data(CREATE_ARTIFACT, create_input(&digest, &["latest", "gold"]))
        .await;
    let art = &created["createArtifact"]["artifact"];
    assert_eq!(art["state"], "PENDING");
    assert!(art["artifactSequence"]["latestArtifact"].is_null());
    let id = art["id"].as_str().expect("id").to_string();
    let m = gql
        .data(
            CREATE_MANIFEST,
            json!({"artifactID": id, "baseArtifactID": null, "name": "wandb_manifest.json",
               "digest": "", "entityName": "alice", "projectName": "p", "runName": "r1",
               "manifestType": "FULL", "includeUpload": false}),
        )
        .await;
    let manifest_id = m["createArtifactManifest"]["artifactManifest"]["id"]
        .as_str()
        .expect("manifest id")
        .to_string();

    // Two files: one plain, one multipart in two parts.
    let parts = json!([{"partNumber": 1, "hexMD5": hexmd5(&part1)}, {"partNumber": 2, "hexMD5": hexmd5(&part2)}]);
    let files = gql
        .data(
            CREATE_FILES,
            json!({"input": {"storageLayout": "V2", "digestAlgorithm": "MANIFEST_MD5",
                "cloudRegionID": null, "clientMutationId": null, "artifactFiles": [
                    file_spec(&id, &manifest_id, "small.txt", &small, Value::Null),
                    file_spec(&id, &manifest_id, "deep/dir/big.bin", &big, parts)]}}),
        )
        .await;
    let edges = files["createArtifactFiles"]["files"]["edges"]
        .as_array()
        .expect("edges");
    assert_eq!(edges.len(), 2);
    let small_node = &edges[0]["node"];
    assert_eq!(small_node["artifact"]["id"], id.as_str(), "born here");
    // A wrong body is refused (its MD5 does not match the announcement).
    let url = small_node["uploadUrl"].as_str().expect("upload url");
    assert_eq!(put(&gql, url, b"wrong".to_vec()).await.status(), 404);
    assert_eq!(put(&gql, url, small.clone()).await.status(), 200);
    // Parts answer their MD5 as the ETag; completion checks them.
    let mp = &edges[1]["node"]["uploadMultipartUrls"];
    let mut etags = Vec::new();
    for (i, part) in [&part1, &part2].into_iter().enumerate() {
        let url = mp["uploadUrlParts"][i]["uploadUrl"]
            .as_str()
            .expect("part url");
        let resp = put(&gql, url, part.clone()).await;
        assert_eq!(resp.status(), 200);
        let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
        assert_eq!(etag, format!("\"{}\"", hexmd5(part)));
        etags.push(json!({"partNumber": i + 1, "hexMD5": etag}));
    }
    let done = gql
        .data(
            COMPLETE_MULTIPART,
            json!({"completeMultipartAction": "Complete", "completedParts": etags, "artifactID": id,
               "storagePath": edges[1]["node"]["storagePath"], "uploadID": mp["uploadID"]}),
        )
        .await;
    assert_eq!(
        done["completeMultipartUploadArtifact"]["digest"],
        b64md5(&big)
    );
    let manifest = manifest_json(&[("small.txt", &small, &id), ("deep/dir/big.bin", &big, &id)]);
    upload_manifest(&gql, &id, &manifest).await;
    let committed = gql.data(COMMIT, json!({"artifactID": id})).await;
    assert_eq!(
        committed["commitArtifact"]["artifact"]["digest"],
        digest.as_str()
    );

    // Read back by alias; the membership carries the SDK's required fields and typenames.
    let read = |name: &str| {
        gql.data(
            MEMBERSHIP,
            json!({"entity": "alice", "project": "p", "name": name}),
        )
    };
    let mem = read("raw:gold").await;
    let mem = &mem["project"]["artifactCollectionMembership"];
    assert_eq!(mem["__typename"], "ArtifactCollectionMembership");
    assert_eq!(mem["artifactCollection"]["__typename"], "ArtifactSequence");
    assert_eq!(
        mem["artifact"]["artifactSequence"]["__typename"],
        "ArtifactSequence"
    );
    assert_eq!(mem["versionIndex"], 0);
    let a = &mem["artifact"];
    // `@include(if: $includeAliases)` honours the variable's declared default.
    assert_eq!(
        a["aliases"],
        json!([{"alias": "gold"}, {"alias": "latest"}])
    );
    assert_eq!(
        (
            a["state"].clone(),
            a["digestAlgorithm"].clone(),
            a["fileCount"].clone()
        ),
        (json!("COMMITTED"), json!("MANIFEST_MD5"), json!(2))
    );
    assert_eq!(a["size"], json!(small.len() + big.len()));
    assert_eq!(
        (a["ttlDurationSeconds"].clone(), a["ttlIsInherited"].clone()),
        (json!(-2), json!(true))
    );
    for name in ["raw:latest", "raw:v0", "raw"] {
        assert_eq!(
            read(name).await["project"]["artifactCollectionMembership"]["artifact"]["id"],
            id.as_str(),
            "{name}"
        );
    }
    assert!(read("raw:v1").await["project"]["artifactCollectionMembership"].is_null());
    assert!(read("nope:latest").await["project"]["artifactCollectionMembership"].is_null());

    // The manifest's directUrl serves exactly what was uploaded, without credentials.
    let murl = a["currentManifest"]["file"]["directUrl"]
        .as_str()
        .expect("manifest url");
    assert!(murl.starts_with(emu.direct_base_url()));
    let got = gql.get(murl, false, &[]).await;
    assert_eq!(got.status(), 200);
    assert_eq!(got.text().await.expect("body"), manifest);

    // Files, one per page, following pageInfo.endCursor.
    let mut cursor = Value::Null;
    let mut listed = Vec::new();
    loop {
        let page = gql
            .data(
                FILES_PAGE,
                json!({"entity": "alice", "project": "p", "collection": "raw", "alias": "v0",
                       "cursor": cursor, "perPage": 1}),
            )
            .await;
        let files = &page["project"]["artifactCollection"]["artifactMembership"]["files"];
        assert_eq!(files["totalCount"], 2);
        assert_eq!(files["pageInfo"]["__typename"], "PageInfo");
        for e in files["edges"].as_array().expect("edges") {
            listed.push(e["node"].clone());
        }
        if files["pageInfo"]["hasNextPage"] != true {
            break;
        }
        cursor = files["pageInfo"]["endCursor"].clone();
    }
    let names: Vec<&str> = listed
        .iter()
        .map(|n| n["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["deep/dir/big.bin", "small.txt"]);
    let big_node = &listed[0];
    assert_eq!(big_node["__typename"], "File");
    assert_eq!(big_node["sizeBytes"], json!(big.len()));
    assert_eq!(big_node["md5"], b64md5(&big));
    assert_eq!(big_node["digest"], b64md5(&big));
    // Exact names.
    let only = gql
        .data(
            FILES_PAGE,
            json!({"entity": "alice", "project": "p", "collection": "raw", "alias": "latest",
                   "fileNames": ["small.txt"]}),
        )
        .await;
    assert_eq!(
        only["project"]["artifactCollection"]["artifactMembership"]["files"]["totalCount"],
        1
    );

    // directUrl: no credentials, Range, then expiry → 403.
    let direct = big_node["directUrl"].as_str().expect("directUrl");
    emu.reset_counters();
    let whole = gql.get(direct, false, &[]).await;
    assert_eq!(whole.bytes().await.expect("bytes").to_vec(), big);
    let ranged = gql.get(direct, false, &[("Range", "bytes=995-1004")]).await;
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.bytes().await.expect("bytes").to_vec(),
        big[995..1005].to_vec()
    );
    // The authenticated url (/artifactsV2/…) needs the key.
    let url = big_node["url"].as_str().expect("url");
    assert!(url.contains("/artifactsV2/default/alice/p/raw/"), "{url}");
    assert_eq!(gql.get(url, false, &[]).await.status(), 401);
    let authed = gql.get(url, true, &[("Range", "bytes=0-3")]).await;
    assert_eq!(authed.status(), 206);
    assert_eq!(
        authed.bytes().await.expect("bytes").to_vec(),
        big[..4].to_vec()
    );
    let log = emu.requests();
    assert!(
        log.iter()
            .filter(|r| r.listener == Listener::Direct)
            .all(|r| r.kind == RouteKind::SignedDownload && !r.authorization_present)
    );
    assert_eq!(emu.counters().route(RouteKind::SignedDownload), 2);
    assert_eq!(emu.counters().route(RouteKind::Download), 2);
    emu.advance_clock(Duration::from_secs(3601));
    assert_eq!(gql.get(direct, false, &[]).await.status(), 403);

    // Same digest again: the committed version comes back (and gains the new alias).
    let again = gql
        .data(CREATE_ARTIFACT, create_input(&digest, &["latest", "again"]))
        .await;
    assert_eq!(again["createArtifact"]["artifact"]["id"], id.as_str());
    assert_eq!(again["createArtifact"]["artifact"]["state"], "COMMITTED");
    assert_eq!(
        read("raw:again").await["project"]["artifactCollectionMembership"]["artifact"]["id"],
        id.as_str()
    );

    // A second version: the unchanged small file needs no upload and keeps v0 as birth.
    let changed = b"changed".to_vec();
    let digest2 = artifact_digest(&[("small.txt", &small), ("other.txt", &changed)]);
    let c2 = gql
        .data(CREATE_ARTIFACT, create_input(&digest2, &["latest"]))
        .await;
    let id2 = c2["createArtifact"]["artifact"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(
        c2["createArtifact"]["artifact"]["artifactSequence"]["latestArtifact"]["id"],
        id.as_str()
    );
    let files = gql
        .data(
            CREATE_FILES,
            json!({"input": {"storageLayout": "V2", "artifactFiles": [
                file_spec(&id2, &manifest_id, "small.txt", &small, Value::Null),
                file_spec(&id2, &manifest_id, "other.txt", &changed, Value::Null)]}}),
        )
        .await;
    let edges = &files["createArtifactFiles"]["files"]["edges"];
    assert!(
        edges[0]["node"]["uploadUrl"].is_null(),
        "stored content is not uploaded again"
    );
    assert_eq!(edges[0]["node"]["artifact"]["id"], id.as_str());
    // Committing before the other file and the manifest are uploaded fails.
    let (status, body) = gql
        .post(COMMIT, json!({"artifactID": id2}), "CommitArtifact")
        .await;
    assert_eq!(status, 400, "{body}");
    let url = edges[1]["node"]["uploadUrl"].as_str().expect("upload url");
    assert_eq!(put(&gql, url, changed.clone()).await.status(), 200);
    let manifest2 = manifest_json(&[("small.txt", &small, &id), ("other.txt", &changed, &id2)]);
    upload_manifest(&gql, &id2, &manifest2).await;
    gql.data(COMMIT, json!({"artifactID": id2})).await;

    // Versions: filters and order.
    let versions = |order: Value, filters: Value| {
        gql.data(
            VERSIONS,
            json!({"entity": "alice", "project": "p", "type": "dataset", "collection": "raw",
                   "order": order, "filters": filters}),
        )
    };
    let list = |v: &Value| -> Vec<String> {
        v["project"]["artifactType"]["artifactCollection"]["artifacts"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["version"].as_str().unwrap_or("").to_string())
            .collect()
    };
    let committed = json!("{\"state\": \"COMMITTED\"}");
    assert_eq!(
        list(&versions(Value::Null, committed.clone()).await),
        ["v1", "v0"]
    );
    assert_eq!(
        list(&versions(json!("versionIndex"), committed.clone()).await),
        ["v0", "v1"]
    );
    assert_eq!(
        list(&versions(Value::Null, json!("{\"aliases.alias\": \"gold\"}")).await),
        ["v0"]
    );
    // Unknown filter fields are an error (200 with `errors`, which fails the SDK's call).
    let (_, body) = gql
        .post(
            VERSIONS,
            json!({"entity": "alice", "project": "p", "type": "dataset", "collection": "raw",
                   "filters": "{\"colour\": 1}"}),
            "",
        )
        .await;
    let message = body["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("colour"), "{body}");
    assert_eq!(
        emu.artifact_versions("alice", "p", "raw")
            .iter()
            .map(|v| (v.version, v.aliases.clone()))
            .collect::<Vec<_>>(),
        [
            (Some(0), vec!["again".to_string(), "gold".into()]),
            (Some(1), vec!["latest".to_string()])
        ]
    );
}

#[test]
fn rust_api_seeding_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = || {
        EmulatorConfig::default()
            .api_key(TEST_KEY)
            .entity("e")
            .data_dir(dir.path())
            .seed(
                SeedSpec::new("e", "seeded")
                    .runs(2)
                    .steps(4)
                    .files(3)
                    .bigfile(0)
                    .artifacts(3)
                    .artifact_bigfile(3 << 20),
            )
    };
    let (digest, big_md5) = {
        let emu = Emulator::start_with(config()).expect("emulator");
        emu.create_run(&wandb_emulator::RunKey::new("e", "api", "r1"));
        let v = emu
            .create_artifact_version(
                NewArtifactVersion::new("e", "api", "model", "net")
                    .file("weights/a.bin", vec![1u8, 2, 3])
                    .generated_file("weights/huge.bin", 42, 5 << 20)
                    .alias("best")
                    .run("r1"),
            )
            .expect("create");
        assert_eq!(
            (v.version, v.aliases.clone()),
            (Some(0), vec!["best".to_string(), "latest".into()])
        );
        assert_eq!(v.size, 3 + (5 << 20));
        let again = emu
            .create_artifact_version(
                NewArtifactVersion::new("e", "api", "model", "net")
                    .file("weights/a.bin", vec![1u8, 2, 3])
                    .generated_file("weights/huge.bin", 42, 5 << 20),
            )
            .expect("create again");
        assert!(
            again.deduplicated && again.id == v.id,
            "same content → same version"
        );
        emu.use_artifact(
            &wandb_emulator::RunKey::new("e", "api", "r1"),
            "e",
            "api",
            "net:best",
        )
        .expect("use");
        let files = emu.artifact_files("e", "api", "net:best").expect("files");
        let huge = files
            .iter()
            .find(|f| f.path == "weights/huge.bin")
            .expect("huge");
        (v.digest, huge.md5.clone())
        // Dropping the emulator saves the snapshot.
    };
    let emu = Emulator::start_with(config()).expect("restart");
    let v = emu
        .artifact_version("e", "api", "net:latest")
        .expect("survives the restart");
    assert_eq!(v.digest, digest);
    assert_eq!(
        emu.artifact_file_bytes("e", "api", "net:v0", "weights/a.bin")
            .map(|b| b.to_vec()),
        Some(vec![1, 2, 3])
    );
    let huge = emu
        .artifact_file_bytes("e", "api", "net:best", "weights/huge.bin")
        .expect("generated bytes");
    assert_eq!(huge.len(), 5 << 20);
    assert_eq!(Some(b64md5(&huge)), big_md5);
    assert_eq!(
        emu.run_input_artifacts(&wandb_emulator::RunKey::new("e", "api", "r1"))
            .len(),
        1
    );
    // The seed spec was applied once: still three collections, not six.
    let colls = emu.artifact_collections("e", "seeded");
    assert_eq!(
        colls
            .iter()
            .map(|c| (c.name.as_str(), c.versions.len()))
            .collect::<Vec<_>>(),
        [("dataset-0", 2), ("model-1", 3), ("dataset-2", 4)]
    );
    let manifest = emu
        .artifact_manifest("e", "seeded", "dataset-0:latest")
        .expect("manifest");
    let parsed: Value = serde_json::from_str(&manifest).expect("json");
    assert_eq!(parsed["contents"]["large/shard-000.bin"]["size"], 3 << 20);
    assert_eq!(emu.artifact_types("e", "seeded"), ["dataset", "model"]);
}
