-- wandbfs mirror schema, version 1.
--
-- Everything lives in the schema `wandb` so that the mirror can share a database with other
-- applications. Conventions (docs/MIRROR.md has the full story):
--   * `*_text` columns hold W&B's own JSON text byte for byte (bare NaN/Infinity, key order,
--     int-vs-float spelling); the synthetic files are served from them.
--   * jsonb columns hold the same values for SQL, with NaN/Infinity/-Infinity spelled as the
--     strings "NaN"/"Infinity"/"-Infinity" (Postgres' float8 input accepts them, so
--     `(summary->>'loss')::float8` works).
--   * history.jsonl / system.jsonl bytes live in pre-rendered, byte-offset-indexed chunks
--     (`stream_chunks`); `history` / `system_events` rows are the SQL query surface.

CREATE TABLE wandb.entities (
    entity        text PRIMARY KEY,
    first_seen_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE wandb.projects (
    project_pk      bigserial PRIMARY KEY,
    entity          text NOT NULL REFERENCES wandb.entities ON DELETE CASCADE,
    name            text NOT NULL,
    storage_id      text,
    internal_id     text,
    description     text,
    created_at      timestamptz,
    first_synced_at timestamptz NOT NULL DEFAULT now(),
    last_synced_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (entity, name)
);

CREATE TABLE wandb.runs (
    run_pk              bigserial PRIMARY KEY,
    project_pk          bigint NOT NULL REFERENCES wandb.projects ON DELETE CASCADE,
    run_id              text NOT NULL,              -- W&B `name`: the id in paths and URLs
    storage_id          text,                       -- W&B `id` (opaque, changes on moves)
    display_name        text,
    state               text,
    username            text,
    user_full_name      text,
    group_name          text,
    job_type            text,
    sweep               text,
    tags                text[] NOT NULL DEFAULT '{}',
    notes               text,
    description         text,
    git_commit          text,
    read_only           boolean,
    created_at          timestamptz,
    heartbeat_at        timestamptz,
    updated_at          timestamptz,
    config              jsonb,                      -- raw W&B config ({"k": {"value": v}}), SQL form
    summary             jsonb,
    system_metrics      jsonb,
    history_keys        jsonb,
    config_text         text,                       -- exact W&B text of the same values
    summary_text        text,
    system_metrics_text text,
    last_step           bigint,                     -- as reported by W&B (historyKeys.lastStep)
    history_line_count  bigint,                     -- as reported by W&B (historyLineCount)
    deleted             boolean NOT NULL DEFAULT false,
    deleted_at          timestamptz,
    first_synced_at     timestamptz NOT NULL DEFAULT now(),
    last_synced_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (project_pk, run_id)
);
CREATE INDEX runs_created_at ON wandb.runs (project_pk, created_at);
CREATE INDEX runs_state ON wandb.runs (project_pk, state) WHERE NOT deleted;

-- One row per history step; `row` is the W&B row in SQL form (see header).
-- No foreign key on the two bulk tables: a per-row RI check costs a third of the COPY time;
-- ingest only writes rows of runs whose sync state (which has the key) it holds locked, and the
-- trigger below removes a run's rows when the run itself is deleted.
CREATE TABLE wandb.history (
    run_pk bigint NOT NULL,
    step   bigint NOT NULL,
    row    jsonb NOT NULL,
    PRIMARY KEY (run_pk, step)
);

-- System-metric events (`system.jsonl`), numbered in the order W&B returns them.
CREATE TABLE wandb.system_events (
    run_pk bigint NOT NULL,
    seq    bigint NOT NULL,
    row    jsonb NOT NULL,
    PRIMARY KEY (run_pk, seq)
);

CREATE FUNCTION wandb.delete_run_rows() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM wandb.history WHERE run_pk = OLD.run_pk;
    DELETE FROM wandb.system_events WHERE run_pk = OLD.run_pk;
    RETURN OLD;
END
$$;
CREATE TRIGGER runs_delete_rows AFTER DELETE ON wandb.runs
    FOR EACH ROW EXECUTE FUNCTION wandb.delete_run_rows();

-- Pre-rendered JSON Lines text of a run's streams (1 = history.jsonl, 2 = system.jsonl), in
-- chunks of whole lines. The stream's length is `run_sync_state.history_bytes` /
-- `system_bytes`; chunks tile [0, length) without gaps and may extend past it (bytes of a
-- batch whose row transaction has not committed, or never will: they are cut off by the next
-- batch). Bytes below the length never change, so a reader can serve any offset from one index
-- lookup, clipped at the length read in the same statement.
CREATE TABLE wandb.stream_chunks (
    run_pk     bigint NOT NULL REFERENCES wandb.runs ON DELETE CASCADE,
    stream     smallint NOT NULL,
    byte_start bigint NOT NULL,
    byte_len   integer NOT NULL,
    first_key  bigint NOT NULL,                     -- first step (history) / seq (system)
    last_key   bigint NOT NULL,
    n_rows     integer NOT NULL,
    body       bytea NOT NULL,
    PRIMARY KEY (run_pk, stream, byte_start)
);
-- lz4 decompresses several times faster than the default pglz; servers built without lz4
-- keep pglz.
DO $$
BEGIN
    ALTER TABLE wandb.stream_chunks ALTER COLUMN body SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END
$$;

CREATE TABLE wandb.run_files (
    run_pk     bigint NOT NULL REFERENCES wandb.runs ON DELETE CASCADE,
    name       text NOT NULL,                       -- path relative to the run, `/`-separated
    size_bytes bigint,
    md5        text,                                -- base64, as W&B reports it
    updated_at timestamptz,
    mimetype   text,
    url        text,                                -- authenticated API download URL
    storage_id text,
    synced_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_pk, name)
);

