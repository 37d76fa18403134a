//! The one interface every remote implements.

/// What a [`Transport::swap`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Swap {
    /// The key held what the caller expected; it now holds the new bytes.
    Done,
    /// The key held something else (or nothing, or something where nothing
    /// was expected): nothing was written. Carries what it holds now.
    Lost(Option<Vec<u8>>),
}

/// A remote seen as keys holding bytes.
///
/// Keys are relative, `/`-separated, without `..` (see `docs/remote.md`).
/// Errors name the remote and the key.
pub trait Transport: Send + Sync {
    /// The remote as the user wrote it, for messages.
    fn describe(&self) -> String;

    /// Which of `keys` the remote holds, in order: one round trip where the
    /// transport allows, so that comparing what both sides have costs one
    /// exchange, not one per object.
    fn has(&self, keys: &[String]) -> Result<Vec<bool>, crate::Error>;

    /// The bytes under `key`, or `None` when there are none.
    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, crate::Error>;

    /// Writes an immutable key. Writing bytes a key already holds is a
    /// no-op; a reader never sees a half-written value.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), crate::Error>;

    /// The keys under `prefix`, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>, crate::Error>;

    /// Replaces a mutable key if it still holds `expected` (`None`: if it
    /// does not exist). Compare-and-swap where the remote supports it, a
    /// documented lock where it does not; a read-only remote refuses.
    fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Swap, crate::Error>;
}
