//! GraphQL documents (copied from SDK 0.31.0) and the request/response envelope.
//!
//! Each `graphql/*.graphql` file starts with one comment line naming the SDK file it came from;
//! that line is ours and is not sent. The SDK strips some fields from documents when the server
//! lacks a feature (wandb-core's `omit_fields`); [`strip_field`] does the same for the one-field-
//! per-line documents we ship.

use std::borrow::Cow;

use serde::Deserialize;

/// A GraphQL operation: its name and document text.
#[derive(Clone, Copy, Debug)]
pub struct Operation {
    /// The operation name (sent as `operationName`, used in errors and logs).
    pub name: &'static str,
    file: &'static str,
}

impl Operation {
    /// The document as sent (without our provenance comment line).
    pub fn document(&self) -> &'static str {
        self.file
            .split_once('\n')
            .map_or(self.file, |(_, rest)| rest)
    }

    /// The provenance line: which SDK file the document was copied from.
    pub fn provenance(&self) -> &'static str {
        self.file.lines().next().unwrap_or_default()
    }
}

macro_rules! operation {
    ($(#[$doc:meta])* $const:ident, $name:literal, $file:literal) => {
        $(#[$doc])*
        pub const $const: Operation = Operation {
            name: $name,
            file: include_str!(concat!("graphql/", $file)),
        };
    };
}

operation!(
    /// `query Viewer` (wandb-core login check).
    VIEWER, "Viewer", "viewer.graphql");
operation!(
    /// `query GetViewer` (`Api.viewer`).
    GET_VIEWER, "GetViewer", "get_viewer.graphql");
operation!(
    /// `query GetDefaultEntity`.
    GET_DEFAULT_ENTITY, "GetDefaultEntity", "get_default_entity.graphql");
operation!(
    /// `query ServerFeaturesQuery`.
    SERVER_FEATURES, "ServerFeaturesQuery", "server_features.graphql");
operation!(
    /// `query GetProjects` (`models`, endCursor pagination).
    GET_PROJECTS, "GetProjects", "get_projects.graphql");
operation!(
    /// `query GetProject`.
    GET_PROJECT, "GetProject", "get_project.graphql");
operation!(
    /// `query Runs` with `LightweightRunFragment` (`api.runs(lazy=True)`).
    RUNS_LIGHTWEIGHT, "Runs", "runs_lightweight.graphql");
operation!(
    /// `query Runs` with `RunFragment` (`api.runs(lazy=False)`).
    RUNS_FULL, "Runs", "runs_full.graphql");
operation!(
    /// `query Run` with `RunFragment` (`api.run()`).
    RUN_FULL, "Run", "run_full.graphql");
operation!(
    /// `query Run` with `LightweightRunFragment`.
    RUN_LIGHTWEIGHT, "Run", "run_lightweight.graphql");
operation!(
    /// `query RunState`.
    RUN_STATE, "RunState", "run_state.graphql");
operation!(
    /// `query RunHistoryKeys`.
    RUN_HISTORY_KEYS, "RunHistoryKeys", "run_history_keys.graphql");
operation!(
    /// `query HistoryPage` (wandb-core `scan_history` pages).
    HISTORY_PAGE, "HistoryPage", "history_page.graphql");
operation!(
    /// `query RunFullHistory` selecting `events(samples)` (system metrics).
    RUN_EVENTS, "RunFullHistory", "run_full_history_events.graphql");
operation!(
    /// `query RunFullHistory` selecting `history(samples)` (sampled; not used for sync).
    RUN_SAMPLED_HISTORY, "RunFullHistory", "run_full_history.graphql");
operation!(
    /// `query RunParquetHistory`.
    RUN_PARQUET_HISTORY, "RunParquetHistory", "run_parquet_history.graphql");
operation!(
    /// `query RunFiles`.
    RUN_FILES, "RunFiles", "run_files.graphql");
operation!(
    /// `mutation CreateRunFiles` (wandb-core).
    CREATE_RUN_FILES, "CreateRunFiles", "create_run_files.graphql");
operation!(
    /// `mutation deleteFiles` (`File.delete`).
    DELETE_FILES, "deleteFiles", "delete_files.graphql");
operation!(
    /// `query ProjectArtifactTypes`.
    PROJECT_ARTIFACT_TYPES, "ProjectArtifactTypes", "project_artifact_types.graphql");
operation!(
    /// `query ProjectArtifactType`.
    PROJECT_ARTIFACT_TYPE, "ProjectArtifactType", "project_artifact_type.graphql");
operation!(
    /// `query ArtifactTypeArtifactCollections`.
    ARTIFACT_TYPE_ARTIFACT_COLLECTIONS, "ArtifactTypeArtifactCollections",
    "artifact_type_artifact_collections.graphql");
operation!(
    /// `query ProjectArtifactCollections`.
    PROJECT_ARTIFACT_COLLECTIONS, "ProjectArtifactCollections",
    "project_artifact_collections.graphql");
operation!(
    /// `query ProjectArtifactCollection`.
    PROJECT_ARTIFACT_COLLECTION, "ProjectArtifactCollection",
    "project_artifact_collection.graphql");
operation!(
    /// `query ProjectArtifacts` (versions of a collection).
    PROJECT_ARTIFACTS, "ProjectArtifacts", "project_artifacts.graphql");
operation!(
    /// `query ArtifactMembershipByName` (`api.artifact("e/p/name:alias")`).
    ARTIFACT_MEMBERSHIP_BY_NAME, "ArtifactMembershipByName",
    "artifact_membership_by_name.graphql");
operation!(
    /// `query ArtifactMembershipFiles` (`artifact.files()`).
    ARTIFACT_MEMBERSHIP_FILES, "ArtifactMembershipFiles", "artifact_membership_files.graphql");
operation!(
    /// `query GetArtifactMembershipFileUrls` (`artifact.download()` URL batches).
    GET_ARTIFACT_MEMBERSHIP_FILE_URLS, "GetArtifactMembershipFileUrls",
    "get_artifact_membership_file_urls.graphql");
operation!(
    /// `query FetchArtifactManifest`.
    FETCH_ARTIFACT_MANIFEST, "FetchArtifactManifest", "fetch_artifact_manifest.graphql");
operation!(
    /// `query RunOutputArtifacts` (`run.logged_artifacts()`).
    RUN_OUTPUT_ARTIFACTS, "RunOutputArtifacts", "run_output_artifacts.graphql");
operation!(
    /// `query RunInputArtifacts` (`run.used_artifacts()`).
    RUN_INPUT_ARTIFACTS, "RunInputArtifacts", "run_input_artifacts.graphql");
operation!(
    /// `query ArtifactByID`.
    ARTIFACT_BY_ID, "ArtifactByID", "artifact_by_id.graphql");

/// Every shipped operation (for tests that check the documents).
pub const ALL: &[Operation] = &[
    VIEWER,
    GET_VIEWER,
    GET_DEFAULT_ENTITY,
    SERVER_FEATURES,
    GET_PROJECTS,
    GET_PROJECT,
    RUNS_LIGHTWEIGHT,
    RUNS_FULL,
    RUN_FULL,
    RUN_LIGHTWEIGHT,
    RUN_STATE,
    RUN_HISTORY_KEYS,
    HISTORY_PAGE,
    RUN_EVENTS,
    RUN_SAMPLED_HISTORY,
    RUN_PARQUET_HISTORY,
    RUN_FILES,
    CREATE_RUN_FILES,
    DELETE_FILES,
    PROJECT_ARTIFACT_TYPES,
    PROJECT_ARTIFACT_TYPE,
    ARTIFACT_TYPE_ARTIFACT_COLLECTIONS,
    PROJECT_ARTIFACT_COLLECTIONS,
    PROJECT_ARTIFACT_COLLECTION,
    PROJECT_ARTIFACTS,
    ARTIFACT_MEMBERSHIP_BY_NAME,
    ARTIFACT_MEMBERSHIP_FILES,
    GET_ARTIFACT_MEMBERSHIP_FILE_URLS,
    FETCH_ARTIFACT_MANIFEST,
    RUN_OUTPUT_ARTIFACTS,
    RUN_INPUT_ARTIFACTS,
    ARTIFACT_BY_ID,
];

/// Removes every selection line of `field` (the field name, optionally with a directive) from
/// a document, like wandb-core's `omit_fields` does for fields the server lacks. Our documents
/// hold one leaf field per line, so this is exact for the leaf fields we strip
/// (`digestAlgorithm`, `totalCount`).
pub fn strip_field(document: &str, field: &str) -> String {
    document
        .lines()
        .filter(|line| {
            let t = line.trim();
            !(t == field || t.strip_prefix(field).is_some_and(|r| r.starts_with(" @")))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Adds `updatedAt` next to `projectId` in a `Runs`/`Run` document. The SDK never selects
/// `Run.updatedAt`; it exists on SaaS (third-party connectors select it) and is the cheapest
/// signal of an edited finished run, so the sync engine may opt in.
pub fn with_updated_at(document: &str) -> String {
    document.replacen(
        "projectId\n",
        "projectId\n                            updatedAt\n",
        1,
    )
}

/// The document to send: either a shipped one or a derived (stripped/extended) variant.
pub type Document = Cow<'static, str>;

/// One `errors[]` entry.
#[derive(Debug, Deserialize)]
pub struct GraphQlError {
    /// `message`.
    #[serde(default)]
    pub message: String,
    /// `path`: where in `data` the error happened (`["project", "r3", "history"]`).
    #[serde(default)]
    pub path: Option<Vec<serde_json::Value>>,
}

impl GraphQlError {
    /// The index `i` of the `r<i>` alias under `project` the error is at, if any (batched
    /// reads, [`super::bundle`]).
    pub fn alias_index(&self) -> Option<usize> {
        let path = self.path.as_ref()?;
        let alias = path.get(1)?.as_str()?;
        alias.strip_prefix('r')?.parse().ok()
    }
}

/// A reply whose `data` is decoded into `T`.
#[derive(Debug, Deserialize)]
pub struct Envelope<T> {
    /// `data` (null on errors).
    pub data: Option<T>,
    /// `errors`.
    #[serde(default)]
    pub errors: Option<Vec<GraphQlError>>,
}

/// The errors of a reply whose `data` did not decode.
#[derive(Debug, Deserialize)]
pub struct ErrorsOnly {
    /// `errors`.
    #[serde(default)]
    pub errors: Option<Vec<GraphQlError>>,
    /// Some gateways answer `{"error": "…"}` (the SaaS 429 body).
    #[serde(default)]
    pub error: Option<serde_json::Value>,
}

impl ErrorsOnly {
    /// The messages, or `None` when there are none.
    pub fn messages(&self) -> Option<Vec<String>> {
        let mut messages: Vec<String> = self
            .errors
            .iter()
            .flatten()
            .map(|e| e.message.clone())
            .collect();
        if let Some(error) = &self.error {
            messages.push(match error {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        (!messages.is_empty()).then_some(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_name_their_operation_and_source() {
        for op in ALL {
            assert!(op.provenance().starts_with("# "), "{}", op.name);
            assert!(op.provenance().contains("0.31.0"), "{}", op.name);
            let doc = op.document();
            assert!(
                doc.contains(&format!("query {}", op.name))
                    || doc.contains(&format!("query {}(", op.name))
                    || doc.contains(&format!("mutation {}", op.name)),
                "{} not in its document",
                op.name
            );
            assert!(!doc.contains("Copied verbatim"), "{}", op.name);
        }
    }

    #[test]
    fn strip_and_extend() {
        let doc = PROJECT_ARTIFACTS.document();
        assert!(doc.contains("digestAlgorithm @include(if: true)"));
        let stripped = strip_field(doc, "digestAlgorithm");
        assert!(!stripped.contains("digestAlgorithm"));
        assert!(stripped.contains("digest\n"));
        let files = strip_field(ARTIFACT_MEMBERSHIP_FILES.document(), "totalCount");
        assert!(!files.contains("totalCount"));
        let runs = with_updated_at(RUNS_LIGHTWEIGHT.document());
        assert!(runs.contains("projectId\n                            updatedAt\n"));
        assert!(!RUNS_LIGHTWEIGHT.document().contains("updatedAt"));
    }
}
