//! wandbfs: Weights & Biases data as an [`object_store`]-style store, a Postgres mirror and a
//! filesystem.
//!
//! The crate is organised in layers, each with one job:
//! - `client`: the W&B API client (GraphQL over HTTP, auth and settings resolved like the SDK).
//! - `store`: `WandbStore`, the `object_store::ObjectStore` over runs, files and artifacts.
//! - `mirror`: the Postgres mirror.
//! - `export`: a mirrored project as parquet or JSON Lines files.
//! - `parquet_history`: reading W&B's parquet history exports.
//! - `sync`: the sync engine that fills the mirror from W&B.
#![forbid(unsafe_code)]

pub mod client;
pub mod export;
pub mod mirror;
pub mod parquet_history;
pub mod store;
pub mod sync;
pub mod values;

/// The README's Rust blocks, compiled as doc tests so the README cannot drift from the API.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
