//! A local state directory (its database and store) seen as a remote.
//!
//! `sysgen pull` writes into one; `sysgen push` reads from one; `sysgen
//! serve` (the ssh transport) answers from one. Objects and secrets live
//! in the store, nodes and manifests in the database, and every other key
//! (refs, signatures, reports) in the database's `remote_keys` table.
//! Whatever arrives is checked against the hash that names it before it is
//! stored; a secret is decrypted with the host's ssh key first (it never
//! reaches the store encrypted, nor leaves it in clear).
//!
//! Objects that arrive are kept in memory and written by one store batch
//! (one pack, two `syncfs`), not one fsync each: before anything that
//! refers to them is stored (a node, a manifest, a record), when they pass
//! [`FLUSH_BYTES`], at [`StateTransport::flush`], and on drop. Objects a
//! killed process held only in memory are simply sent again: nothing
//! referred to them yet.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use sysgen_generations::db::ManifestInfo;
use sysgen_generations::manifest::{Entry, Manifest, Node, NodeSource, walk};
use sysgen_generations::{GenerationId, State};
use sysgen_store::{Area, Hash};

use crate::layout::{self, Key};
use crate::secret::{Identity, Recipient};
use crate::{Error, Swap, Transport};

pub struct StateTransport {
    state: Mutex<State>,
    name: String,
    /// Whom secrets read from this state are encrypted to (push).
    recipients: Vec<Recipient>,
    /// What secrets arriving here are decrypted with (pull).
    identity: Option<Identity>,
    /// Recorded as the build time of manifests that arrive.
    now: i64,
    /// Objects received, not yet durable (see the module comment).
    pending: Mutex<Pending>,
}

/// Past this many bytes of received objects, they are written at once.
pub const FLUSH_BYTES: usize = 64 << 20;

#[derive(Default)]
struct Pending {
    items: Vec<(Hash, Area, Vec<u8>)>,
    keys: HashSet<(Hash, Area)>,
    bytes: usize,
}

impl StateTransport {
    pub fn new(state: State, now: i64) -> StateTransport {
        let name = format!("state {}", state.dir.display());
        StateTransport {
            state: Mutex::new(state),
            name,
            recipients: Vec::new(),
            identity: None,
            now,
            pending: Mutex::new(Pending::default()),
        }
    }

    pub fn with_recipient(mut self, r: Recipient) -> StateTransport {
        self.recipients.push(r);
        self
    }

    pub fn with_identity(mut self, i: Identity) -> StateTransport {
        self.identity = Some(i);
        self
    }

    /// The state, for what the trait does not cover (replay records).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding it leaves nothing half-done in the state
        // (every change is a transaction or an atomic put).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes every object received so far durable (one store batch).
    pub fn flush(&self) -> Result<(), Error> {
        let state = self.lock();
        self.flush_locked(&state)
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // Each change to it is one push or one take: never half-done.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// With the state locked first (the one lock order).
    fn flush_locked(&self, state: &State) -> Result<(), Error> {
        let taken = std::mem::take(&mut *self.pending());
        if taken.items.is_empty() {
            return Ok(());
        }
        let batch = state.store.batch();
        for (_, area, raw) in &taken.items {
            batch.put_bytes(raw, *area).map_err(st)?;
        }
        batch.commit().map_err(st)?;
        Ok(())
    }

    fn hold(&self, state: &State, hash: Hash, area: Area, raw: Vec<u8>) -> Result<(), Error> {
        let full = {
            let mut p = self.pending();
            if p.keys.insert((hash, area)) {
                p.bytes += raw.len();
                p.items.push((hash, area, raw));
            }
            p.bytes >= FLUSH_BYTES
        };
        if full {
            self.flush_locked(state)?;
        }
        Ok(())
    }

    fn has_one(&self, state: &State, key: &str) -> Result<bool, Error> {
        let held = |h: Hash, a: Area| self.pending().keys.contains(&(h, a));
        Ok(match Key::parse(key)? {
            Key::Object(h) => {
                held(h, Area::Public) || state.store.contains(&h, Area::Public).map_err(st)?
            }
            // Held decrypted, whoever it was encrypted to.
            Key::Secret { hash, .. } => {
                held(hash, Area::Secret) || state.store.contains(&hash, Area::Secret).map_err(st)?
            }
            Key::Node(id) => state.db.has_node(&id)?,
            Key::Manifest(id) => state.db.has_manifest(&id)?,
            Key::Packages(_) | Key::Other => state.db.remote_key(key)?.is_some(),
        })
    }

    fn put_manifest(
        &self,
        state: &mut State,
        key: &str,
        id: GenerationId,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(&self.name, key, format!("not a manifest: {e}")))?;
        if m.id()? != id {
            return Err(Error::corrupt(
                &self.name,
                key,
                "manifest does not match its id",
            ));
        }
        if !state.db.has_node(&m.root)? {
            return Err(Error::remote(
                &self.name,
                key,
                "its root node is not here yet: nodes go before their manifest",
            ));
        }
        // The walk reads only nodes already here; it also proves the
        // whole tree arrived before the manifest is recorded.
        let entries = walk(&state.db, m.root)?;
        let bytes_total = entries
            .iter()
            .map(|(_, e)| match e {
                Entry::File { size, .. } => *size,
                _ => 0,
            })
            .sum();
        state.db.put_manifest(
            &m,
            &ManifestInfo {
                config: None,
                entries: entries.len() as u64,
                bytes: bytes_total,
                built_at: self.now,
            },
        )?;
        Ok(())
    }
}

