//! Errors of remotes: each names the remote and, where there is one, the key.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote failed or refused an operation on one key.
    #[error("{remote}: {key}: {message}")]
    Remote {
        remote: String,
        key: String,
        message: String,
    },
}
