//! Batched run reads: the history window, system events and file listing of many runs in one
//! GraphQL request (`RunBundle`), one aliased `run(name:)` field per run.
//!
//! W&B's GraphQL takes any document that validates against its schema, and its own web app
//! and Weave send such documents (`../shared/wandb-wire/batching/`). The alias form is used
//! rather than one `project.runs(filters: {"name": {"$in": …}})` page because each run gets its
//! own exact step window (`samples` = the window's width, so the server never samples), and an
//! error in one run nulls only its alias (`run` is nullable), not the whole page.
//!
//! This module only fetches and decodes: whether a bundle is *complete* (rows = W&B's
//! `historyLineCount`, events = `eventsLineCount`, files = `fileCount` with no next page) is
//! for the caller to check against what it expects, and it falls back to the per-run
//! operations for any run that fails. A request that fails as a whole (5xx, a timeout, an
//! oversized or undecodable reply) is an error after one retry, so the caller can split the
//! batch quickly; 429s are waited out as for every request.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Client;
use super::error::{Error, Result};
use super::runs::ConnectionWire;
use super::types::{
    ParquetHistory, Run, RunFile, json_text, json_text_list, last_step_of, lenient_i64,
};

/// The operation name of batched run reads.
pub const RUN_BUNDLE: &str = "RunBundle";

/// What to read of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleSpec {
    /// Run id.
    pub name: String,
    /// History rows with `min ≤ _step < max` (`samples` = `max − min`); `None`: no history.
    pub history: Option<(i64, i64)>,
    /// System events, at most this many (`events(samples:)`); `None`: none.
    pub events: Option<u32>,
    /// The first page of the file listing, of this many files; `None`: none.
    pub files: Option<u32>,
    /// The parquet export listing (`parquetHistory(liveKeys: ["_step"])`).
    pub parquet: bool,
    /// The run's record (the SDK's `RunFragment`, with `updatedAt` when `Some(true)`), for runs
    /// a lightweight listing found changed.
    pub run: Option<bool>,
}

/// What the server returned for one run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunBundle {
    /// Run id.
    pub name: String,
    /// W&B's `historyLineCount` (same snapshot as the rows).
    pub history_line_count: Option<i64>,
    /// W&B's `eventsLineCount`.
    pub events_line_count: Option<i64>,
    /// W&B's `fileCount`.
    pub file_count: Option<i64>,
    /// `historyKeys.lastStep`.
    pub last_step: Option<i64>,
    /// History rows as W&B-dialect JSON text, when asked for.
    pub history: Option<Vec<String>>,
    /// System events as W&B-dialect JSON text, when asked for.
    pub events: Option<Vec<String>>,
    /// The files, when asked for, and whether the listing has more pages.
    pub files: Option<(Vec<RunFile>, bool)>,
    /// The parquet export listing, when asked for.
    pub parquet: Option<ParquetHistory>,
    /// The run's record, when asked for.
    pub run: Option<Box<Run>>,
}

