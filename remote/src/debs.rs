//! The `.deb` files a generation's packages need, published with it.
//!
//! A record (`packages/<hash>`, JSON, named by its BLAKE3) lists each
//! package version of the manifest whose `.deb` the pushing state holds,
//! with the `.deb`'s object hash; the objects travel as any other. The
//! signed ref names the record's hash, so a remote cannot swap a `.deb`.
//! The receiving state records each as it would a `.deb` it fetched
//! itself: switch and rollback to the pulled generation install them
//! offline. A package whose `.deb` the pusher never fetched (a generation
//! built but never switched to there) is not in the record: the host gets
//! it from its apt sources, as for a generation it built itself.

use serde::{Deserialize, Serialize};
use sysgen_generations::{GenerationId, State};
use sysgen_store::{Area, Hash};

use crate::Error;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Debs {
    pub generation: String,
    pub apt: Vec<Deb>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Deb {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub hash: String,
}

/// A record's bytes, its hash and the objects it names.
pub struct Record {
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub objects: Vec<Hash>,
}

impl Record {
    pub fn parse(remote: &str, key: &str, bytes: &[u8]) -> Result<Record, Error> {
        let debs: Debs = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(remote, key, format!("not a packages record: {e}")))?;
        let objects = debs
            .apt
            .iter()
            .map(|d| {
                Hash::from_hex(&d.hash)
                    .map_err(|_| Error::corrupt(remote, key, format!("{}: not a hash", d.name)))
            })
            .collect::<Result<_, _>>()?;
        Ok(Record {
            hash: Hash::of(bytes),
            bytes: bytes.to_vec(),
            objects,
        })
    }
}

/// The record of generation `id` in `state`: `None` when the generation
/// has no package whose `.deb` is stored here.
pub fn record(state: &State, id: &GenerationId) -> Result<Option<Record>, Error> {
    let Some((m, _)) = state.db.manifest(id)? else {
        return Err(Error::Invalid(format!(
            "generation {} is not in this state",
            id.short()
        )));
    };
    let mut apt = Vec::new();
    for (name, pin) in &m.packages.apt {
        if let Some(h) = state
            .db
            .package_file("apt", name, &pin.version, &pin.arch)?
            && state
                .store
                .contains(&h, Area::Public)
                .map_err(|e| Error::State(e.into()))?
        {
            apt.push(Deb {
                name: name.clone(),
                version: pin.version.clone(),
                arch: pin.arch.clone(),
                hash: h.to_hex(),
            });
        }
    }
    if apt.is_empty() {
        return Ok(None);
    }
    let bytes = serde_json::to_vec(&Debs {
        generation: id.0.to_hex(),
        apt,
    })
    .map_err(|e| Error::Invalid(format!("encoding a packages record: {e}")))?;
    Record::parse("local state", "packages", &bytes).map(Some)
}

/// Records the `.deb`s of a record that arrived in `state` (their objects
/// are there already: they arrive first).
pub fn register(state: &mut State, remote: &str, key: &str, bytes: &[u8]) -> Result<(), Error> {
    let debs: Debs = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(remote, key, format!("not a packages record: {e}")))?;
    for d in &debs.apt {
        let h = Hash::from_hex(&d.hash)
            .map_err(|_| Error::corrupt(remote, key, format!("{}: not a hash", d.name)))?;
        if !state
            .store
            .contains(&h, Area::Public)
            .map_err(|e| Error::State(e.into()))?
        {
            return Err(Error::remote(
                remote,
                key,
                format!(
                    "the .deb of {} {} is not here yet: objects go first",
                    d.name, d.version
                ),
            ));
        }
        state
            .db
            .record_package_file("apt", &d.name, &d.version, &d.arch, &h)?;
    }
    Ok(())
}
