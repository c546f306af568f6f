-- Mirror v2: history and system events stored as blocks of consecutive rows.
--
-- v1 stored one tuple per step (`history`, `system_events`) plus the JSON Lines text again in
-- lz4-compressed chunks (`stream_chunks`): a heap tuple, a primary-key entry and TOAST work per
-- row on the server, and the text decompressed by the server on every read. v2 stores one
-- tuple per block of consecutive rows (`stream_blocks`: the block's keys, row shapes, non-numeric
-- leftovers and its exact text compressed by the client) and one tuple per block and numeric key
-- (`block_values`: the key's values for the block's rows, NULL where a row lacks the key). The
-- text is stored as the client compressed it (STORAGE EXTERNAL: Postgres does not compress it
-- again) and decompressed by the reader.
--
-- The v1 tables are renamed `*_v1` here and converted run by run by the program
-- (`mirror::upgrade`, resumable: one transaction per run and stream), which drops them when
-- nothing is left in them. `history` and `system_events` become views with the v1 columns, so
-- SQL written against v1 keeps working.

DROP VIEW wandb.metrics;
DROP VIEW wandb.history_rows;
DROP VIEW wandb.system_metrics;
DROP VIEW wandb.system_rows;
ALTER TABLE wandb.history RENAME TO history_v1;
ALTER TABLE wandb.system_events RENAME TO system_events_v1;
ALTER TABLE wandb.stream_chunks RENAME TO stream_chunks_v1;

-- One tuple per block of consecutive rows of a run's stream (1 = history.jsonl, 2 =
-- system.jsonl). Blocks tile [0, length) of the stream without gaps; the stream's length is
-- `run_sync_state.history_bytes` / `system_bytes`, committed in the same transaction as the
-- blocks. Every block but the last holds `mirror::blocks::BLOCK_ROWS` rows or
-- `BLOCK_TEXT_BYTES` of text; the last one is rewritten (with the same `byte_start` and the
-- same leading bytes) when rows are appended, so bytes below the length never change.
CREATE TABLE wandb.stream_blocks (
    run_pk     bigint NOT NULL,
    stream     smallint NOT NULL,
    byte_start bigint NOT NULL,
    byte_len   integer NOT NULL,                 -- bytes of text (uncompressed)
    first_key  bigint NOT NULL,                  -- first step (history) / event number (system)
    last_key   bigint NOT NULL,
    n_rows     integer NOT NULL,
    keys       bigint[],                         -- each row's key; NULL when first_key .. last_key
    shapes     integer[] NOT NULL,               -- each row's key set (`key_sets`)
    extras     jsonb[],                          -- each row's `extra` (v1's column); NULL if none
    codec      smallint NOT NULL,                -- body: 0 = the text, 1 = a zstd frame of it
    body       bytea NOT NULL,
    PRIMARY KEY (run_pk, stream, byte_start)
);
ALTER TABLE wandb.stream_blocks ALTER COLUMN body SET STORAGE EXTERNAL;

-- One tuple per block and numeric leaf: `vals[j]` is the leaf's value in the block's row j
-- (1-based), NULL where that row has no such leaf. NaN and ±Infinity are float8 NaN/±Infinity.
CREATE TABLE wandb.block_values (
    run_pk     bigint NOT NULL,
    stream     smallint NOT NULL,
    byte_start bigint NOT NULL,
    key_id     integer NOT NULL,
    vals       float8[] NOT NULL,
    PRIMARY KEY (run_pk, stream, byte_start, key_id)
);
ALTER TABLE wandb.block_values ALTER COLUMN vals SET STORAGE EXTERNAL;

CREATE OR REPLACE FUNCTION wandb.delete_run_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM wandb.stream_blocks WHERE run_pk = OLD.run_pk;
    DELETE FROM wandb.block_values WHERE run_pk = OLD.run_pk;
    RETURN OLD;
END
$$;

-- v1's row tables as views: one row per step (event), `vals` in key-set order, picked from
-- the block's value arrays (`ids`: their key ids, `m`: the arrays as one two-dimensional array).
CREATE VIEW wandb.history AS
SELECT b.run_pk, coalesce(x.key, b.first_key + x.j - 1) AS step, x.key_set_id,
       (SELECT coalesce(array_agg(c.m[array_position(c.ids, k.id)][x.j] ORDER BY k.o), '{}')
        FROM unnest(ks.key_ids) WITH ORDINALITY AS k(id, o)) AS vals,
       x.extra
FROM wandb.stream_blocks b
CROSS JOIN LATERAL unnest(b.shapes, b.extras, b.keys) WITH ORDINALITY AS x(key_set_id, extra, key, j)
-- The block's arrays, gathered for each row that passes the filters: a query for a few steps
-- (the documented use of `history_rows`) reads the value arrays of their blocks only.
CROSS JOIN LATERAL (
    SELECT array_agg(v.key_id ORDER BY v.key_id) AS ids, array_agg(v.vals ORDER BY v.key_id) AS m
    FROM wandb.block_values v
    WHERE v.run_pk = b.run_pk AND v.stream = b.stream AND v.byte_start = b.byte_start
) c
JOIN wandb.key_sets ks ON ks.key_set_id = x.key_set_id
WHERE b.stream = 1;