CREATE TABLE wandb.artifact_types (
    type_pk     bigserial PRIMARY KEY,
    project_pk  bigint NOT NULL REFERENCES wandb.projects ON DELETE CASCADE,
    name        text NOT NULL,
    storage_id  text,
    description text,
    created_at  timestamptz,
    UNIQUE (project_pk, name)
);

CREATE TABLE wandb.artifact_collections (
    collection_pk bigserial PRIMARY KEY,
    project_pk    bigint NOT NULL REFERENCES wandb.projects ON DELETE CASCADE,
    type_pk       bigint NOT NULL REFERENCES wandb.artifact_types ON DELETE CASCADE,
    name          text NOT NULL,
    kind          text NOT NULL DEFAULT 'sequence',  -- 'sequence' or 'portfolio'
    storage_id    text,
    description   text,
    tags          text[] NOT NULL DEFAULT '{}',
    created_at    timestamptz,
    updated_at    timestamptz,
    deleted       boolean NOT NULL DEFAULT false,
    UNIQUE (project_pk, name)
);

CREATE TABLE wandb.artifact_versions (
    version_pk       bigserial PRIMARY KEY,
    collection_pk    bigint NOT NULL REFERENCES wandb.artifact_collections ON DELETE CASCADE,
    version_index    integer NOT NULL,               -- N of `vN`
    storage_id       text,
    digest           text,
    digest_algorithm text,
    size_bytes       bigint,
    file_count       bigint,
    state            text,                           -- PENDING / COMMITTED / DELETED
    description      text,
    metadata         jsonb,
    metadata_text    text,
    commit_hash      text,
    history_step     bigint,
    ttl_seconds      bigint,
    created_at       timestamptz,
    updated_at       timestamptz,
    manifest_synced  boolean NOT NULL DEFAULT false,
    synced_at        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (collection_pk, version_index)
);
CREATE INDEX artifact_versions_storage_id ON wandb.artifact_versions (storage_id);

CREATE TABLE wandb.artifact_aliases (
    collection_pk bigint NOT NULL REFERENCES wandb.artifact_collections ON DELETE CASCADE,
    alias         text NOT NULL,
    version_pk    bigint NOT NULL REFERENCES wandb.artifact_versions ON DELETE CASCADE,
    PRIMARY KEY (collection_pk, alias)
);

CREATE TABLE wandb.artifact_manifest_entries (
    version_pk        bigint NOT NULL REFERENCES wandb.artifact_versions ON DELETE CASCADE,
    path              text NOT NULL,
    digest            text,
    size_bytes        bigint,
    ref               text,
    birth_artifact_id text,
    extra             jsonb,
    PRIMARY KEY (version_pk, path)
);

CREATE TABLE wandb.run_artifacts (
    run_pk     bigint NOT NULL REFERENCES wandb.runs ON DELETE CASCADE,
    version_pk bigint NOT NULL REFERENCES wandb.artifact_versions ON DELETE CASCADE,
    direction  text NOT NULL CHECK (direction IN ('input', 'output')),
    PRIMARY KEY (run_pk, version_pk, direction)
);

