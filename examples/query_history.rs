//! One history column over every run of a project, read from the runs' `history.parquet`
//! through [`WandbStore`] as an `object_store::ObjectStore` — the way a query engine reads it:
//! the footer first, then only the byte ranges of the column chunks asked for (the parquet
//! crate's async reader, over a small [`AsyncFileReader`] of an `ObjectStore` object — the
//! crate's own `ParquetObjectReader` is deprecated since parquet 60 in favour of exactly that). Per run it prints the rows, how many hold the
//! column, its mean over the finite values, its minimum and the last step.
//!
//! ```text
//! cargo run --release --example query_history -- alice/proj loss
//! ```
//!
//! The tables are rendered from the mirror, so the store reads the mirror (`WANDBFS_DATABASE_URL`,
//! else the embedded cluster; sync the project first with `wandbfs sync alice/proj`) with the
//! live API behind it (credentials as for `wandbfs sync`).
//!
//! Why not DataFusion: its newest release (55.2) is built on `object_store` 0.13 and arrow 59,
//! wandbfs on `object_store` 0.14 and arrow 60, so `WandbStore` cannot be registered with it, and
//! it would double the CI's build (measured in `docs/BENCHMARKS.md`). Any engine that reads
//! parquet through `object_store` 0.14 reads these files the same way.

use std::error::Error;
use std::sync::Arc;

use std::ops::Range;

use arrow_array::{Array, Float64Array, Int64Array};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, TryStreamExt as _};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

/// A boxed error: the example reports, it does not recover.
pub type BoxError = Box<dyn Error + Send + Sync>;

/// One run's statistics of one column.
#[derive(Clone, Debug, PartialEq)]
pub struct ColumnStats {
    /// The run's id (its directory name).
    pub run_id: String,
    /// Rows of the run's history.
    pub rows: u64,
    /// Rows where the column has a value (NaN and ±Infinity included; nulls not).
    pub count: u64,
    /// Mean of the finite values, if any.
    pub mean: Option<f64>,
    /// Smallest value (NaN ignored), if any.
    pub min: Option<f64>,
    /// Largest `_step`, if any row.
    pub last_step: Option<i64>,
}

/// One object of a store as the parquet reader's input: byte ranges by `get_range(s)`.
struct StoreFile {
    store: Arc<dyn ObjectStore>,
    path: Path,
    /// From `head` (or a listing): the reader needs it to find the footer.
    size: u64,
}

fn parquet_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for StoreFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        // `get_ranges` merges nearby ranges into fewer requests.
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(parquet_error)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let size = self.size;
        async move {
            // The footer and the metadata before it: one request when they fit in 64 KiB.
            let metadata = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(64 << 10))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// The statistics of `column` for every run of `project` (`entity/project`) that has a
/// `history.parquet`, in listing order.
pub async fn column_stats(
    store: Arc<dyn ObjectStore>,
    project: &Path,
    column: &str,
) -> Result<Vec<ColumnStats>, BoxError> {
    let listing = store.list_with_delimiter(Some(project)).await?;
    let mut out = Vec::new();
    for run_dir in listing.common_prefixes {
        let path = run_dir.clone().join("history.parquet");
        // `artifacts/` has no history, and neither would a directory of another kind.
        let meta = match store.head(&path).await {
            Ok(meta) => meta,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let run_id = run_dir.filename().unwrap_or_default().to_owned();
        out.push(run_stats(Arc::clone(&store), path, meta.size, run_id, column).await?);
    }
    Ok(out)
}

async fn run_stats(
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
    run_id: String,
    column: &str,
) -> Result<ColumnStats, BoxError> {
    let file = StoreFile { store, path, size };
    let builder = ParquetRecordBatchStreamBuilder::new(file).await?;
    let rows = builder.metadata().file_metadata().num_rows() as u64;
    let schema = Arc::clone(builder.schema());
    let step_index = schema.index_of("_step")?;
    // Schemas are per run: a run that never logged the column has no such column.
    let value_index = schema.index_of(column).ok();
    let mask = ProjectionMask::roots(
        builder.parquet_schema(),
        [Some(step_index), value_index].into_iter().flatten(),
    );
    let mut batches = builder.with_projection(mask).build()?;
    let mut stats = ColumnStats {
        run_id,
        rows,
        count: 0,
        mean: None,
        min: None,
        last_step: None,
    };
    let (mut sum, mut finite) = (0.0f64, 0u64);
    while let Some(batch) = batches.try_next().await? {
        let steps = batch
            .column_by_name("_step")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .ok_or("_step is not an Int64 column")?;
        stats.last_step = stats.last_step.max(steps.iter().flatten().max());
        let Some(values) = batch.column_by_name(column) else {
            continue;
        };
        let values: Vec<Option<f64>> =
            if let Some(floats) = values.as_any().downcast_ref::<Float64Array>() {
                floats.iter().collect()
            } else if let Some(ints) = values.as_any().downcast_ref::<Int64Array>() {
                ints.iter().map(|v| v.map(|v| v as f64)).collect()
            } else {
                return Err(format!("{column} is not numeric ({})", values.data_type()).into());
            };
        for value in values.into_iter().flatten() {
            stats.count += 1;
            if value.is_finite() {
                sum += value;
                finite += 1;
            }
            if !value.is_nan() {
                stats.min = Some(stats.min.map_or(value, |m: f64| m.min(value)));
            }
        }
    }
    stats.mean = (finite > 0).then(|| sum / finite as f64);
    Ok(stats)
}

#[allow(dead_code)] // Also compiled into a test, which calls `column_stats` only.
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    use wandbfs::client::{Client, ClientConfig, Environment, Overrides, settings};
    use wandbfs::mirror::{ConnectOptions, DatabaseTarget, Mirror};
    use wandbfs::store::{Layered, LiveOptions, LiveSource, MirrorSource, WandbStore};

    let mut args = std::env::args().skip(1);
    let (Some(project), column) = (args.next(), args.next()) else {
        return Err("usage: query_history ENTITY/PROJECT [COLUMN (default: loss)]".into());
    };
    let column = column.unwrap_or_else(|| "loss".to_owned());
    let settings = settings::resolve(&Overrides::default(), &Environment::from_process())?;
    let client = Client::new(settings, ClientConfig::default())?;
    let url = std::env::var("WANDBFS_DATABASE_URL").ok();
    let (target, _) = DatabaseTarget::resolve(url.as_deref(), Default::default())?;
    let mirror = Mirror::connect(&target, &ConnectOptions::default()).await?;
    let source = Layered::new(
        Arc::new(MirrorSource::new(mirror)),
        Arc::new(LiveSource::new(client.clone(), LiveOptions::default())),
    );
    let store: Arc<dyn ObjectStore> = Arc::new(
        WandbStore::builder(client)
            .with_source(Arc::new(source))
            .build(),
    );
    let stats = column_stats(store, &Path::parse(&project)?, &column).await?;
    println!("run_id\trows\tcount({column})\tmean\tmin\tlast_step");
    for s in &stats {
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.6}"));
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}",
            s.run_id,
            s.rows,
            s.count,
            show(s.mean),
            show(s.min),
            s.last_step.map_or("-".to_owned(), |v| v.to_string())
        );
    }
    Ok(())
}
