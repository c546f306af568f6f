//! The dictionary of metric keys and key sets, shared by every ingester of a database and
//! cached in each process.
//!
//! - `wandb.metric_keys(key_id, path text[], key text)`: one row per numeric leaf path
//!   (`{"train","acc"}`, dotted `train.acc`).
//! - `wandb.key_sets(key_set_id, digest, key_ids int[], keys text[], paths jsonb)`: one row per
//!   row *shape* ([`Shape`]: the sorted leaf paths of a row); each row of a block
//!   (`stream_blocks.shapes`) names its key set, and `block_values` are stored per key id.
//!
//! Entries are never updated or deleted, so an id, once known, is valid for good and the cache
//! needs no invalidation. New entries are inserted **in their own autocommitted statements**,
//! before the rows that use them: if the ingest transaction then fails, the entries stay
//! (harmless), and no cached id ever points at an entry that was rolled back.
//!
//! Concurrent ingesters (threads or processes) may insert the same entries at once: each
//! statement inserts what it does not see with `ON CONFLICT DO NOTHING`, in sorted order (so
//! two inserters never wait on each other in opposite orders), and reads back what exists.
//! An entry committed by another session while the statement ran is invisible to that
//! statement's snapshot, so resolution repeats with a new statement until every entry is found
//! (normally once; at most [`MAX_ROUNDS`]).

use std::collections::HashMap;
use std::sync::Mutex;

use deadpool_postgres::Client;
use serde_json::json;

use super::error::{DbContext, MirrorError, Result};
use super::rowcodec::{Path, Shape, dotted};

/// Resolution rounds before giving up (each round sees everything committed before it).
const MAX_ROUNDS: usize = 8;

/// The process-wide cache of dictionary ids.
#[derive(Debug, Default)]
pub(crate) struct Dictionary {
    keys: Mutex<HashMap<Path, i32>>,
    key_sets: Mutex<HashMap<Shape, i32>>,
}

impl Dictionary {
    /// The key-set ids of `shapes` if every one is cached.
    pub(crate) fn cached(&self, shapes: &[Shape]) -> Option<Vec<i32>> {
        let sets = self.key_sets.lock().unwrap_or_else(|e| e.into_inner());
        shapes.iter().map(|s| sets.get(s).copied()).collect()
    }

