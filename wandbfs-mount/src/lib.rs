//! The `wandbfs` command's library: the FUSE filesystem ([`fs`], plain and testable without
//! the kernel, and its [`fuse`] adapter), `wandbfs mount`/`unmount` ([`mount`]), `wandbfs demo`
//! ([`demo`]), and the other subcommands. The binary (`src/main.rs`) only parses the command line and dispatches.

pub mod cli;
pub mod config;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod export;
pub mod files;
pub mod fs;
pub mod fuse;
pub mod mount;
pub mod sync;
mod sync_progress;
