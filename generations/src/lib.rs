//! Generations: build a configuration into an immutable, content-addressed
//! generation, and switch a root between generations exactly.
//!
//! Data flow: `sysgen_schema::load` gives a `HostSpec`; [`ingest::build`]
//! hashes and stores its contents and records a Merkle [`manifest`];
//! [`switch::switch_to`] diffs the active manifest against the target
//! ([`manifest::diff`]) and plans through the one [`pipeline`]: every kind
//! of resource ([`kind`], listed once in [`kinds`]) inspects the live root
//! and plans its steps (pure), one sort by phase orders them into a
//! [`plan::Plan`], which is journalled ([`journal`]) and run by [`apply`];
//! the kinds touch the root only through [`rootfs`].
//!
//! The library never prints, reads the environment or the clock: the
//! binary passes the time, the fault point and a [`Progress`] sink in.

pub mod accounts;
pub mod apply;
pub mod blocks;
pub mod checks;
pub mod compare;
pub mod datasets;
pub mod db;
pub mod download;
pub mod error;
pub mod files;
pub mod gc;
pub mod host;
pub mod ingest;
pub mod journal;
pub mod kind;
pub mod kinds;
pub mod manifest;
pub mod memory;
#[cfg(test)]
mod model_tests;
pub mod packages;
pub mod pipeline;
pub mod plan;
mod produce;
pub mod progress;
pub mod recover;
pub mod repair;
pub mod rootfs;
pub mod secrets;
pub mod sections;
pub mod services;
pub mod state;
pub mod storecheck;
pub mod switch;
pub mod template;
pub mod text;
pub mod users;
pub mod validate;
pub mod verify;

pub(crate) use error::io_err;
pub use error::{Drift, Error, PackageError};
pub use manifest::{Entry, GenerationId};
pub use progress::{NoProgress, Progress};
pub use state::State;