fn st(e: sysgen_store::StoreError) -> Error {
    Error::State(e.into())
}

impl Transport for StateTransport {
    fn describe(&self) -> String {
        self.name.clone()
    }

    fn has(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        let state = self.lock();
        keys.iter().map(|k| self.has_one(&state, k)).collect()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let state = self.lock();
        self.flush_locked(&state)?;
        if !self.has_one(&state, key)? {
            return Ok(None);
        }
        Ok(Some(match Key::parse(key)? {
            Key::Object(h) => {
                let raw = state.store.read(&h, Area::Public).map_err(st)?;
                sysgen_store::frame_of(&raw)
                    .map_err(|e| Error::remote(&self.name, key, format!("compressing: {e}")))?
            }
            Key::Secret { recipient, hash } => {
                let r = self
                    .recipients
                    .iter()
                    .find(|r| r.id == recipient)
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "{key}: a secret for recipient {recipient}, and no --recipient with that id was given"
                        ))
                    })?;
                r.encrypt(&state.store.read(&hash, Area::Secret).map_err(st)?)?
            }
            Key::Node(id) => {
                let body = state.db.node(&id)?.encode()?;
                if Node::id_of(&body) != id {
                    return Err(Error::corrupt(
                        &self.name,
                        key,
                        "node does not encode to its id",
                    ));
                }
                body
            }
            Key::Manifest(id) => match state.db.manifest(&id)? {
                Some((m, _)) => m.encode()?,
                None => return Ok(None),
            },
            Key::Packages(_) | Key::Other => match state.db.remote_key(key)? {
                Some(v) => v,
                None => return Ok(None),
            },
        }))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut state = self.lock();
        if self.has_one(&state, key)? {
            return Ok(());
        }
        layout::verify(&self.name, key, bytes)?;
        let parsed = Key::parse(key)?;
        if !matches!(parsed, Key::Object(_) | Key::Secret { .. }) {
            // What refers to objects comes after they are durable.
            self.flush_locked(&state)?;
        }
        match parsed {
            Key::Object(h) => {
                let raw = layout::unframe(&self.name, key, bytes)?;
                self.hold(&state, h, Area::Public, raw)?;
            }
            Key::Secret { hash, .. } => {
                let identity = self.identity.as_ref().ok_or_else(|| {
                    Error::Invalid(format!(
                        "{key}: a secret arrived and no host key was given to decrypt it (--identity, or the root's /etc/ssh/ssh_host_ed25519_key)"
                    ))
                })?;
                let plain = identity.decrypt(&self.name, key, bytes)?;
                if Hash::of(&plain) != hash {
                    return Err(Error::corrupt(
                        &self.name,
                        key,
                        "decrypted secret does not match its hash",
                    ));
                }
                state.store.put_bytes(&plain, Area::Secret).map_err(st)?;
            }
            Key::Node(id) => {
                let body = bytes.to_vec();
                state.db.insert_nodes(|sink| sink(id, body))?;
            }
            Key::Manifest(id) => self.put_manifest(&mut state, key, id, bytes)?,
            Key::Packages(_) => {
                crate::debs::register(&mut state, &self.name, key, bytes)?;
                // Kept as it came, so that this state can serve it on.
                state.db.swap_remote_key(key, None, bytes)?;
            }
            Key::Other => {
                if let Some(now) = state.db.swap_remote_key(key, None, bytes)?
                    && now.as_deref() != Some(bytes)
                {
                    return Err(Error::remote(&self.name, key, "already holds other bytes"));
                }
            }
        }
        Ok(())
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        let state = self.lock();
        self.flush_locked(&state)?;
        let mut keys: Vec<String> = if prefix.starts_with("objects/") || prefix == "objects" {
            state
                .store
                .list(Area::Public)
                .map_err(st)?
                .iter()
                .map(layout::object)
                .collect()
        } else if prefix.starts_with("manifests/") || prefix == "manifests" {
            state
                .db
                .all_manifest_ids()?
                .iter()
                .map(layout::manifest)
                .collect()
        } else {
            state.db.remote_keys(prefix)?
        };
        keys.retain(|k| k.starts_with(prefix));
        keys.sort();
        Ok(keys)
    }

    fn swap(&self, key: &str, expected: Option<&[u8]>, new: &[u8]) -> Result<Swap, Error> {
        if Key::parse(key)? != Key::Other {
            return Err(Error::Invalid(format!(
                "{key}: content-addressed keys never change; only refs and reports do"
            )));
        }
        let mut state = self.lock();
        self.flush_locked(&state)?;
        Ok(match state.db.swap_remote_key(key, expected, new)? {
            None => Swap::Done,
            Some(now) => Swap::Lost(now),
        })
    }
}

impl Drop for StateTransport {
    fn drop(&mut self) {
        // Nothing refers to objects not yet written (see the module
        // comment): if this fails they are sent again by the next run.
        let _ = self.flush();
    }
}
