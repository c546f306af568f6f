//! `wandb-emulator`: a W&B-compatible server that the real `wandb` SDK (0.31.0) can log runs
//! into and read them back from, for tests, benchmarks and demos.
//!
//! ```no_run
//! use wandb_emulator::{Emulator, EmulatorConfig, SeedSpec};
//!
//! let emu = Emulator::start_with(
//!     EmulatorConfig::default().seed(SeedSpec::new("emulator", "bench").runs(100).steps(1000)),
//! )?;
//! println!("WANDB_BASE_URL={} WANDB_API_KEY=<emu.api_key()>", emu.base_url());
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! Module map (see `ARCHITECTURE.md`): [`state`] (entities → projects → runs), [`schema`]
//! (GraphQL, composable with `MergedObject`), [`http`] (listeners, routes, faults, logging),
//! [`blobs`] (content store), [`signing`] (signed URLs), [`query`] (filters, order, paging),
//! [`seed`] (fixtures), [`faults`], [`reqlog`], [`persist`], [`artifacts`] (types, collections,
//! versions, manifests; the GraphQL side is [`schema::artifacts`]).

pub mod app;
pub mod artifacts;
pub mod blobs;
pub mod config;
pub mod emulator;
pub mod export;
pub mod faults;
pub mod http;
pub mod json;
pub mod persist;
pub mod profile;
pub mod query;
pub mod reqlog;
pub mod schema;
pub mod seed;
pub mod signing;
pub mod state;

pub use artifacts::{
    ArtifactCollectionInfo, ArtifactFileInfo, ArtifactVersionInfo, FileContent, NewArtifactVersion,
};
pub use config::{EmulatorConfig, generate_api_key};
pub use emulator::{Emulator, RunEdit, RunInfo};
pub use faults::{
    ErrorBurst, FaultScope, FaultSettings, LatencyFault, RateLimitFault, RequestFault,
};
pub use reqlog::{Counters, Listener, RequestRecord, RouteKind, Tally};
pub use seed::{SeedReport, SeedSpec};
pub use state::RunKey;
