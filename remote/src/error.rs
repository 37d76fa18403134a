//! Errors of remotes: each names the remote and, where there is one, the key.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The remote failed or refused an operation on one key (an empty
    /// key: on the remote as a whole, a connection, and is not printed).
    #[error("{remote}: {}{message}", key_part(key))]
    Remote {
        remote: String,
        key: String,
        message: String,
    },
    /// The command line or a file given on it is wrong (a URL, a key file,
    /// a ref name): exit 2, nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// Pull or copy refused what a remote holds: unsigned, forged, signed
    /// by a key this host does not trust, replayed, or a secret not
    /// encrypted for this host. Exit 2, nothing changed.
    #[error("{remote}: {key}: refused: {why}")]
    Refused {
        remote: String,
        key: String,
        why: String,
    },
    /// What arrived does not match the hash that names it.
    #[error("{remote}: {key}: corrupt: {why}")]
    Corrupt {
        remote: String,
        key: String,
        why: String,
    },
    /// Another writer moved the ref first (compare-and-swap lost).
    #[error("{remote}: {key}: changed while this command ran (another push won); run it again")]
    Lost { remote: String, key: String },
    /// The local state (database, store) failed.
    #[error(transparent)]
    State(#[from] sysgen_generations::Error),
}

impl Error {
    /// Input that is wrong, or a remote's content refused: exit 2.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            Error::Invalid(_) | Error::Refused { .. } => true,
            Error::State(e) => e.is_invalid_input(),
            _ => false,
        }
    }

    pub(crate) fn remote(remote: &str, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Remote {
            remote: remote.to_owned(),
            key: key.to_owned(),
            message: message.to_string(),
        }
    }

    pub(crate) fn refused(remote: &str, key: &str, why: impl std::fmt::Display) -> Error {
        Error::Refused {
            remote: remote.to_owned(),
            key: key.to_owned(),
            why: why.to_string(),
        }
    }

    pub(crate) fn corrupt(remote: &str, key: &str, why: impl std::fmt::Display) -> Error {
        Error::Corrupt {
            remote: remote.to_owned(),
            key: key.to_owned(),
            why: why.to_string(),
        }
    }
}

/// `KEY: `, or nothing for an error about no key in particular.
fn key_part(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}
