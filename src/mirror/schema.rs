//! Versioned schema migrations.
//!
//! Migrations are SQL files in `src/mirror/migrations/NNNN_name.sql`, compiled into the binary.
//! [`migrate`] applies the missing ones in one transaction while holding a transaction-scoped
//! advisory lock, so concurrent processes that start at once serialise: the first applies, the
//! others then find nothing to do. Applied versions are recorded in `wandb.schema_version` with
//! a checksum of their text; a database whose highest version is newer than this binary's is
//! refused ([`MirrorError::SchemaTooNew`]) rather than written with an older idea of the schema.

use md5::{Digest, Md5};
use tokio_postgres::Client;

use super::error::{DbContext, MirrorError, Result};

/// One migration compiled into the binary.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// Version number, from the file name (`0001` → 1).
    pub version: i32,
    /// Name, from the file name (`0001_initial.sql` → `initial`).
    pub name: &'static str,
    /// The SQL text.
    pub sql: &'static str,
}

impl Migration {
    /// Hex MD5 of the SQL text, recorded when the migration is applied.
    pub fn checksum(&self) -> String {
        let digest = Md5::digest(self.sql.as_bytes());
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// All migrations, in version order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "artifact_deletions",
        sql: include_str!("migrations/0002_artifact_deletions.sql"),
    },
    Migration {
        version: 3,
        name: "run_listing_index",
        sql: include_str!("migrations/0003_run_listing_index.sql"),
    },
    Migration {
        version: 4,
        name: "history_blocks",
        sql: include_str!("migrations/0004_history_blocks.sql"),
    },
    Migration {
        version: 5,
        name: "block_value_kinds",
        sql: include_str!("migrations/0005_block_value_kinds.sql"),
    },
];

/// The schema version this binary writes and reads.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Advisory-lock key that serialises migrations across processes ("wandbfs" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x0077_616e_6462_6673;

/// What [`migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// Schema version found before migrating (0 = empty database).
    pub from_version: i32,
    /// Versions applied by this call, in order.
    pub applied: Vec<i32>,
}

/// Brings the database to [`SCHEMA_VERSION`], or refuses when it is newer.
///
/// Safe to call from many processes at once and on every start.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport> {
    let tx = client
        .transaction()
        .await
        .db("starting the migration transaction")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .db("taking the migration lock")?;
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS wandb;
         CREATE TABLE IF NOT EXISTS wandb.schema_version (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             checksum   text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .db("creating the schema_version table")?;
    let applied = applied_versions(&tx).await?;
    let from_version = applied.last().map_or(0, |(v, _)| *v);
    if from_version > SCHEMA_VERSION {
        return Err(MirrorError::SchemaTooNew {
            found: from_version,
            supported: SCHEMA_VERSION,
        });
    }
    verify_checksums(&applied)?;
    let mut report = MigrationReport {
        from_version,
        applied: Vec::new(),
    };
    for migration in MIGRATIONS.iter().filter(|m| m.version > from_version) {
        tx.batch_execute(migration.sql)
            .await
            .db("applying a schema migration")?;
        tx.execute(
            "INSERT INTO wandb.schema_version (version, name, checksum) VALUES ($1, $2, $3)",
            &[&migration.version, &migration.name, &migration.checksum()],
        )
        .await
        .db("recording a schema migration")?;
        report.applied.push(migration.version);
    }
    tx.commit().await.db("committing the schema migrations")?;
    if !report.applied.is_empty() {
        tracing::info!(
            from = from_version,
            to = SCHEMA_VERSION,
            "mirror schema migrated"
        );
    }
    Ok(report)
}

/// The highest schema version recorded in the database (0 when the mirror schema is absent).
pub async fn current_version(client: &Client) -> Result<i32> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('wandb.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .db("looking for the schema_version table")?
        .get(0);
    if !exists {
        return Ok(0);
    }
    Ok(applied_versions(client)
        .await?
        .last()
        .map_or(0, |(v, _)| *v))
}

/// Checks, without changing anything, that the database has exactly [`SCHEMA_VERSION`].
///
/// For read-only users (mounts in team mode) that must not run DDL.
pub async fn check(client: &Client) -> Result<i32> {
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('wandb.schema_version') IS NOT NULL",
            &[],
        )
        .await
        .db("looking for the schema_version table")?
        .get(0);
    let applied = if exists {
        applied_versions(client).await?
    } else {
        Vec::new()
    };
    let found = applied.last().map_or(0, |(v, _)| *v);
    if found > SCHEMA_VERSION {
        return Err(MirrorError::SchemaTooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        return Err(MirrorError::SchemaTooOld {
            found,
            required: SCHEMA_VERSION,
        });
    }
    verify_checksums(&applied)?;
    Ok(found)
}

async fn applied_versions(
    client: &impl tokio_postgres::GenericClient,
) -> Result<Vec<(i32, String)>> {
    let rows = client
        .query(
            "SELECT version, checksum FROM wandb.schema_version ORDER BY version",
            &[],
        )
        .await
        .db("reading schema_version")?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

fn verify_checksums(applied: &[(i32, String)]) -> Result<()> {
    for (version, checksum) in applied {
        if let Some(m) = MIGRATIONS.iter().find(|m| m.version == *version) {
            let expected = m.checksum();
            if *checksum != expected {
                return Err(MirrorError::MigrationMismatch {
                    version: *version,
                    name: m.name.to_string(),
                    found: checksum.clone(),
                    expected,
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
        }
        assert_eq!(SCHEMA_VERSION as usize, MIGRATIONS.len());
    }
}
