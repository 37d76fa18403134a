use std::path::PathBuf;

use crate::Hash;

/// Everything that can go wrong in the store; each variant names its subject.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("could not access {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("store object {hash} is missing; run `sysgen verify --store`")]
    NotFound { hash: Hash },

    #[error(
        "store object {hash} is corrupt (its content no longer matches its hash); run `sysgen verify --store`"
    )]
    Corrupt { hash: Hash },

    #[error("store pack index {} is damaged ({why}); run `sysgen verify --store`", path.display())]
    BadPack { path: PathBuf, why: String },

    /// No readable pack or file holds the object, and a damaged pack of its
    /// area may: only the objects of that pack are lost.
    #[error(
        "store object {hash} cannot be read: it is in no readable pack or file, and the damaged store pack {} may hold it ({why}); `sysgen verify --store` names what needs it, and `sysgen gc` moves the damaged pack aside",
        pack.display()
    )]
    InDamagedPack {
        hash: Hash,
        pack: PathBuf,
        why: String,
    },

    /// The object's frame in a pack no longer matches its hash.
    #[error(
        "store object {hash} in store pack {} is corrupt (its content no longer matches its hash); run `sysgen verify --store`",
        pack.display()
    )]
    CorruptInPack { hash: Hash, pack: PathBuf },

    #[error("`{text}` is not a hash; expected 64 hex characters")]
    BadHash { text: String },

    /// The file's content differed between the pass that hashed it and the pass
    /// that stored it, so no consistent copy exists to store.
    #[error("{} changed while it was being stored; retry once nothing is writing to it", path.display())]
    Changed { path: PathBuf },

    /// An entry of the state directory is not what sysgen made: a symlink,
    /// the wrong type, or another owner. Never followed or used.
    #[error(
        "{}: {why}; sysgen uses only directories and files it made in its state directory (owned by root, no symlinks): remove it or choose another --state-dir",
        path.display()
    )]
    Untrusted { path: PathBuf, why: String },

    /// Writing to the store failed (a full disk, an I/O error): not a
    /// problem of the file being stored.
    #[error("could not write to the store at {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// More packed objects in one area than the in-memory index counts
    /// (2^32): a store far past what one host holds.
    #[error(
        "the store's packs hold {count} objects in one area, more than sysgen can index (2^32)"
    )]
    TooManyPacked { count: u64 },

    /// Writing a verified object out to the caller's writer failed.
    #[error("could not write out store object {hash}: {source}")]
    Output {
        hash: Hash,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// Builds the `map_err` closure for an I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StoreError + use<> {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    }
}
