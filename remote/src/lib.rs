//! Remote stores: where generations are published and pulled from.
//!
//! Every remote (a directory, another host's state over ssh, an S3 bucket,
//! a read-only web server) is seen through one [`Transport`]: a flat
//! namespace of keys holding bytes. Immutable keys are named by the hash of
//! what they hold; mutable keys (refs, reports, locks) change only through
//! [`Transport::swap`]. The layout of the keys is in `docs/remote.md`
//! and [`layout`].

pub mod debs;
pub mod error;
pub mod file;
pub mod http;
pub mod layout;
pub mod local;
pub mod ops;
pub mod secret;
pub mod sign;
pub mod sync;
pub mod transport;

// The s3 and ssh transports and the server side of ssh.
pub mod s3;
pub mod serve;
pub mod ssh;
pub mod ssh_proto;

pub use error::Error;
pub use sync::Moved;
pub use transport::{Swap, Transport};

/// How to reach ssh and s3 remotes: what the CLI read from its
/// environment (the library reads none).
#[derive(Debug, Clone, Default)]
pub struct Connect {
    pub ssh: ssh::SshOptions,
    pub s3: s3::S3Options,
}

/// Opens the remote at `url`: `file:///path` (created on first write when
/// `create`), `http://…` or `https://…` (read-only), `ssh://…` (another
/// host's state, through `sysgen serve`), `s3://bucket/prefix`.
pub fn open(url: &str, create: bool, connect: &Connect) -> Result<Box<dyn Transport>, Error> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        Error::Invalid(format!(
            "{url:?}: not a remote URL; write file:///path, http(s)://host/path, ssh://[user@]host or s3://bucket/prefix"
        ))
    })?;
    match scheme {
        "file" => {
            if rest.is_empty() || !rest.starts_with('/') {
                return Err(Error::Invalid(format!(
                    "{url:?}: a file remote is file:///absolute/path"
                )));
            }
            Ok(Box::new(file::FileTransport::open(
                url,
                std::path::Path::new(rest),
                create,
            )?))
        }
        "http" | "https" => Ok(Box::new(http::HttpTransport::open(url)?)),
        "ssh" => Ok(Box::new(ssh::open(url, &connect.ssh)?)),
        "s3" => Ok(Box::new(s3::open(url, &connect.s3)?)),
        other => Err(Error::Invalid(format!(
            "{url:?}: this sysgen has no {other}:// transport; use file://, http(s)://, ssh:// or s3://"
        ))),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_state;
