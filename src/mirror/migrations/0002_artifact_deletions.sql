-- Artifact versions and collections deleted in W&B are marked, like runs: a complete artifact
-- listing that no longer shows a version (or a whole collection) sets `deleted` and
-- `deleted_at`; one that shows it again clears them. Readers of the mirror (`WandbStore`, the
-- mount) list only versions that are neither deleted nor in a deleted collection; the
-- `artifacts` view shows them all, with `deleted`.
ALTER TABLE wandb.artifact_versions
    ADD COLUMN deleted    boolean NOT NULL DEFAULT false,
    ADD COLUMN deleted_at timestamptz;
ALTER TABLE wandb.artifact_collections
    ADD COLUMN deleted_at timestamptz;

CREATE OR REPLACE VIEW wandb.artifacts AS
SELECT p.entity, p.name AS project, t.name AS type, c.name AS collection,
       'v' || v.version_index AS version, v.version_index,
       coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM wandb.artifact_aliases a
                 WHERE a.version_pk = v.version_pk), '{}') AS aliases,
       v.digest, v.size_bytes, v.file_count, v.state, v.description, v.metadata,
       v.created_at, v.updated_at, v.version_pk,
       v.deleted OR c.deleted AS deleted
FROM wandb.artifact_versions v
JOIN wandb.artifact_collections c USING (collection_pk)
JOIN wandb.artifact_types t ON t.type_pk = c.type_pk
JOIN wandb.projects p ON p.project_pk = c.project_pk;