CREATE VIEW wandb.system_events AS
SELECT b.run_pk, coalesce(x.key, b.first_key + x.j - 1) AS seq, x.key_set_id,
       (SELECT coalesce(array_agg(c.m[array_position(c.ids, k.id)][x.j] ORDER BY k.o), '{}')
        FROM unnest(ks.key_ids) WITH ORDINALITY AS k(id, o)) AS vals,
       x.extra
FROM wandb.stream_blocks b
CROSS JOIN LATERAL unnest(b.shapes, b.extras, b.keys) WITH ORDINALITY AS x(key_set_id, extra, key, j)
-- The block's arrays, gathered for each row that passes the filters: a query for a few steps
-- (the documented use of `history_rows`) reads the value arrays of their blocks only.
CROSS JOIN LATERAL (
    SELECT array_agg(v.key_id ORDER BY v.key_id) AS ids, array_agg(v.vals ORDER BY v.key_id) AS m
    FROM wandb.block_values v
    WHERE v.run_pk = b.run_pk AND v.stream = b.stream AND v.byte_start = b.byte_start
) c
JOIN wandb.key_sets ks ON ks.key_set_id = x.key_set_id
WHERE b.stream = 2;

-- History rows with names; `row` is rebuilt from the key set, `vals` and `extra` (SQL form:
-- non-finite floats as "NaN"/"Infinity"/"-Infinity", whole floats as `1` rather than `1.0`;
-- the exact text is `history.jsonl`).
CREATE VIEW wandb.history_rows AS
SELECT p.entity, p.name AS project, r.run_id, h.step,
       wandb.assemble_row(ks.keys, ks.paths, h.vals, h.extra) AS row, h.run_pk
FROM wandb.history h
JOIN wandb.key_sets ks USING (key_set_id)
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk);

-- System events with names, rebuilt like `history_rows`.
CREATE VIEW wandb.system_rows AS
SELECT p.entity, p.name AS project, r.run_id, s.seq,
       wandb.assemble_row(ks.keys, ks.paths, s.vals, s.extra) AS row, s.run_pk
FROM wandb.system_events s
JOIN wandb.key_sets ks USING (key_set_id)
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk);

-- Long-format numeric history, like Fivetran's W&B connector: one row per (run, step, key) for
-- every numeric leaf (nested keys dotted); NaN/±Infinity come out as float8 NaN/±Infinity.
-- `_step` itself is left out (it is the `step` column). A filter on `key` reads that key's
-- value arrays only; a block of consecutive steps numbers its rows, others list their steps.
CREATE VIEW wandb.metrics AS
SELECT p.entity, p.name AS project, r.run_id, coalesce(u.step, b.first_key + u.j - 1) AS step,
       k.key, u.value
FROM wandb.block_values v
JOIN wandb.stream_blocks b
  ON b.run_pk = v.run_pk AND b.stream = v.stream AND b.byte_start = v.byte_start
JOIN wandb.metric_keys k ON k.key_id = v.key_id
JOIN wandb.runs r ON r.run_pk = v.run_pk
JOIN wandb.projects p ON p.project_pk = r.project_pk
CROSS JOIN LATERAL unnest(v.vals, b.keys) WITH ORDINALITY AS u(value, step, j)
WHERE v.stream = 1 AND k.key <> '_step' AND u.value IS NOT NULL;

-- The same for system events; `ts` is the event's `_timestamp`.
CREATE VIEW wandb.system_metrics AS
SELECT p.entity, p.name AS project, r.run_id, coalesce(u.seq, b.first_key + u.j - 1) AS seq,
       to_timestamp(u.ts) AS ts, k.key, u.value
FROM wandb.block_values v
JOIN wandb.stream_blocks b
  ON b.run_pk = v.run_pk AND b.stream = v.stream AND b.byte_start = v.byte_start
JOIN wandb.metric_keys k ON k.key_id = v.key_id
JOIN wandb.runs r ON r.run_pk = v.run_pk
JOIN wandb.projects p ON p.project_pk = r.project_pk
LEFT JOIN wandb.block_values t
  ON t.run_pk = v.run_pk AND t.stream = v.stream AND t.byte_start = v.byte_start
 AND t.key_id = (SELECT m.key_id FROM wandb.metric_keys m WHERE m.path = '{_timestamp}')
CROSS JOIN LATERAL unnest(v.vals, t.vals, b.keys) WITH ORDINALITY AS u(value, ts, seq, j)
WHERE v.stream = 2 AND k.key NOT IN ('_timestamp', '_wandb') AND u.value IS NOT NULL;
