//! Mirrors as a v1 binary (schema 3 and before) wrote them, for tests of the upgrade to blocks:
//! one tuple per history step or system event, the JSON Lines text in chunks of whole lines,
//! the sync state.

use tokio_postgres::Client;

use super::super::schema::MIGRATIONS;

/// A stream as v1 held it: the JSON Lines text and each line's key (step or event number).
#[derive(Clone, Debug)]
pub struct V1Stream {
    /// Keys, one per line.
    pub keys: Vec<i64>,
    /// The text, every line ending in a newline.
    pub text: Vec<u8>,
}

impl V1Stream {
    /// The lines `render(key)` for `keys`.
    pub fn new(keys: Vec<i64>, render: impl Fn(i64) -> String) -> V1Stream {
        let mut text = Vec::new();
        for k in &keys {
            text.extend_from_slice(render(*k).as_bytes());
            text.push(b'\n');
        }
        V1Stream { keys, text }
    }
}

/// Creates the v1 schema (migrations 1–3, recorded as a v1 binary recorded them) in an empty
/// database, with one project, `ent/proj`.
pub async fn create_schema(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE SCHEMA wandb;
         CREATE TABLE wandb.schema_version (
             version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now());",
    )
    .await?;
    for m in MIGRATIONS.iter().filter(|m| m.version <= 3) {
        tx.batch_execute(m.sql).await?;
        tx.execute(
            "INSERT INTO wandb.schema_version (version, name, checksum) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.checksum()],
        )
        .await?;
    }
    tx.batch_execute(
        "INSERT INTO wandb.entities (entity) VALUES ('ent');
         INSERT INTO wandb.projects (entity, name) VALUES ('ent', 'proj');",
    )
    .await?;
    tx.commit().await
}

/// Writes a finished run of `ent/proj` with its streams the way v1 stored them: row tuples
/// (only their keys matter to the upgrade), chunks of at least `chunk` bytes of whole lines,
/// and the sync state. The last chunk of each stream carries a line past the stream's length,
/// as a v1 crash between its two commits left one. Returns the run's key.
pub async fn write_run(
    client: &Client,
    run_id: &str,
    history: &V1Stream,
    system: &V1Stream,
    chunk: usize,
) -> Result<i64, tokio_postgres::Error> {
    let run_pk: i64 = client
        .query_one(
            "INSERT INTO wandb.runs (project_pk, run_id, state)
             SELECT project_pk, $1, 'finished' FROM wandb.projects RETURNING run_pk",
            &[&run_id],
        )
        .await?
        .get(0);
    for (code, stream, table, key_column) in [
        (1i16, history, "wandb.history", "step"),
        (2i16, system, "wandb.system_events", "seq"),
    ] {
        client
            .execute(
                &format!(
                    "INSERT INTO {table} (run_pk, {key_column}, key_set_id, vals)
                     SELECT $1, k, 0, '{{}}' FROM unnest($2::int8[]) k"
                ),
                &[&run_pk, &stream.keys],
            )
            .await?;
        let mut start = 0usize;
        let mut line_start = 0usize;
        let mut first = 0usize;
        let mut pieces: Vec<(usize, usize, usize, usize)> = Vec::new(); // start, end, first, n
        let mut n = 0usize;
        for (i, b) in stream.text.iter().enumerate() {
            if *b == b'\n' {
                n += 1;
                line_start = i + 1;
                if line_start - start >= chunk {
                    pieces.push((start, line_start, first, n));
                    first += n;
                    start = line_start;
                    n = 0;
                }
            }
        }
        if start < line_start {
            pieces.push((start, line_start, first, n));
        }
        let last = pieces.len().saturating_sub(1);
        for (i, (s, e, f, n)) in pieces.iter().enumerate() {
            let mut body = stream.text[*s..*e].to_vec();
            if i == last {
                body.extend_from_slice(b"{\"orphan\":1}\n");
            }
            client
                .execute(
                    "INSERT INTO wandb.stream_chunks
                         (run_pk, stream, byte_start, byte_len, first_key, last_key, n_rows, body)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &run_pk,
                        &code,
                        &(*s as i64),
                        &(body.len() as i32),
                        &stream.keys[*f],
                        &stream.keys[f + n - 1],
                        &(*n as i32),
                        &body,
                    ],
                )
                .await?;
        }
    }
    client
        .execute(
            "INSERT INTO wandb.run_sync_state (run_pk, history_last_step, history_rows,
                 history_bytes, system_last_seq, system_rows, system_bytes)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &run_pk,
                &history.keys.last().copied(),
                &(history.keys.len() as i64),
                &(history.text.len() as i64),
                &system.keys.last().copied(),
                &(system.keys.len() as i64),
                &(system.text.len() as i64),
            ],
        )
        .await?;
    Ok(run_pk)
}
