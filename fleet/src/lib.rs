//! Fleets: the dead-man's confirmation of a remote switch (`pending`,
//! `watch`), inventories and rollouts over ssh (`inventory`, `ssh`,
//! `rollout`), pull agents' reports.

pub mod inventory;
pub mod pending;
pub mod report;
pub mod rollout;
pub mod ssh;
pub mod watch;
