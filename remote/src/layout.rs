//! The keys of a remote (see `docs/remote.md`): what each holds and how
//! what arrives under it is checked against its name.
//!
//! ```text
//! objects/<hash>                 zstd frame of a public file's content (hash: BLAKE3 of the raw bytes)
//! secrets/<recipient>/<hash>     a secret file's content, age-encrypted to one host's ssh key
//! nodes/<id>                     a directory node, as the state encodes it (id: its BLAKE3)
//! manifests/<id>                 a generation's manifest record (id: its BLAKE3, the generation id)
//! signatures/<id>/<key>          a signature of manifest <id> by public key <key>
//! packages/<hash>                the .debs a generation's packages need (see `debs`)
//! hosts/NAME roles/NAME channels/NAME   refs: signed, sequenced, with their history
//! reports/NAME                   what a host reported (written by the fleet's pull agents)
//! ```

use sysgen_generations::GenerationId;
use sysgen_generations::manifest::{Node, NodeId};
use sysgen_store::Hash;

use crate::Error;

/// The kinds of ref, each a directory of the remote.
pub const REF_KINDS: &[&str] = &["hosts", "roles", "channels"];

pub fn object(h: &Hash) -> String {
    format!("objects/{}", h.to_hex())
}

pub fn secret(recipient: &str, h: &Hash) -> String {
    format!("secrets/{recipient}/{}", h.to_hex())
}

pub fn node(id: &NodeId) -> String {
    format!("nodes/{}", id.0.to_hex())
}

pub fn manifest(id: &GenerationId) -> String {
    format!("manifests/{}", id.0.to_hex())
}

pub fn packages(h: &Hash) -> String {
    format!("packages/{}", h.to_hex())
}

pub fn signature(id: &GenerationId, key_hex: &str) -> String {
    format!("signatures/{}/{key_hex}", id.0.to_hex())
}

pub fn report(name: &str) -> Result<String, Error> {
    check_name(name, "a report")?;
    Ok(format!("reports/{name}"))
}

/// What a key names, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Object(Hash),
    Secret {
        recipient: String,
        hash: Hash,
    },
    Node(NodeId),
    Manifest(GenerationId),
    /// A generation's record of `.deb` files, named by its hash.
    Packages(Hash),
    /// Anything else: refs, signatures, reports, held as they are.
    Other,
}

impl Key {
    pub fn parse(key: &str) -> Result<Key, Error> {
        check_key(key)?;
        let parts: Vec<&str> = key.split('/').collect();
        let hash = |s: &str| {
            Hash::from_hex(s)
                .map_err(|_| Error::Invalid(format!("{key}: {s:?} is not a 64-digit hex hash")))
        };
        Ok(match parts.as_slice() {
            ["objects", h] => Key::Object(hash(h)?),
            ["secrets", r, h] => Key::Secret {
                recipient: (*r).to_owned(),
                hash: hash(h)?,
            },
            ["nodes", h] => Key::Node(NodeId(hash(h)?)),
            ["manifests", h] => Key::Manifest(GenerationId(hash(h)?)),
            ["packages", h] => Key::Packages(hash(h)?),
            [
                "objects" | "secrets" | "nodes" | "manifests" | "packages",
                ..,
            ] => {
                return Err(Error::Invalid(format!(
                    "{key}: not a key of the remote layout (see docs/remote.md)"
                )));
            }
            _ => Key::Other,
        })
    }
}

/// A key is relative, `/`-separated names of `[A-Za-z0-9._-]`, none empty
/// or starting with a dot (so never `..`, and never a transport's own
/// temp or lock file, which start with one).
pub fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > 512 {
        return Err(Error::Invalid(format!(
            "{key:?}: not a remote key (empty or too long)"
        )));
    }
    for part in key.split('/') {
        check_name(part, key)?;
    }
    Ok(())
}

fn check_name(part: &str, what: &str) -> Result<(), Error> {
    let ok = !part.is_empty()
        && !part.starts_with('.')
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what}: {part:?} is not a valid name (letters, digits, '.', '_', '-', '@'; not empty, not starting with '.')"
        )))
    }
}

/// A ref's key from what the user wrote: `hosts/NAME`, `roles/NAME` or
/// `channels/NAME`.
pub fn ref_key(name: &str) -> Result<String, Error> {
    let bad = || {
        Error::Invalid(format!(
            "{name:?}: not a ref; write hosts/NAME, roles/NAME or channels/NAME"
        ))
    };
    let (kind, rest) = name.split_once('/').ok_or_else(bad)?;
    if !REF_KINDS.contains(&kind) || rest.contains('/') {
        return Err(bad());
    }
    check_name(rest, name)?;
    Ok(name.to_owned())
}

/// Checks bytes that arrived under `key` against the hash that names it.
/// Secrets are checked once decrypted (by the host that holds the key);
/// keys of other kinds are not content-addressed (refs are signed).
pub fn verify(remote: &str, key: &str, bytes: &[u8]) -> Result<(), Error> {
    match Key::parse(key)? {
        Key::Object(h) => {
            let raw = unframe(remote, key, bytes)?;
            if Hash::of(&raw) != h {
                return Err(Error::corrupt(
                    remote,
                    key,
                    "content does not match its hash",
                ));
            }
        }
        Key::Node(id) => {
            if Node::id_of(bytes) != id {
                return Err(Error::corrupt(remote, key, "node does not match its id"));
            }
            Node::decode(bytes)
                .map_err(|e| Error::corrupt(remote, key, format!("not a node: {e}")))?;
        }
        Key::Packages(h) => {
            if Hash::of(bytes) != h {
                return Err(Error::corrupt(
                    remote,
                    key,
                    "record does not match its hash",
                ));
            }
        }
        Key::Manifest(id) => {
            if Hash::of(bytes) != id.0 {
                return Err(Error::corrupt(
                    remote,
                    key,
                    "manifest does not match its id",
                ));
            }
        }
        Key::Secret { .. } | Key::Other => {}
    }
    Ok(())
}

/// An object's raw content from its zstd frame. Objects are files of a
/// root, so their size is not bounded here beyond what zstd declares.
pub fn unframe(remote: &str, key: &str, frame: &[u8]) -> Result<Vec<u8>, Error> {
    zstd::decode_all(frame)
        .map_err(|e| Error::corrupt(remote, key, format!("not a zstd frame: {e}")))
}
