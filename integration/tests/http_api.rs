//! The emulator over raw HTTP: auth, GraphQL semantics (listing, filters, history, write path),
//! downloads with ranges and signed URLs. Fault injection and persistence are in `faults.rs`
//! and `persistence.rs`.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::TEST_KEY;
use support::gql::{Gql, RUN_FIELDS};
use wandb_emulator::{Emulator, EmulatorConfig, Listener, RouteKind, RunKey, SeedSpec};

fn emulator(seeds: Vec<SeedSpec>) -> (Emulator, Gql) {
    let mut config = EmulatorConfig::default().api_key(TEST_KEY).entity("alice");
    config.seeds = seeds;
    let emu = Emulator::start_with(config).expect("emulator");
    let gql = Gql::new(emu.base_url(), TEST_KEY);
    (emu, gql)
}

#[tokio::test]
async fn auth_schemes_errors_and_operation_names() {
    let (emu, gql) = emulator(vec![]);
    let url = format!("{}/graphql", emu.base_url());
    let viewer = json!({"query": "query Viewer { viewer { id entity username } }", "operationName": "Viewer"}).to_string();
    let send = |auth: Option<String>| {
        let mut req = gql
            .http
            .post(&url)
            .header("Content-Type", "application/json")
            .body(viewer.clone());
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    for auth in [
        None,
        Some("Basic bm9wZTpub3Bl".to_string()),
        Some("Bearer wrong".to_string()),
        Some("Token x".into()),
    ] {
        let resp = send(auth.clone()).await.expect("request");
        assert_eq!(resp.status(), 401, "{auth:?}");
        let body: Value = resp.json().await.expect("json");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    use base64::Engine as _;
    let any_user = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("someone:{TEST_KEY}"))
    );
    for auth in [any_user, format!("Bearer {TEST_KEY}")] {
        let resp = send(Some(auth)).await.expect("request");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("json");
        assert_eq!(body["data"]["viewer"]["entity"], "alice");
    }

    // GetViewer needs ApiKey, deletedAt and apiKeys; key labels never reveal keys.
    let data = gql
        .data(
            "query GetViewer { viewer { ...UserFragment } }
             fragment ApiKeyFragment on ApiKey { id name description }
             fragment UserFragment on User { id name username email admin flags entity deletedAt
               apiKeys { edges { node { ...ApiKeyFragment } } } teams { edges { node { name } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["viewer"]["apiKeys"]["edges"].as_array().map(Vec::len),
        Some(1)
    );
    assert!(!data.to_string().contains("TestKey"));

    // operationName "" is treated as absent; the counters take the name from the document.
    emu.reset_counters();
    let (status, body) = gql
        .post(
            "#graphql\n query GetDefaultEntity { viewer { id entity } }",
            json!({}),
            "",
        )
        .await;
    assert_eq!(
        (status, body["data"]["viewer"]["entity"].clone()),
        (200, json!("alice"))
    );
    let (status, body) = gql
        .post(
            "query { serverInfo { features { name isEnabled } } }",
            json!({}),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gql
        .post("query Broken { viewer { nope } }", json!({}), "")
        .await;
    assert_eq!(
        status, 400,
        "validation errors with null data are 400: {body}"
    );
    assert!(body["data"].is_null() && body["errors"][0]["message"].as_str().is_some());
    let resp = gql
        .http
        .post(&url)
        .header("Authorization", gql.basic())
        .body("{not json")
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let counters = emu.counters();
    assert_eq!(
        counters.operation("GetDefaultEntity"),
        1,
        "{:?}",
        counters.by_operation
    );
    assert_eq!(counters.operation("Broken"), 1);
    assert_eq!(
        counters.operation(""),
        2,
        "the anonymous operation and the unparsable body"
    );
    // /sdk/otel answers 200 without credentials.
    let resp = gql
        .http
        .post(format!("{}/sdk/otel/v1/metrics", emu.base_url()))
        .send()
        .await
        .expect("otel");
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn runs_listing_filters_order_and_pagination() {
    let spec = SeedSpec::new("alice", "proj")
        .runs(23)
        .steps(5)
        .keys(6)
        .files(1)
        .bigfile(0);
    let (emu, gql) = emulator(vec![spec]);
    let created_order: Vec<String> = emu
        .runs("alice", "proj")
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(created_order.len(), 23);
    let query = "query Runs($project: String!, $entity: String!, $cursor: String, $perPage: Int = 50, $order: String, $filters: JSONString) {
        project(name: $project, entityName: $entity) { internalId runCount(filters: $filters) readOnly
          runs(filters: $filters, after: $cursor, first: $perPage, order: $order) {
            edges { node { projectId ...LightweightRunFragment } cursor } pageInfo { endCursor hasNextPage } } } }
        fragment LightweightRunFragment on Run { id tags name displayName sweepName state group jobType commit readOnly
          createdAt heartbeatAt description notes historyLineCount user { name username } }";
    let list = |filters: Value, order: &'static str| {
        let gql = &gql;
        async move {
            let mut names = Vec::new();
            let mut cursor = Value::Null;
            let mut count = None;
            loop {
                let vars = json!({"project": "proj", "entity": "alice", "cursor": cursor, "perPage": 5,
                                  "order": order, "filters": filters.to_string()});
                let data = gql.data(query, vars).await;
                count = count.or(data["project"]["runCount"].as_u64());
                let runs = &data["project"]["runs"];
                let edges = runs["edges"].as_array().expect("edges");
                names.extend(
                    edges
                        .iter()
                        .map(|e| e["node"]["name"].as_str().expect("name").to_string()),
                );
                if !runs["pageInfo"]["hasNextPage"]
                    .as_bool()
                    .expect("hasNextPage")
                {
                    break;
                }
                cursor = edges.last().expect("non-empty page")["cursor"].clone();
            }
            (count.expect("runCount"), names)
        }
    };
    let (count, names) = list(json!({}), "+created_at").await;
    assert_eq!((count, &names), (23, &created_order));
    let (_, names) = list(json!({}), "-created_at").await;
    assert_eq!(
        names,
        created_order.iter().rev().cloned().collect::<Vec<_>>()
    );
    // Seeded states: index ≡ 7 mod 10 running, ≡ 8 crashed, ≡ 9 failed.
    let (count, names) = list(json!({"state": "running"}), "+created_at").await;
    assert_eq!(count, 2);
    assert_eq!(names, [created_order[7].clone(), created_order[17].clone()]);
    let (count, _) = list(
        json!({"state": {"$in": ["crashed", "failed"]}}),
        "+created_at",
    )
    .await;
    assert_eq!(count, 4);
    // Seeded lr cycles [0.1, 0.01, 0.001, 0.0003] by index.
    let (count, names) = list(
        json!({"$and": [{"config.lr": {"$gte": 0.01}}, {"config.lr.value": {"$lt": 0.1}}]}),
        "+created_at",
    )
    .await;
    let expected: Vec<String> = created_order
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 == 1)
        .map(|(_, n)| n.clone())
        .collect();
    assert_eq!((count as usize, names), (expected.len(), expected));
    let (_, names) = list(json!({"config.optimizer.name": "sgd"}), "+created_at").await;
    assert_eq!(names.len(), (0..23).filter(|i| i % 3 == 1).count());
    let (count, _) = list(json!({"display_name": {"$regex": "^实验-"}}), "+created_at").await;
    assert_eq!(count as usize, (0..23).filter(|i| i % 7 == 3).count());
    let (count, _) = list(json!({"bogus": {"$exists": false}}), "+created_at").await;
    assert_eq!(count, 0, "unknown keys match nothing");
    let (_, by_name) = list(json!({}), "name").await;
    let mut sorted = created_order.clone();
    sorted.sort();
    assert_eq!(by_name, sorted);
    let (status, body) = gql
        .post(
            query,
            json!({"project": "proj", "entity": "alice", "filters": "{\"name\": {\"$bogus\": 1}}"}),
            "",
        )
        .await;
    assert!(
        status == 200
            && body["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| m.contains("$bogus")),
        "{body}"
    );
    // createdAt filters with the served timestamp format.
    let first = emu
        .run_info(&RunKey::new("alice", "proj", &created_order[10]))
        .expect("run");
    let (count, _) = list(
        json!({"createdAt": {"$gte": first.created_at}}),
        "+created_at",
    )
    .await;
    assert_eq!(count, 13);
    // Missing project → null; models lists projects with endCursor pagination.
    let data = gql
        .data(
            "query { project(name: \"nope\", entityName: \"alice\") { id } }",
            json!({}),
        )
        .await;
    assert!(data["project"].is_null());
    let data = gql
        .data(
            "query GetProjects($entity: String, $cursor: String, $perPage: Int = 50) { models(entityName: $entity, after: $cursor, first: $perPage) {
               pageInfo { __typename endCursor hasNextPage } edges { node { __typename id name entityName createdAt isBenchmark } } } }",
            json!({"entity": "alice", "perPage": 1}),
        )
        .await;
    assert_eq!(data["models"]["edges"][0]["node"]["name"], "proj");
    assert_eq!(data["models"]["pageInfo"]["__typename"], "PageInfo");
    assert_eq!(data["models"]["edges"][0]["node"]["__typename"], "Project");
}

const HISTORY_PAGE: &str = "query HistoryPage($entity: String!, $project: String!, $run: String!, $minStep: Int64!, $maxStep: Int64!, $pageSize: Int!) {
    project(name: $project, entityName: $entity) { run(name: $run) { history(minStep: $minStep, maxStep: $maxStep, samples: $pageSize) } } }";

