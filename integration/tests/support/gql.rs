//! A tiny raw GraphQL/HTTP client for tests (deliberately independent of the emulator's code).

#![allow(dead_code)]

use serde_json::{Value, json};

/// Client for one emulator.
pub struct Gql {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Gql {
    pub fn new(base: &str, key: &str) -> Self {
        Gql {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            base: base.to_string(),
            key: key.to_string(),
        }
    }

    pub fn basic(&self) -> String {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{}", self.key))
        )
    }

    /// Posts a GraphQL document; returns status and parsed body (strict JSON).
    pub async fn post(&self, query: &str, variables: Value, operation_name: &str) -> (u16, Value) {
        let body = json!({"query": query, "variables": variables, "operationName": operation_name});
        let resp = self
            .http
            .post(format!("{}/graphql", self.base))
            .header("Authorization", self.basic())
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("response is not strict JSON ({e}): {text}"));
        (status, value)
    }

    /// Posts a document and expects 200 without errors; returns `data`.
    pub async fn data(&self, query: &str, variables: Value) -> Value {
        let (status, body) = self.post(query, variables, "").await;
        assert!(
            status == 200 && body.get("errors").is_none(),
            "GraphQL failed ({status}): {body}"
        );
        body["data"].clone()
    }

    /// GET with optional auth and headers.
    pub async fn get(&self, url: &str, auth: bool, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut req = self.http.get(url);
        if auth {
            req = req.header("Authorization", self.basic());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("GET")
    }
}

pub const RUN_FIELDS: &str =
    "id name displayName state config summaryMetrics systemMetrics tags group jobType notes
    createdAt heartbeatAt updatedAt historyLineCount historyKeys projectId user { name username }";
