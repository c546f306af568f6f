//! Writes used (behind an opt-in flag) by `WandbStore`: run file upload and deletion.

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::json;

use super::Client;
use super::error::{Error, Result};
use super::graphql;
use super::http::{AuthMode, Request, RequestBody};
use super::types::{CreatedRunFiles, UploadTarget, null_as_empty};
use super::upload::FileBody;

impl Client {
    /// `CreateRunFiles`: upload URLs for `files` of a run. The reply has one target per name;
    /// relative URLs (leading `/`) are resolved against the base URL as `run.upload_file()`
    /// does.
    pub async fn create_run_files(
        &self,
        entity: &str,
        project: &str,
        run: &str,
        files: &[String],
    ) -> Result<CreatedRunFiles> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            create_run_files: Option<Created>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Created {
            #[serde(default, rename = "runID")]
            run_id: Option<String>,
            #[serde(default, deserialize_with = "null_as_empty")]
            upload_headers: Vec<String>,
            #[serde(default, deserialize_with = "null_as_empty")]
            files: Vec<Target>,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Target {
            name: String,
            #[serde(default)]
            upload_url: Option<String>,
        }
        let op = graphql::CREATE_RUN_FILES;
        let vars = json!({"entity": entity, "project": project, "run": run, "files": files});
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        let created = data
            .create_run_files
            .ok_or_else(|| Error::not_found(op.name, format!("run {entity}/{project}/{run}")))?;
        let base = self.base_url().as_str().to_owned();
        Ok(CreatedRunFiles {
            run_id: created.run_id,
            upload_headers: created
                .upload_headers
                .iter()
                .filter_map(|h| h.split_once(':'))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .collect(),
            files: created
                .files
                .into_iter()
                .map(|t| UploadTarget {
                    name: t.name,
                    upload_url: t.upload_url.map(|u| {
                        if u.starts_with('/') {
                            format!("{base}{u}")
                        } else {
                            u
                        }
                    }),
                })
                .collect(),
        })
    }

    /// PUTs `body` to an upload URL from [`create_run_files`](Self::create_run_files), with the
    /// returned upload headers and **no credentials** (as wandb-core does, even on the base
    /// host). Retried like any request.
    pub async fn upload(
        &self,
        upload_url: &str,
        upload_headers: &[(String, String)],
        body: Bytes,
    ) -> Result<()> {
        self.upload_body(upload_url, upload_headers, RequestBody::Bytes(body))
            .await
    }

    /// Like [`upload`](Self::upload), with the body read from the first `len` bytes of `file`
    /// while it is sent (bounded memory whatever the size; each retry reads it again). Returns
    /// the MD5 of the bytes sent.
    pub async fn upload_file(
        &self,
        upload_url: &str,
        upload_headers: &[(String, String)],
        file: std::sync::Arc<std::fs::File>,
        len: u64,
    ) -> Result<[u8; 16]> {
        let body = FileBody::new(file, len);
        self.upload_body(upload_url, upload_headers, RequestBody::File(body.clone()))
            .await?;
        body.digest().ok_or_else(|| {
            Error::config("the upload succeeded without sending the whole file".to_owned())
        })
    }

    async fn upload_body(
        &self,
        upload_url: &str,
        upload_headers: &[(String, String)],
        body: RequestBody,
    ) -> Result<()> {
        let url = url::Url::parse(upload_url)
            .map_err(|e| Error::config(format!("bad upload URL: {e}")))?;
        let mut headers = HeaderMap::new();
        for (name, value) in upload_headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| Error::config(format!("bad upload header name {name:?}")))?;
            let value = HeaderValue::from_str(value)
                .map_err(|_| Error::config(format!("bad value for upload header {name}")))?;
            headers.insert(name, value);
        }
        let request = Request {
            operation: format!("upload {}", super::error::redact_url(&url)),
            method: Method::PUT,
            url,
            headers,
            body: Some(body),
            auth: AuthMode::Never,
            timeout: None,
        };
        self.transport().send(&request).await.map(drop)
    }

    /// `deleteFiles`: deletes run files by id (`RunFile::id`); `project_id` is the project's
    /// internal id (`RunFilesPage::project_internal_id`). Returns the server's `success`.
    pub async fn delete_files(&self, file_ids: &[String], project_id: Option<i64>) -> Result<bool> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Data {
            delete_files: Option<Success>,
        }
        #[derive(Deserialize)]
        struct Success {
            #[serde(default)]
            success: Option<bool>,
        }
        let op = graphql::DELETE_FILES;
        let vars = json!({"files": file_ids, "projectId": project_id});
        let data: Data = self.gql(op.name, op.document(), vars).await?;
        Ok(data.delete_files.and_then(|s| s.success).unwrap_or(false))
    }
}
