//! verify: compare the root with the active generation, every kind its own
//! part (the tree entry by entry, files hashed in parallel; packages
//! against what is installed; units' enablement); with `--store`, also
//! rehash every store object, and check that every object a kept
//! generation, the ledger or a saved copy needs can be read, naming who
//! needs what is not.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;
use sysgen_store::{Area, Hash, HashKeySet};

use crate::db::Origin;
use crate::host::Options;
use crate::kinds;
use crate::manifest::{Entry, walk};
use crate::storecheck::problem;
use crate::{Drift, Error, Progress, State};

#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyOutcome {
    pub active: Option<u64>,
    pub entries: u64,
    pub drift: Vec<Drift>,
    /// With `--store`: objects checked and those whose content no longer matches.
    pub objects_checked: u64,
    pub corrupt_objects: Vec<String>,
    /// Corrupt objects of the secret area: counted, never named (their
    /// names are hashes of secrets).
    pub corrupt_secret_objects: u64,
    /// With `--store`: packs left out of the store because they are damaged
    /// ("<pack>: <why>"); `sysgen gc` moves them aside.
    pub damaged_packs: Vec<String>,
    /// With `--store`: files of kept generations whose content the store
    /// cannot give (public ones; secret ones are only counted).
    pub unreadable: Vec<Unreadable>,
    pub unreadable_secret: u64,
    /// The kept generations that cannot be switched to for lack of them.
    pub affected_generations: Vec<u64>,
    /// Paths whose copy from before sysgen (the ledger) cannot be read.
    pub unreadable_originals: Vec<String>,
    /// Copies kept by `--force` that cannot be read (counted).
    pub unreadable_saved: u64,
}

impl VerifyOutcome {
    /// Whether the store cannot give something that is needed.
    pub fn store_damaged(&self) -> bool {
        !self.damaged_packs.is_empty()
            || !self.unreadable.is_empty()
            || self.unreadable_secret > 0
            || !self.unreadable_originals.is_empty()
            || self.unreadable_saved > 0
    }
}

/// A file whose content the store cannot give.
#[derive(Debug, Clone, Serialize)]
pub struct Unreadable {
    pub path: String,
    pub generations: Vec<u64>,
    /// e.g. "missing from the store".
    pub what: String,
}

/// Compares the root with the active generation, kind by kind; with
/// `store`, also rehashes every store object.
pub fn verify(
    state: &State,
    store: bool,
    opts: &Options,
    progress: &dyn Progress,
) -> Result<VerifyOutcome, Error> {
    let mut out = VerifyOutcome::default();
    if let Some(active) = state.db.active()? {
        out.active = Some(active.number);
        let (m, _) = state.db.manifest(&active.id)?.ok_or_else(|| {
            Error::CorruptManifest(format!(
                "the manifest of generation {} is missing",
                active.number
            ))
        })?;
        for k in kinds::all() {
            let v = k.verify(state, &m, opts, progress)?;
            out.entries += v.entries;
            out.drift.extend(v.drift);
        }
    }
    if store {
        for area in [Area::Public, Area::Secret] {
            let objects = &state.store;
            let list = objects.list(area)?;
            progress.start("checking store", list.len() as u64);
            let bad: Vec<Result<Option<String>, Error>> = list
                .par_iter()
                .map(|h| {
                    let ok = objects.check(h, area)?;
                    progress.advance(1);
                    Ok((!ok).then(|| h.to_hex()))
                })
                .collect();
            progress.finish();
            out.objects_checked += list.len() as u64;
            for b in bad {
                if let Some(h) = b? {
                    match area {
                        Area::Public => out.corrupt_objects.push(h),
                        Area::Secret => out.corrupt_secret_objects += 1,
                    }
                }
            }
        }
        needed(state, &mut out)?;
    }
    Ok(out)
}

/// One object something needs: which generation (none: the ledger or a
/// saved copy), at which path.
pub struct Need {
    pub generation: Option<u64>,
    pub path: String,
    pub hash: Hash,
    pub area: Area,
    /// A ledger record (the path's copy from before sysgen).
    pub original: bool,
}

/// Every object that a kept generation's tree, a ledger `File` origin or a
/// saved copy refers to.
pub fn needs(state: &State) -> Result<Vec<Need>, Error> {
    let mut out = Vec::new();
    for g in state.db.generations()? {
        if g.collected_at.is_some() {
            continue;
        }
        let Some((m, _)) = state.db.manifest(&g.id)? else {
            return Err(Error::CorruptManifest(format!(
                "the manifest of generation {} is missing",
                g.number
            )));
        };
        for (p, e) in state.db.reading(|db| walk(db, m.root))? {
            if let Entry::File { hash, secret, .. } = e {
                out.push(Need {
                    generation: Some(g.number),
                    path: p.to_string(),
                    hash,
                    area: if secret { Area::Secret } else { Area::Public },
                    original: false,
                });
            }
        }
    }
    for (p, o) in state.db.ledger()? {
        if let Origin::File { hash, .. } = o {
            out.push(Need {
                generation: None,
                path: p.to_string(),
                hash,
                area: Area::Secret,
                original: true,
            });
        }
    }
    for hash in state.db.saved_hashes()? {
        out.push(Need {
            generation: None,
            path: String::new(),
            hash,
            area: Area::Secret,
            original: false,
        });
    }
    Ok(out)
}

/// Reads every object that is needed once (in parallel) and records in
/// `out` who needs those the store cannot give.
fn needed(state: &State, out: &mut VerifyOutcome) -> Result<(), Error> {
    for d in state.store.damaged_packs()? {
        out.damaged_packs
            .push(format!("{}: {}", d.path.display(), d.why));
    }
    let needs = needs(state)?;
    let mut seen = HashKeySet::default();
    let unique: Vec<(Hash, Area)> = needs
        .iter()
        .map(|n| (n.hash, n.area))
        .filter(|k| seen.insert(*k))
        .collect();
    let store = &state.store;
    let health: Vec<_> = unique
        .par_iter()
        .map(|(h, a)| store.health(h, *a))
        .collect();
    let mut bad = std::collections::HashMap::new();
    for (k, h) in unique.into_iter().zip(health) {
        if let Some(what) = problem(&h?) {
            bad.insert(k, what);
        }
    }
    let mut public: BTreeMap<String, (BTreeSet<u64>, String)> = BTreeMap::new();
    let mut secret = BTreeSet::new();
    let mut affected = BTreeSet::new();
    for n in &needs {
        let Some(what) = bad.get(&(n.hash, n.area)) else {
            continue;
        };
        match (n.generation, n.area) {
            (Some(g), area) => {
                affected.insert(g);
                if area == Area::Public {
                    let e = public.entry(n.path.clone()).or_default();
                    e.0.insert(g);
                    e.1.clone_from(what);
                } else {
                    secret.insert(&n.path);
                }
            }
            (None, _) if n.original => out.unreadable_originals.push(n.path.clone()),
            (None, _) => out.unreadable_saved += 1,
        }
    }
    out.unreadable = public
        .into_iter()
        .map(|(path, (gens, what))| Unreadable {
            path,
            generations: gens.into_iter().collect(),
            what,
        })
        .collect();
    out.unreadable_secret = secret.len() as u64;
    out.affected_generations = affected.into_iter().collect();
    Ok(())
}
