//! Artifacts: types, sequences (collections), versions, aliases, manifests, and the files of
//! each version, as the 0.31.0 SDK logs and reads them (PROTOCOL.md §6 and §9.6).
//!
//! - [`model`]: the state ([`ArtifactStore`] in [`crate::app::AppState`]) and lookups;
//! - [`ops`]: state transitions shared by GraphQL, uploads, seeding and the Rust API;
//! - [`manifest`]: `wandb_manifest.json` and the artifact digest;
//! - [`filters`]: `filters`/`order` of version listings;
//! - [`http`]: upload routes and the authenticated `/artifactsV2/…` download route;
//! - [`seed`]: deterministic fixtures (`artifacts=N` in a seed spec);
//! - [`api`]: creation and inspection from Rust tests ([`NewArtifactVersion`]).
//!
//! The GraphQL side is in [`crate::schema::artifacts`]. Bytes live in the shared
//! [`crate::blobs::BlobStore`] (uploads keyed by MD5, generated fixtures by generator spec) and
//! signed `directUrl`s use the run files' signed blob route on the direct listener. State is
//! saved in the same snapshot as runs (`state.json`).

pub mod api;
pub mod filters;
pub mod http;
pub mod manifest;
pub mod model;
pub mod ops;
pub mod seed;

pub use api::{
    ArtifactCollectionInfo, ArtifactFileInfo, ArtifactVersionInfo, FileContent, NewArtifactVersion,
    NewFile,
};
pub use model::{ArtifactSnapshot, ArtifactState, ArtifactStore};
pub use ops::ArtifactError;

use std::sync::Arc;

use crate::app::AppState;

/// The artifact state from the shared application state.
pub trait ArtifactsExt {
    /// The artifact store (registered by [`install`]; registered on first use otherwise).
    fn artifacts(&self) -> Arc<ArtifactStore>;
}

impl ArtifactsExt for AppState {
    fn artifacts(&self) -> Arc<ArtifactStore> {
        if let Some(store) = self.extension::<ArtifactStore>() {
            return store;
        }
        // Only reached when `install` was not called (an `AppState` built by hand).
        static REGISTERING: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
        let _guard = REGISTERING.lock();
        if let Some(store) = self.extension::<ArtifactStore>() {
            return store;
        }
        let store = Arc::new(ArtifactStore::default());
        if let Err(e) = self.register_extension(Arc::clone(&store) as _) {
            tracing::error!("artifact state not restored: {e:#}");
        }
        store
    }
}

/// Registers the artifact state (restoring it from the snapshot, if one was loaded) and the
/// `artifact` upload kind. Called once at start.
pub fn install(app: &AppState) -> anyhow::Result<()> {
    if app.extension::<ArtifactStore>().is_none() {
        app.register_extension(Arc::new(ArtifactStore::default()))?;
    }
    app.register_upload_sink("artifact", Arc::new(http::ArtifactUploads));
    Ok(())
}