#[tokio::test]
async fn history_fields_match_ground_truth() {
    let spec = SeedSpec::new("alice", "h")
        .runs(8)
        .steps(2000)
        .keys(8)
        .files(0)
        .bigfile(0);
    let (emu, gql) = emulator(vec![spec]);
    let runs = emu.runs("alice", "h");
    let run = &runs[0];
    let vars = |lo: i64, hi: i64, n: i64| json!({"entity": "alice", "project": "h", "run": run.name, "minStep": lo, "maxStep": hi, "pageSize": n});

    let data = gql.data(HISTORY_PAGE, vars(100, 300, 200)).await;
    let page: Vec<String> =
        serde_json::from_value(data["project"]["run"]["history"].clone()).expect("strings");
    assert_eq!(page, emu.history_rows_between(run, 100, 300).expect("rows"));
    assert!(page[7].contains("\"_step\":107"));
    assert!(
        page.iter().any(|r| r.contains("\"special\":NaN")),
        "bare NaN inside JSONString rows"
    );

    // Downsampling: at most `samples`, evenly spaced, first and last kept, deterministic.
    let data = gql.data(HISTORY_PAGE, vars(0, 2000, 50)).await;
    let sampled: Vec<String> =
        serde_json::from_value(data["project"]["run"]["history"].clone()).expect("strings");
    assert_eq!(sampled.len(), 50);
    assert!(sampled[0].starts_with("{\"_step\":0,") && sampled[49].starts_with("{\"_step\":1999,"));
    let again = gql.data(HISTORY_PAGE, vars(0, 2000, 50)).await;
    assert_eq!(again, data);
    let data = gql
        .data(
            "query RunFullHistory($project: String!, $entity: String!, $name: String!, $samples: Int) {
               project(name: $project, entityName: $entity) { run(name: $name) { history(samples: $samples) events(samples: $samples) } } }",
            json!({"project": "h", "entity": "alice", "name": run.name, "samples": 100}),
        )
        .await;
    assert_eq!(
        data["project"]["run"]["history"].as_array().map(Vec::len),
        Some(100)
    );

    // JSON-typed fields: sentinels, never bare tokens (the body parsed as strict JSON above).
    let spec =
        json!({"keys": ["special", "_step", "_step"], "minStep": 0, "maxStep": 49, "samples": 50})
            .to_string();
    let data = gql
        .data(
            "query SampledHistoryPage($entity: String!, $project: String!, $run: String!, $spec: JSONString!) {
               project(name: $project, entityName: $entity) { run(name: $run) { sampledHistory(specs: [$spec]) } } }",
            json!({"entity": "alice", "project": "h", "run": run.name, "spec": spec}),
        )
        .await;
    let rows = data["project"]["run"]["sampledHistory"][0]
        .as_array()
        .expect("rows")
        .clone();
    assert_eq!(
        rows.len(),
        50,
        "maxStep is inclusive in sampledHistory specs"
    );
    assert_eq!(rows[7], json!({"special": "NaN", "_step": 7}));
    assert_eq!(rows[19]["special"], "Infinity");
    assert_eq!(rows[33]["special"], "-Infinity");

    let data = gql
        .data(
            "query RunHistoryKeys($project: String!, $entity: String!, $name: String!) { project(name: $project, entityName: $entity) {
               run(name: $name) { historyKeys historyLineCount
                 parquetHistory(liveKeys: [\"_step\"]) { parquetUrls liveData }
                 p2: parquetHistory(liveKeys: [\"_step\", \"special\"]) { liveData } } } }",
            json!({"project": "h", "entity": "alice", "name": run.name}),
        )
        .await;
    let r = &data["project"]["run"];
    assert_eq!(r["historyKeys"]["lastStep"], 1999);
    assert_eq!(
        r["historyKeys"]["keys"]["special"]["typeCounts"],
        json!([{"type": "number", "count": 2000}])
    );
    assert_eq!(
        r["historyKeys"]["keys"]["métrique/α"]["typeCounts"][0]["count"],
        2000
    );
    assert_eq!(r["historyLineCount"], 2000);
    assert_eq!(r["parquetHistory"]["parquetUrls"], json!([]));
    let live = r["parquetHistory"]["liveData"]
        .as_array()
        .expect("liveData");
    assert_eq!(live.len(), 2000);
    assert_eq!(live[1999], json!({"_step": 1999}));
    assert_eq!(
        r["p2"]["liveData"][7],
        json!({"_step": 7, "special": "NaN"})
    );

    // Appending to a seeded running run: new rows served, counts and timestamps move.
    let running = &runs[7];
    let before = emu.run_info(running).expect("run");
    assert_eq!(before.state, "running");
    emu.advance_clock(Duration::from_secs(5));
    let new_rows: Vec<String> = (2000..2003)
        .map(|s| format!("{{\"_step\":{s},\"loss\":NaN,\"extra\":{{\"k\":{s}}}}}"))
        .collect();
    assert_eq!(
        emu.append_history(running, &new_rows).expect("append"),
        2003
    );
    let after = emu.run_info(running).expect("run");
    assert!(after.updated_at > before.updated_at && after.heartbeat_at > before.heartbeat_at);
    assert_eq!(after.last_step, Some(2002));
    let data = gql
        .data(HISTORY_PAGE, json!({"entity": "alice", "project": "h", "run": running.name, "minStep": 1999, "maxStep": 3000, "pageSize": 1001}))
        .await;
    let tail: Vec<String> =
        serde_json::from_value(data["project"]["run"]["history"].clone()).expect("strings");
    assert_eq!(tail.len(), 4);
    assert_eq!(&tail[1..], &new_rows[..]);
    let data = gql
        .data(
            &format!("query {{ project(name: \"h\", entityName: \"alice\") {{ run(name: \"{}\") {{ {RUN_FIELDS} }} }} }}", running.name),
            json!({}),
        )
        .await;
    let keys = &data["project"]["run"]["historyKeys"]["keys"];
    assert_eq!(
        keys["extra.k"]["typeCounts"],
        json!([{"type": "number", "count": 3}])
    );
    assert_eq!(keys["loss"]["typeCounts"][0]["count"], 2003);
    assert_eq!(
        data["project"]["run"]["updatedAt"],
        after.updated_at.as_str()
    );

    // A million-row seeded history is lazy: seeding and the last page are instant.
    let big = SeedSpec::new("alice", "big")
        .runs(1)
        .steps(1_000_000)
        .keys(20)
        .files(0)
        .bigfile(0);
    let started = std::time::Instant::now();
    let report = emu.seed(&big).expect("seed");
    let data = gql
        .data(HISTORY_PAGE, json!({"entity": "alice", "project": "big", "run": report.runs[0].name, "minStep": 999_000, "maxStep": 1_000_000, "pageSize": 1000}))
        .await;
    let last: Vec<String> =
        serde_json::from_value(data["project"]["run"]["history"].clone()).expect("strings");
    assert_eq!(last.len(), 1000);
    assert!(last[999].starts_with("{\"_step\":999999,"));
    eprintln!(
        "1,000,000-row run seeded and its last page served in {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn write_path_mutations_and_file_stream() {
    let (emu, gql) = emulator(vec![]);
    let upsert = "mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String,
        $displayName: String, $notes: String, $config: JSONString, $state: String, $tags: [String!], $summaryMetrics: JSONString) {
        upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity,
          displayName: $displayName, notes: $notes, config: $config, state: $state, tags: $tags, summaryMetrics: $summaryMetrics}) {
          bucket { id name displayName config sweepName project { id name entity { id name } } historyLineCount } inserted } }";
    let data = gql
        .data(upsert, json!({"name": "r1", "project": "p", "entity": null, "config": "{\"lr\":{\"value\":NaN}}", "tags": ["a"], "notes": "n1"}))
        .await;
    let bucket = &data["upsertBucket"]["bucket"];
    assert_eq!(data["upsertBucket"]["inserted"], true);
    assert_eq!(
        bucket["project"]["entity"]["name"], "alice",
        "null entity → the viewer's"
    );
    assert_eq!(bucket["historyLineCount"], 0);
    assert_eq!(
        bucket["config"], "{\"lr\":{\"value\":NaN}}",
        "JSONString kept verbatim"
    );
    let id = bucket["id"].as_str().expect("id").to_string();
    let data = gql
        .data(
            upsert,
            json!({"id": id, "displayName": "shown", "tags": ["b", "c"]}),
        )
        .await;
    assert_eq!(data["upsertBucket"]["inserted"], false);
    let key = RunKey::new("alice", "p", "r1");
    let info = emu.run_info(&key).expect("run");
    assert_eq!(
        (
            info.display_name.as_deref(),
            info.notes.as_deref(),
            info.tags.clone()
        ),
        (
            Some("shown"),
            Some("n1"),
            vec!["b".to_string(), "c".to_string()]
        )
    );
    assert_eq!(info.state, "running");

    // Writes to another entity create it as one of the viewer's teams.
    gql.data(
        upsert,
        json!({"name": "t1", "project": "tp", "entity": "team-x"}),
    )
    .await;
    let data = gql
        .data(
            "query { viewer { teams { edges { node { name } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data["viewer"]["teams"]["edges"][0]["node"]["name"],
        "team-x"
    );

    // createRunFiles → unauthenticated PUT → listed with md5 → authenticated download.
    let data = gql
        .data(
            "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) {
               createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }",
            json!({"entity": "alice", "project": "p", "run": "r1", "files": ["dir/ü x.txt", "b.json"]}),
        )
        .await;
    assert_eq!(data["createRunFiles"]["runID"], id.as_str());
    let files = data["createRunFiles"]["files"]
        .as_array()
        .expect("files")
        .clone();
    assert_eq!(files.len(), 2);
    let upload_url = files[0]["uploadUrl"].as_str().expect("url");
    assert!(
        upload_url.starts_with(emu.base_url()),
        "absolute upload URL: {upload_url}"
    );
    let resp = gql
        .http
        .put(upload_url)
        .body("hello ü")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 200);
    let resp = gql
        .http
        .put(format!("{upload_url}x"))
        .body("tampered")
        .send()
        .await
        .expect("PUT");
    assert_eq!(resp.status(), 403);
    let data = gql
        .data(
            "mutation { markRunFilesUploaded(input: {entityName: \"alice\", projectName: \"p\", runName: \"r1\", files: [\"dir/ü x.txt\"]}) { success } }",
            json!({}),
        )
        .await;
    assert_eq!(data["markRunFilesUploaded"]["success"], true);
    let run_files = "query RunFiles($project: String!, $entity: String!, $name: String!, $fileCursor: String,
        $fileLimit: Int = 50, $fileNames: [String] = [], $upload: Boolean = false, $pattern: String) {
        project(name: $project, entityName: $entity) { internalId run(name: $name) { fileCount
          files(names: $fileNames, after: $fileCursor, first: $fileLimit, pattern: $pattern) {
            edges { node { id name url(upload: $upload) directUrl sizeBytes mimetype updatedAt md5 } cursor }
            pageInfo { endCursor hasNextPage } } } } }";
    let data = gql
        .data(
            run_files,
            json!({"project": "p", "entity": "alice", "name": "r1", "fileNames": []}),
        )
        .await;
    let node = data["project"]["run"]["files"]["edges"][0]["node"].clone();
    assert_eq!(
        (node["name"].as_str(), node["sizeBytes"].as_i64()),
        (Some("dir/ü x.txt"), Some(8))
    );
    assert_eq!(node["md5"], "AVPEK3a8N+M0l97jACIr0Q==");
    let resp = gql.get(node["url"].as_str().expect("url"), true, &[]).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.bytes().await.expect("bytes").as_ref(),
        "hello ü".as_bytes()
    );
    assert_eq!(
        gql.get(node["url"].as_str().expect("url"), false, &[])
            .await
            .status(),
        401
    );

    // file_stream: lines by offset (re-sent offsets overwrite), summary, console, completion.
    let fs_url = format!("{}/files/alice/p/r1/file_stream", emu.base_url());
    let post = |body: Value| {
        let gql = &gql;
        let fs_url = fs_url.clone();
        async move {
            let resp = gql
                .http
                .post(fs_url)
                .header("Authorization", gql.basic())
                .body(body.to_string())
                .send()
                .await
                .expect("POST");
            assert_eq!(resp.status(), 200);
            resp.json::<Value>().await.expect("json")
        }
    };
    post(json!({"files": {"wandb-history.jsonl": {"offset": 0, "content": ["{\"_step\":0,\"x\":1}", "{\"_step\":1,\"x\":Infinity}"]},
                          "output.log": {"offset": 0, "content": ["2026-01-01T00:00:00.000001 hi", "ERROR 2026-01-01T00:00:01.5 boom"]}}}))
        .await;
    post(json!({"files": {"wandb-history.jsonl": {"offset": 1, "content": ["{\"_step\":1,\"x\":-Infinity}", "{\"_step\":2,\"x\":3}"]},
                          "wandb-summary.json": {"offset": 0, "content": ["{\"x\":3,\"_step\":2}"]},
                          "wandb-events.jsonl": {"offset": 0, "content": ["{\"system.cpu\":5,\"_wandb\":true}"]}}}))
        .await;
    assert_eq!(
        emu.history_rows(&key).expect("rows"),
        [
            "{\"_step\":0,\"x\":1}",
            "{\"_step\":1,\"x\":-Infinity}",
            "{\"_step\":2,\"x\":3}"
        ]
    );
    let data = gql
        .data(
            "query { model(name: \"p\", entityName: \"alice\") { bucket(name: \"r1\", missingOk: true) { summaryMetrics historyLineCount eventsLineCount logLineCount historyTail systemMetrics
               logLines(last: 1) { edges { node { number level timestamp line } } } } } }",
            json!({}),
        )
        .await;
    let b = &data["model"]["bucket"];
    assert_eq!(
        (
            b["historyLineCount"].as_i64(),
            b["eventsLineCount"].as_i64(),
            b["logLineCount"].as_i64()
        ),
        (Some(3), Some(1), Some(2))
    );
    assert_eq!(b["summaryMetrics"], "{\"x\":3,\"_step\":2}");
    let tail: Vec<String> =
        serde_json::from_str(b["historyTail"].as_str().expect("tail")).expect("list");
    assert_eq!(
        tail.last().map(String::as_str),
        Some("{\"_step\":2,\"x\":3}")
    );
    assert_eq!(
        b["logLines"]["edges"][0]["node"],
        json!({"number": 1, "level": "error", "timestamp": "2026-01-01T00:00:01.5Z", "line": "boom"})
    );

    // stopRun → the next file_stream response says stopped; complete with exit code 1 → failed.
    let data = gql
        .data(
            "mutation StopRun($id: ID!) { stopRun(input: {id: $id}) { success } }",
            json!({"id": id}),
        )
        .await;
    assert_eq!(data["stopRun"]["success"], true);
    let resp = post(json!({"complete": true, "exitcode": 1})).await;
    assert_eq!(resp["stopped"], true);
    assert_eq!(emu.run_info(&key).expect("run").state, "failed");
    let data = gql
        .data("mutation UpdateRunState($input: UpdateRunStateInput!) { updateRunState(input: $input) { success } }", json!({"input": {"id": id, "state": "pending"}}))
        .await;
    assert_eq!(data["updateRunState"]["success"], true);
    let (_, body) = gql
        .post("mutation UpdateRunState($input: UpdateRunStateInput!) { updateRunState(input: $input) { success } }", json!({"input": {"id": id, "state": "finished"}}), "")
        .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("cannot change")),
        "{body}"
    );

    // deleteFiles by id, then deleteRun.
    let file_id = node["id"].as_str().expect("id");
    let data = gql
        .data("mutation deleteFiles($files: [ID!]!, $projectId: Int) { deleteFiles(input: {files: $files, projectId: $projectId}) { success } }", json!({"files": [file_id], "projectId": 1}))
        .await;
    assert_eq!(data["deleteFiles"]["success"], true);
    assert!(emu.run_info(&key).expect("run").files.is_empty());
    gql.data(
        "mutation DeleteRun($id: ID!) { deleteRun(input: {id: $id}) { clientMutationId } }",
        json!({"id": id}),
    )
    .await;
    let data = gql
        .data(
            "query { project(name: \"p\", entityName: \"alice\") { run(name: \"r1\") { id } } }",
            json!({}),
        )
        .await;
    assert!(data["project"]["run"].is_null());
    let resp = post_raw(&gql, &fs_url).await;
    assert_eq!(resp, 404, "file_stream for a deleted run");
}