-- Sync bookkeeping. Written in the same transaction as the data it describes.
CREATE TABLE wandb.project_sync_state (
    project_pk            bigint PRIMARY KEY REFERENCES wandb.projects ON DELETE CASCADE,
    created_watermark     text,                      -- server timestamp strings, kept verbatim
    heartbeat_watermark   text,
    last_full_pass_at     timestamptz,
    last_metadata_pass_at timestamptz,
    last_sync_started_at  timestamptz,
    last_sync_finished_at timestamptz,
    engine_state          jsonb NOT NULL DEFAULT '{}'
);

CREATE TABLE wandb.run_sync_state (
    run_pk              bigint PRIMARY KEY REFERENCES wandb.runs ON DELETE CASCADE,
    history_last_step   bigint,                      -- NULL = no row yet
    history_rows        bigint NOT NULL DEFAULT 0,
    history_bytes       bigint NOT NULL DEFAULT 0,   -- exact size of history.jsonl
    system_last_seq     bigint,
    system_rows         bigint NOT NULL DEFAULT 0,
    system_bytes        bigint NOT NULL DEFAULT 0,   -- exact size of system.jsonl
    history_synced_at   timestamptz,
    files_synced_at     timestamptz,
    artifacts_synced_at timestamptz,
    attempts            integer NOT NULL DEFAULT 0,
    consecutive_errors  integer NOT NULL DEFAULT 0,
    last_error          text,
    last_error_at       timestamptz,
    last_success_at     timestamptz,
    engine_state        jsonb NOT NULL DEFAULT '{}'
);

------------------------------------------------------------------------------------------------
-- Functions used by the views. All IMMUTABLE so that they can be inlined and indexed.