/// One run's outcome in a batched read.
#[derive(Clone, Debug, PartialEq)]
pub enum BundleOutcome {
    /// Its fields (to be checked for completeness by the caller).
    Found(RunBundle),
    /// The server says there is no such run (its alias is `null` without an error).
    Missing,
    /// Its alias failed (an error at its path): the caller reads it per run.
    Failed(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BundleWire {
    name: String,
    #[serde(default, deserialize_with = "lenient_i64")]
    history_line_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    events_line_count: Option<i64>,
    #[serde(default, deserialize_with = "lenient_i64")]
    file_count: Option<i64>,
    #[serde(default, deserialize_with = "json_text")]
    history_keys: Option<String>,
    #[serde(default, deserialize_with = "json_text_list")]
    history: Vec<String>,
    #[serde(default, deserialize_with = "json_text_list")]
    events: Vec<String>,
    #[serde(default)]
    files: Option<ConnectionWire<RunFile>>,
    #[serde(default)]
    parquet_history: Option<ParquetHistory>,
}

/// The `RunBundle` document and its variables for `specs`.
pub fn bundle_request(entity: &str, project: &str, specs: &[BundleSpec]) -> (String, Value) {
    let mut params = vec![
        "$entity: String!".to_owned(),
        "$project: String!".to_owned(),
    ];
    let mut fields = String::new();
    let mut with_fragment = false;
    let mut vars = serde_json::Map::new();
    vars.insert("entity".into(), json!(entity));
    vars.insert("project".into(), json!(project));
    for (i, spec) in specs.iter().enumerate() {
        params.push(format!("$n{i}: String!"));
        vars.insert(format!("n{i}"), json!(spec.name));
        let mut body = String::from("name historyLineCount eventsLineCount fileCount historyKeys");
        if let Some((min, max)) = spec.history {
            params.push(format!("$h{i}: Int64!, $w{i}: Int64!, $s{i}: Int!"));
            vars.insert(format!("h{i}"), json!(min));
            vars.insert(format!("w{i}"), json!(max));
            let samples = i32::try_from(max.saturating_sub(min).max(0)).unwrap_or(i32::MAX);
            vars.insert(format!("s{i}"), json!(samples));
            body.push_str(&format!(
                " history(minStep: $h{i}, maxStep: $w{i}, samples: $s{i})"
            ));
        }
        if let Some(samples) = spec.events {
            params.push(format!("$e{i}: Int!"));
            vars.insert(
                format!("e{i}"),
                json!(i32::try_from(samples).unwrap_or(i32::MAX)),
            );
            body.push_str(&format!(" events(samples: $e{i})"));
        }
        if let Some(first) = spec.files {
            params.push(format!("$f{i}: Int!"));
            vars.insert(format!("f{i}"), json!(first));
            body.push_str(&format!(
                " files(first: $f{i}) {{ edges {{ node {{ id name url directUrl sizeBytes \
                 mimetype updatedAt md5 }} cursor }} pageInfo {{ endCursor hasNextPage }} }}"
            ));
        }
        if spec.parquet {
            body.push_str(" parquetHistory(liveKeys: [\"_step\"]) { parquetUrls liveData }");
        }
        if let Some(updated_at) = spec.run {
            body.push_str(if updated_at {
                " projectId updatedAt ...RunFragment"
            } else {
                " projectId ...RunFragment"
            });
            with_fragment = true;
        }
        fields.push_str(&format!("    r{i}: run(name: $n{i}) {{ {body} }}\n"));
    }
    let mut document = format!(
        "query {RUN_BUNDLE}({}) {{\n  project(name: $project, entityName: $entity) {{\n{fields}  }}\n}}\n",
        params.join(", ")
    );
    if with_fragment {
        document.push_str(run_fragment());
    }
    (document, Value::Object(vars))
}

/// The SDK's `RunFragment` definition (the one a `Run` read selects), from the shipped `Run`
/// document, so batched and per-run reads of a run record select the same fields.
fn run_fragment() -> &'static str {
    let document = super::graphql::RUN_FULL.document();
    document
        .find("fragment RunFragment")
        .map_or("", |at| &document[at..])
}

/// The outcomes of a `RunBundle` reply, in the order of `specs`. `errors` with a path under an
/// alias fail that run only; a reply with no `project` fails them all (an error).
pub fn decode_bundles(
    specs: &[BundleSpec],
    data: Option<Value>,
    errors: &[super::graphql::GraphQlError],
) -> Result<Vec<BundleOutcome>> {
    let mut failed: HashMap<usize, String> = HashMap::new();
    let mut general = Vec::new();
    for error in errors {
        match error.alias_index() {
            Some(i) if i < specs.len() => {
                failed.entry(i).or_insert_with(|| error.message.clone());
            }
            _ => general.push(error.message.clone()),
        }
    }
    let project = data
        .and_then(|mut d| d.get_mut("project").map(Value::take))
        .filter(|p| !p.is_null());
    let Some(Value::Object(mut project)) = project else {
        return Err(Error::GraphQl {
            operation: RUN_BUNDLE.to_owned(),
            messages: if general.is_empty() {
                vec!["the reply has no project".to_owned()]
            } else {
                general
            },
        });
    };
    let mut out = Vec::with_capacity(specs.len());
    for (i, spec) in specs.iter().enumerate() {
        if let Some(message) = failed.remove(&i) {
            out.push(BundleOutcome::Failed(message));
            continue;
        }
        let value = project.remove(&format!("r{i}")).unwrap_or(Value::Null);
        if value.is_null() {
            out.push(if general.is_empty() {
                BundleOutcome::Missing
            } else {
                BundleOutcome::Failed(general.join("; "))
            });
            continue;
        }
        let run = match spec.run {
            Some(_) => match serde_json::from_value::<Run>(value.clone()) {
                Ok(run) => Some(Box::new(run)),
                Err(e) => {
                    out.push(BundleOutcome::Failed(format!(
                        "undecodable run record: {e}"
                    )));
                    continue;
                }
            },
            None => None,
        };
        let wire: BundleWire = match serde_json::from_value(value) {
            Ok(w) => w,
            Err(e) => {
                out.push(BundleOutcome::Failed(format!("undecodable run: {e}")));
                continue;
            }
        };
        if wire.name != spec.name {
            out.push(BundleOutcome::Failed(format!(
                "asked for run {}, the reply is run {}",
                spec.name, wire.name
            )));
            continue;
        }
        let files = match (spec.files, wire.files) {
            (Some(_), Some(connection)) => {
                let page = connection.into_page(|f| f);
                Some((page.items, page.has_next_page))
            }
            (Some(_), None) => Some((Vec::new(), false)),
            (None, _) => None,
        };
        out.push(BundleOutcome::Found(RunBundle {
            name: wire.name,
            history_line_count: wire.history_line_count,
            events_line_count: wire.events_line_count,
            file_count: wire.file_count,
            last_step: wire.history_keys.as_deref().and_then(last_step_of),
            history: spec.history.map(|_| wire.history),
            events: spec.events.map(|_| wire.events),
            files,
            parquet: if spec.parquet {
                wire.parquet_history
            } else {
                None
            },
            run,
        }));
    }
    Ok(out)
}

impl Client {
    /// Reads the history windows, events and file listings of `specs` (runs of one project)
    /// in one GraphQL request; one outcome per spec, in order. An `Err` means the request as a
    /// whole failed (after one retry for a server error or a timeout; 429s are waited out).
    pub async fn run_bundles(
        &self,
        entity: &str,
        project: &str,
        specs: &[BundleSpec],
    ) -> Result<Vec<BundleOutcome>> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        let (document, variables) = bundle_request(entity, project, specs);
        let (data, errors) = self
            .transport()
            .graphql_partial(RUN_BUNDLE, &document, variables, 2)
            .await?;
        decode_bundles(specs, data, &errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> BundleSpec {
        BundleSpec {
            name: name.to_owned(),
            history: Some((3, 8)),
            events: Some(10),
            files: Some(100),
            parquet: false,
            run: None,
        }
    }

    #[test]
    fn the_document_gives_each_run_its_own_window() {
        let (doc, vars) = bundle_request(
            "e",
            "p",
            &[
                spec("a"),
                BundleSpec {
                    name: "b".into(),
                    history: None,
                    events: None,
                    files: None,
                    parquet: false,
                    run: Some(true),
                },
            ],
        );
        assert!(doc.contains("r0: run(name: $n0)"), "{doc}");
        assert!(doc.contains("history(minStep: $h0, maxStep: $w0, samples: $s0)"));
        assert!(!doc.contains("$h1"), "b asks for no history: {doc}");
        assert_eq!(vars["s0"], 5, "samples = the window's width");
        assert_eq!(vars["n1"], "b");
        assert!(doc.contains("r1: run(name: $n1) { name historyLineCount eventsLineCount fileCount historyKeys projectId updatedAt ...RunFragment }"), "{doc}");
        assert!(
            doc.ends_with(run_fragment()) && run_fragment().contains("summaryMetrics"),
            "{doc}"
        );
    }

    #[test]
    fn an_error_under_an_alias_fails_that_run_only() {
        let specs = [spec("a"), spec("b"), spec("c")];
        let data = json!({"project": {
            "r0": {"name": "a", "historyLineCount": 5, "eventsLineCount": 1, "fileCount": 1,
                   "historyKeys": "{\"lastStep\": 7}",
                   "history": ["{\"_step\":3}", "{\"_step\":4}"], "events": ["{}"],
                   "files": {"edges": [{"node": {"id": "f", "name": "x.txt"}, "cursor": "c"}],
                             "pageInfo": {"endCursor": "c", "hasNextPage": false}}},
            "r1": null,
            "r2": null
        }});
        let errors: Vec<super::super::graphql::GraphQlError> = serde_json::from_value(json!([
            {"message": "boom", "path": ["project", "r1", "history"]}
        ]))
        .unwrap();
        let out = decode_bundles(&specs, Some(data), &errors).unwrap();
        let BundleOutcome::Found(a) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(a.history.as_ref().unwrap().len(), 2);
        assert_eq!(a.last_step, Some(7));
        assert_eq!(a.files.as_ref().unwrap().0[0].name, "x.txt");
        assert_eq!(out[1], BundleOutcome::Failed("boom".into()));
        assert_eq!(out[2], BundleOutcome::Missing);
    }
}
