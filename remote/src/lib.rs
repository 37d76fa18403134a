//! Remote stores: where generations are published and pulled from.
//!
//! Every remote (a directory, another host's state over ssh, an S3 bucket,
//! a read-only web server) is seen through one [`Transport`]: a flat
//! namespace of keys holding bytes. Immutable keys are named by the hash of
//! what they hold; mutable keys (refs, reports, locks) change only through
//! [`Transport::swap`]. The layout of the keys is in `docs/remote.md`.

pub mod error;
pub mod transport;

// The s3 and ssh transports and the server side of ssh.
pub mod s3;
pub mod serve;
pub mod ssh;
pub mod ssh_proto;

pub use error::Error;

pub use transport::{Swap, Transport};