-- A jsonb scalar as float8: numbers, and the strings "NaN", "Infinity", "-Infinity" (the SQL
-- spelling of W&B's non-finite floats). NULL for everything else.
CREATE FUNCTION wandb.as_float8(v jsonb) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE jsonb_typeof(v)
        WHEN 'number' THEN (v #>> '{}')::float8
        WHEN 'string' THEN CASE WHEN v #>> '{}' IN ('NaN', 'Infinity', '-Infinity')
                                THEN (v #>> '{}')::float8 END
    END
$$;

-- Every numeric leaf below `doc`, with dotted paths starting at `prefix` (`a.b.c`, like W&B's
-- history keys). Media objects (with a `_type`) and arrays are not descended into.
CREATE FUNCTION wandb.nested_numeric_leaves(prefix text, doc jsonb)
RETURNS TABLE (key text, value float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH RECURSIVE leaves(key, v) AS (
        SELECT prefix || '.' || e.key, e.value
        FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' AND NOT doc ? '_type'
                             THEN doc ELSE '{}'::jsonb END) AS e
        UNION ALL
        SELECT l.key || '.' || e.key, e.value
        FROM leaves l, jsonb_each(l.v) AS e
        WHERE jsonb_typeof(l.v) = 'object' AND NOT l.v ? '_type'
    )
    SELECT key, wandb.as_float8(v) FROM leaves WHERE wandb.as_float8(v) IS NOT NULL
$$;

-- Every numeric leaf of a document (top-level keys as they are, nested ones dotted).
CREATE FUNCTION wandb.numeric_leaves(doc jsonb)
RETURNS TABLE (key text, value float8)
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT e.key, wandb.as_float8(e.value)
    FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc ELSE '{}'::jsonb END) AS e
    WHERE wandb.as_float8(e.value) IS NOT NULL
    UNION ALL
    SELECT n.key, n.value
    FROM jsonb_each(CASE WHEN jsonb_typeof(doc) = 'object' THEN doc ELSE '{}'::jsonb END) AS e,
         wandb.nested_numeric_leaves(e.key, e.value) AS n
    WHERE jsonb_typeof(e.value) = 'object'
$$;

-- Python's `run.config`: `{"k": {"value": v, "desc": d}}` becomes `{"k": v}`; other shapes are
-- kept; the internal `_wandb` key is dropped.
CREATE FUNCTION wandb.unwrap_config(config jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(jsonb_object_agg(e.key,
               CASE WHEN jsonb_typeof(e.value) = 'object' AND e.value ? 'value'
                    THEN e.value -> 'value' ELSE e.value END), '{}'::jsonb)
    FROM jsonb_each(CASE WHEN jsonb_typeof(config) = 'object' THEN config
                         ELSE '{}'::jsonb END) AS e
    WHERE e.key <> '_wandb'
$$;

------------------------------------------------------------------------------------------------
-- Views for SQL users.

-- Runs with names instead of keys, config unwrapped like Python's `run.config`.
CREATE VIEW wandb.runs_flat AS
SELECT p.entity, p.name AS project, r.run_id, r.display_name, r.state, r.username,
       r.group_name, r.job_type, r.sweep, r.tags, r.notes, r.description, r.git_commit,
       r.created_at, r.heartbeat_at, r.updated_at,
       wandb.unwrap_config(r.config) AS config,
       r.summary, r.system_metrics,
       r.last_step, r.history_line_count, r.deleted, r.deleted_at, r.last_synced_at,
       r.run_pk
FROM wandb.runs r JOIN wandb.projects p USING (project_pk);

-- Long format of config and summary: one row per (run, source, dotted key) leaf. `value` is the
-- jsonb leaf; `number` its float8 value when numeric (NaN/Infinity included).
CREATE VIEW wandb.run_values AS
WITH RECURSIVE leaves(run_pk, source, key, v) AS (
    SELECT r.run_pk, 'config', e.key, e.value
    FROM wandb.runs r, jsonb_each(wandb.unwrap_config(r.config)) AS e
    UNION ALL
    SELECT r.run_pk, 'summary', e.key, e.value
    FROM wandb.runs r, jsonb_each(CASE WHEN jsonb_typeof(r.summary) = 'object'
                                       THEN r.summary ELSE '{}'::jsonb END) AS e
    UNION ALL
    SELECT l.run_pk, l.source, l.key || '.' || e.key, e.value
    FROM leaves l, jsonb_each(l.v) AS e
    WHERE jsonb_typeof(l.v) = 'object' AND NOT l.v ? '_type'
)
SELECT p.entity, p.name AS project, r.run_id, l.source, l.key, l.v AS value,
       wandb.as_float8(l.v) AS number
FROM leaves l JOIN wandb.runs r USING (run_pk) JOIN wandb.projects p USING (project_pk)
WHERE jsonb_typeof(l.v) <> 'object' OR l.v ? '_type';

-- A wide view of one project's runs: one column per top-level config key (`config.<k>`) and
-- summary key (`summary.<k>`), typed float8 when every non-null value of the key is numeric
-- (NaN/Infinity included), text when all are strings, jsonb otherwise. A view's columns are
-- fixed when it is created, so this function (re)creates it from the keys present now:
--   SELECT wandb.create_runs_wide_view('wandb.vision_runs', 'team', 'vision');
--   SELECT run_id, "config.lr", "summary.loss" FROM wandb.vision_runs ORDER BY 3;
-- `view_name` may be schema-qualified; unqualified, the view goes to the first schema of the
-- search_path. Returns the view's (quoted) name.
CREATE FUNCTION wandb.create_runs_wide_view(view_name text, p_entity text, p_project text)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    cols text := '';
    target text := array_to_string(
        ARRAY(SELECT quote_ident(part) FROM unnest(parse_ident(view_name)) AS part), '.');
    k record;
BEGIN
    FOR k IN
        SELECT v.source, v.key,
               bool_and(wandb.as_float8(v.value) IS NOT NULL) AS all_numeric,
               bool_and(jsonb_typeof(v.value) = 'string') AS all_text
        FROM (
            SELECT 'config' AS source, e.key, e.value
            FROM wandb.runs_flat r, jsonb_each(r.config) AS e
            WHERE r.entity = p_entity AND r.project = p_project
            UNION ALL
            SELECT 'summary', e.key, e.value
            FROM wandb.runs_flat r,
                 jsonb_each(CASE WHEN jsonb_typeof(r.summary) = 'object' THEN r.summary
                                 ELSE '{}'::jsonb END) AS e
            WHERE r.entity = p_entity AND r.project = p_project
        ) v
        WHERE jsonb_typeof(v.value) <> 'null'
        GROUP BY v.source, v.key
        ORDER BY v.source, v.key
    LOOP
        cols := cols || format(', %s AS %I',
            CASE WHEN k.all_numeric THEN format('wandb.as_float8(%I -> %L)', k.source, k.key)
                 WHEN k.all_text THEN format('%I ->> %L', k.source, k.key)
                 ELSE format('%I -> %L', k.source, k.key) END,
            k.source || '.' || k.key);
    END LOOP;
    EXECUTE format('DROP VIEW IF EXISTS %s', target);
    EXECUTE format(
        'CREATE VIEW %s AS SELECT entity, project, run_id, display_name, state, tags, '
        'created_at, deleted%s FROM wandb.runs_flat WHERE entity = %L AND project = %L',
        target, cols, p_entity, p_project);
    RETURN target;
END
$$;

-- History rows with names.
CREATE VIEW wandb.history_rows AS
SELECT p.entity, p.name AS project, r.run_id, h.step, h.row
FROM wandb.history h JOIN wandb.runs r USING (run_pk) JOIN wandb.projects p USING (project_pk);

-- Long-format numeric history, like Fivetran's W&B connector: one row per (run, step, key) for
-- every numeric leaf (nested keys dotted); NaN/±Infinity come out as float8 NaN/±Infinity.
-- `_step` itself is left out (it is the `step` column). Top-level keys are expanded inline (so
-- a filter on `key` is cheap); only object values go through the recursive function.
CREATE VIEW wandb.metrics AS
SELECT p.entity, p.name AS project, r.run_id, h.step, e.key, wandb.as_float8(e.value) AS value
FROM wandb.history h
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk)
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(h.row) = 'object' THEN h.row
                                   ELSE '{}'::jsonb END) AS e
WHERE e.key <> '_step' AND wandb.as_float8(e.value) IS NOT NULL
UNION ALL
SELECT p.entity, p.name AS project, r.run_id, h.step, n.key, n.value
FROM wandb.history h
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk)
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(h.row) = 'object' THEN h.row
                                   ELSE '{}'::jsonb END) AS e