async fn post_raw(gql: &Gql, url: &str) -> u16 {
    gql.http
        .post(url)
        .header("Authorization", gql.basic())
        .body("{}")
        .send()
        .await
        .expect("POST")
        .status()
        .as_u16()
}

#[tokio::test]
async fn downloads_ranges_and_signed_urls() {
    let spec = SeedSpec::new("alice", "f")
        .runs(2)
        .steps(3)
        .keys(4)
        .files(4)
        .bigfile(1 << 30);
    let (emu, gql) = emulator(vec![spec]);
    let run = emu.runs("alice", "f")[0].clone();
    let files_query = "query RunFiles($name: String!, $pattern: String) { project(name: \"f\", entityName: \"alice\") { run(name: $name) { fileCount
        files(pattern: $pattern, first: 50) { edges { node { name url directUrl sizeBytes mimetype } } } } } }";
    let data = gql
        .data(files_query, json!({"name": run.name, "pattern": "large/%"}))
        .await;
    assert_eq!(data["project"]["run"]["fileCount"], 5);
    let node = data["project"]["run"]["files"]["edges"][0]["node"].clone();
    let size = 1u64 << 30;
    assert_eq!(node["sizeBytes"].as_u64(), Some(size));
    let url = node["url"].as_str().expect("url").to_string();
    let direct = node["directUrl"].as_str().expect("directUrl").to_string();
    assert!(direct.starts_with(emu.direct_base_url()) && !emu.direct_base_url().eq(emu.base_url()));

    emu.reset_counters();
    let truth = |a: u64, b: u64| {
        emu.run_file_range(&run, "large/blob-1GiB.bin", a, b)
            .expect("range")
    };
    let resp = gql
        .get(&url, true, &[("Range", "bytes=1073741000-1073741823")])
        .await;
    assert_eq!(resp.status(), 206);
    assert_eq!(
        resp.headers()["content-range"],
        "bytes 1073741000-1073741823/1073741824"
    );
    assert_eq!(
        resp.bytes().await.expect("body"),
        truth(1_073_741_000, size)
    );
    let resp = gql.get(&direct, false, &[("Range", "bytes=-100")]).await;
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.expect("body"), truth(size - 100, size));
    let resp = gql
        .get(&direct, false, &[("Range", "bytes=1073741800-")])
        .await;
    assert_eq!(resp.bytes().await.expect("body"), truth(size - 24, size));
    let resp = gql
        .get(&direct, false, &[("Range", "bytes=2000000000-")])
        .await;
    assert_eq!(resp.status(), 416);
    assert_eq!(resp.headers()["content-range"], "bytes */1073741824");
    let head = gql
        .http
        .head(&url)
        .header("Authorization", gql.basic())
        .send()
        .await
        .expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], "1073741824");
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert!(head.headers().contains_key("etag"));
    let records = emu.requests();
    assert_eq!(
        records[0].bytes_sent, 824,
        "a ranged read transfers only the range"
    );
    assert!(
        records.iter().all(|r| r.bytes_sent < 1 << 20),
        "no request streamed the whole file"
    );
    assert!(
        records
            .iter()
            .filter(|r| r.listener == Listener::Direct)
            .all(|r| !r.authorization_present && r.kind == RouteKind::SignedDownload)
    );
    assert_eq!(
        gql.get(&url, false, &[]).await.status(),
        401,
        "url needs credentials"
    );

    // Small files: full downloads match, ETag is the MD5.
    let data = gql
        .data(files_query, json!({"name": run.name, "pattern": "%.json"}))
        .await;
    let meta = data["project"]["run"]["files"]["edges"][0]["node"].clone();
    let resp = gql
        .get(meta["directUrl"].as_str().expect("directUrl"), false, &[])
        .await;
    assert_eq!(resp.status(), 200);
    let etag = resp.headers()["etag"].to_str().expect("etag").to_string();
    let body = resp.bytes().await.expect("body");
    assert_eq!(
        body,
        emu.run_file_bytes(&run, "wandb-metadata.json")
            .expect("bytes")
    );
    use md5::Digest as _;
    assert_eq!(etag, format!("\"{:x}\"", md5::Md5::digest(&body)));

    // Signed URLs expire after the TTL (403), fresh ones work, revocation and tampering fail.
    emu.set_signed_url_ttl(Duration::from_secs(60));
    let data = gql
        .data(files_query, json!({"name": run.name, "pattern": "%.json"}))
        .await;
    let short = data["project"]["run"]["files"]["edges"][0]["node"]["directUrl"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(gql.get(&short, false, &[]).await.status(), 200);
    emu.advance_clock(Duration::from_secs(61));
    let expired = gql.get(&short, false, &[]).await;
    assert_eq!(expired.status(), 403);
    assert!(expired.text().await.expect("body").contains("expired"));
    let data = gql
        .data(files_query, json!({"name": run.name, "pattern": "%.json"}))
        .await;
    let fresh = data["project"]["run"]["files"]["edges"][0]["node"]["directUrl"]
        .as_str()
        .expect("url")
        .to_string();
    assert_eq!(gql.get(&fresh, false, &[]).await.status(), 200);
    assert_eq!(
        gql.get(&fresh.replace("sig=", "sig=0"), false, &[])
            .await
            .status(),
        403
    );
    emu.revoke_signed_urls();
    assert_eq!(gql.get(&fresh, false, &[]).await.status(), 403);
}

#[tokio::test]
async fn ten_thousand_runs_seed_quickly() {
    let (emu, gql) = emulator(vec![]);
    let started = std::time::Instant::now();
    let report = emu
        .seed(
            &SeedSpec::new("alice", "many")
                .runs(10_000)
                .steps(1000)
                .keys(20)
                .files(5)
                .bigfile(0),
        )
        .expect("seed");
    let seeded = started.elapsed();
    assert_eq!(report.runs.len(), 10_000);
    let data = gql
        .data(
            "query { project(name: \"many\", entityName: \"alice\") { runCount running: runCount(filters: \"{\\\"state\\\": \\\"running\\\"}\")
               runs(first: 3, order: \"-created_at\") { edges { node { name historyLineCount } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["project"]["runCount"], 10_000);
    assert_eq!(data["project"]["running"], 1000);
    assert_eq!(
        data["project"]["runs"]["edges"][0]["node"]["name"],
        report.runs[9_999].name.as_str()
    );
    assert_eq!(
        data["project"]["runs"]["edges"][0]["node"]["historyLineCount"],
        1000
    );
    eprintln!("seeded 10,000 runs x 1,000 steps (10M lazy rows) in {seeded:?}");
}