    /// The key ids of `shape`'s leaves, in shape order, if every one is cached (they are once
    /// [`key_set_ids`](Self::key_set_ids) returned the shape's key set).
    pub(crate) fn key_ids(&self, shape: &Shape) -> Option<Vec<i32>> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        shape.0.iter().map(|p| keys.get(p).copied()).collect()
    }

    /// The key-set ids of `shapes`, inserting missing keys and key sets. `client` must not be
    /// inside a transaction (the inserts must commit on their own).
    pub(crate) async fn key_set_ids(&self, client: &Client, shapes: &[Shape]) -> Result<Vec<i32>> {
        if let Some(ids) = self.cached(shapes) {
            return Ok(ids);
        }
        let missing: Vec<&Shape> = {
            let sets = self.key_sets.lock().unwrap_or_else(|e| e.into_inner());
            let mut missing: Vec<&Shape> =
                shapes.iter().filter(|s| !sets.contains_key(*s)).collect();
            missing.sort();
            missing.dedup();
            missing
        };
        let mut paths: Vec<&Path> = missing.iter().flat_map(|s| s.0.iter()).collect();
        paths.sort();
        paths.dedup();
        self.resolve_keys(client, &paths).await?;
        self.resolve_key_sets(client, &missing).await?;
        self.cached(shapes).ok_or_else(|| {
            MirrorError::Inconsistent("a key set vanished from the dictionary cache".into())
        })
    }

    /// Makes sure every path in `paths` (sorted, distinct) has a cached key id.
    async fn resolve_keys(&self, client: &Client, paths: &[&Path]) -> Result<()> {
        let mut todo: Vec<&Path> = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            paths
                .iter()
                .copied()
                .filter(|p| !keys.contains_key(*p))
                .collect()
        };
        let statement = client
            .prepare_cached(
                "WITH input AS (
                     SELECT ARRAY(SELECT jsonb_array_elements_text(e.value)) AS path
                     FROM jsonb_array_elements($1::jsonb) AS e
                 ), inserted AS (
                     INSERT INTO wandb.metric_keys (path, key)
                     SELECT i.path, array_to_string(i.path, '.') FROM input i
                     WHERE NOT EXISTS (SELECT 1 FROM wandb.metric_keys m WHERE m.path = i.path)
                     ORDER BY i.path
                     ON CONFLICT (path) DO NOTHING
                     RETURNING key_id, path
                 )
                 SELECT key_id, path FROM inserted
                 UNION ALL
                 SELECT m.key_id, m.path FROM wandb.metric_keys m JOIN input i USING (path)",
            )
            .await
            .db("preparing the metric-key lookup")?;
        for _ in 0..MAX_ROUNDS {
            if todo.is_empty() {
                return Ok(());
            }
            let input = serde_json::Value::from(
                todo.iter()
                    .map(|p| json!(p.as_ref()))
                    .collect::<Vec<serde_json::Value>>(),
            );
            let rows = client
                .query(&statement, &[&input])
                .await
                .db("adding metric keys to the dictionary")?;
            let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            for row in rows {
                let path: Vec<String> = row.get(1);
                keys.insert(path.into_boxed_slice(), row.get(0));
            }
            todo.retain(|p| !keys.contains_key(*p));
        }
        Err(MirrorError::Inconsistent(format!(
            "{} metric keys could not be added to the dictionary (first: {})",
            todo.len(),
            todo.first().map(|p| dotted(p)).unwrap_or_default()
        )))
    }

    /// Makes sure every shape in `shapes` (sorted, distinct, keys resolved) has a cached
    /// key-set id.
    async fn resolve_key_sets(&self, client: &Client, shapes: &[&Shape]) -> Result<()> {
        // Key ids in shape order; the digest (md5 of the ids joined by ',') is computed by the
        // server, so every client agrees on it.
        let mut todo: Vec<(&Shape, Vec<i32>)> = {
            let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
            shapes
                .iter()
                .map(|s| {
                    let ids: Option<Vec<i32>> = s.0.iter().map(|p| keys.get(p).copied()).collect();
                    ids.map(|ids| (*s, ids)).ok_or_else(|| {
                        MirrorError::Inconsistent("a metric key is missing from the cache".into())
                    })
                })
                .collect::<Result<_>>()?
        };
        let statement = client
            .prepare_cached(
                "WITH input AS (
                     SELECT s.ord,
                            ARRAY(SELECT jsonb_array_elements_text(s.value -> 'ids'))::int[]
                                AS key_ids,
                            ARRAY(SELECT jsonb_array_elements_text(s.value -> 'keys')) AS keys,
                            s.value -> 'paths' AS paths
                     FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS s(value, ord)
                 ), digested AS (
                     SELECT i.*, decode(md5(array_to_string(i.key_ids, ',')), 'hex') AS digest
                     FROM input i
                 ), inserted AS (
                     INSERT INTO wandb.key_sets (digest, key_ids, keys, paths)
                     SELECT d.digest, d.key_ids, d.keys,
                            CASE WHEN jsonb_typeof(d.paths) = 'array' THEN d.paths END
                     FROM digested d
                     WHERE NOT EXISTS (SELECT 1 FROM wandb.key_sets k WHERE k.digest = d.digest)
                     ORDER BY d.digest
                     ON CONFLICT (digest) DO NOTHING
                     RETURNING key_set_id, digest
                 )
                 SELECT x.key_set_id, d.ord FROM inserted x JOIN digested d USING (digest)
                 UNION ALL
                 SELECT k.key_set_id, d.ord FROM wandb.key_sets k JOIN digested d USING (digest)",
            )
            .await
            .db("preparing the key-set lookup")?;
        for _ in 0..MAX_ROUNDS {
            if todo.is_empty() {
                return Ok(());
            }
            let input = serde_json::Value::from(
                todo.iter()
                    .map(|(shape, ids)| {
                        let keys: Vec<String> = shape.0.iter().map(|p| dotted(p)).collect();
                        // Paths only for nested shapes: flat rows are rebuilt from `keys`.
                        let paths = shape
                            .is_nested()
                            .then(|| json!(shape.0.iter().map(|p| p.as_ref()).collect::<Vec<_>>()));
                        json!({ "ids": ids, "keys": keys, "paths": paths })
                    })
                    .collect::<Vec<serde_json::Value>>(),
            );
            let rows = client
                .query(&statement, &[&input])
                .await
                .db("adding key sets to the dictionary")?;
            let mut found = vec![None; todo.len()];
            for row in rows {
                let ord: i64 = row.get(1);
                if let Some(slot) = usize::try_from(ord - 1).ok().and_then(|i| found.get_mut(i)) {
                    *slot = Some(row.get::<_, i32>(0));
                }
            }
            let mut sets = self.key_sets.lock().unwrap_or_else(|e| e.into_inner());
            let mut rest = Vec::new();
            for ((shape, ids), id) in todo.into_iter().zip(found) {
                match id {
                    Some(id) => {
                        sets.insert(shape.clone(), id);
                    }
                    None => rest.push((shape, ids)),
                }
            }
            todo = rest;
        }
        Err(MirrorError::Inconsistent(format!(
            "{} key sets could not be added to the dictionary",
            todo.len()
        )))
    }
}