CROSS JOIN LATERAL wandb.nested_numeric_leaves(e.key, e.value) AS n
WHERE jsonb_typeof(e.value) = 'object';

-- The same for system events; `ts` is the event's `_timestamp`.
CREATE VIEW wandb.system_metrics AS
SELECT p.entity, p.name AS project, r.run_id, s.seq,
       to_timestamp(wandb.as_float8(s.row -> '_timestamp')) AS ts, e.key,
       wandb.as_float8(e.value) AS value
FROM wandb.system_events s
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk)
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(s.row) = 'object' THEN s.row
                                   ELSE '{}'::jsonb END) AS e
WHERE e.key NOT IN ('_timestamp', '_wandb') AND wandb.as_float8(e.value) IS NOT NULL
UNION ALL
SELECT p.entity, p.name AS project, r.run_id, s.seq,
       to_timestamp(wandb.as_float8(s.row -> '_timestamp')) AS ts, n.key, n.value
FROM wandb.system_events s
JOIN wandb.runs r USING (run_pk)
JOIN wandb.projects p USING (project_pk)
CROSS JOIN LATERAL jsonb_each(CASE WHEN jsonb_typeof(s.row) = 'object' THEN s.row
                                   ELSE '{}'::jsonb END) AS e
CROSS JOIN LATERAL wandb.nested_numeric_leaves(e.key, e.value) AS n
WHERE jsonb_typeof(e.value) = 'object';

-- Run files with names.
CREATE VIEW wandb.files AS
SELECT p.entity, p.name AS project, r.run_id, f.name, f.size_bytes, f.md5, f.updated_at,
       f.mimetype, f.url
FROM wandb.run_files f JOIN wandb.runs r USING (run_pk) JOIN wandb.projects p USING (project_pk);

-- Artifact versions with their type, collection, `vN` name and aliases.
CREATE VIEW wandb.artifacts AS
SELECT p.entity, p.name AS project, t.name AS type, c.name AS collection,
       'v' || v.version_index AS version, v.version_index,
       coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM wandb.artifact_aliases a
                 WHERE a.version_pk = v.version_pk), '{}') AS aliases,
       v.digest, v.size_bytes, v.file_count, v.state, v.description, v.metadata,
       v.created_at, v.updated_at, v.version_pk
FROM wandb.artifact_versions v
JOIN wandb.artifact_collections c USING (collection_pk)
JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
JOIN wandb.projects p ON p.project_pk = c.project_pk;
