//! gc: delete old generations, then the manifests, nodes and store objects
//! that nothing kept refers to.
//!
//! Never deleted: the active generation, pinned ones, the `--keep` newest,
//! those younger than `--older-than`; objects that a kept generation, the
//! ledger (what was on the root before sysgen) or a saved copy (a file
//! `--force` overwrote) refers to. Without `--keep` or `--older-than`, no
//! generation is deleted, only what no generation refers to (builds never
//! switched to, and their objects), as `nix-store --gc` does.
//!
//! Database rows go first, in one transaction; store objects after it
//! commits. A crash in between leaves unreferenced objects that the next
//! gc removes, never a generation that refers to a missing object.

use serde::Serialize;
use sysgen_store::{Area, Hash, HashKeySet};

use crate::db::Origin;
use crate::manifest::{Entry, NodeId, NodeSource};
use crate::{Error, GenerationId, State};

pub struct GcOptions {
    pub keep: Option<usize>,
    /// In seconds: only generations created longer ago than this go.
    pub older_than: Option<i64>,
    pub dry_run: bool,
    pub now: i64,
    /// Where btrfs and zfs are, to destroy datasets no generation has.
    pub tools: crate::datasets::Tools,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcOutcome {
    pub dry_run: bool,
    pub generations: Vec<u64>,
    pub manifests: u64,
    pub nodes: u64,
    pub objects: u64,
    pub bytes_freed: u64,
    /// Detached datasets and snapshots destroyed: no remaining generation has them.
    pub datasets: Vec<crate::datasets::GcDataset>,
}

pub fn gc(state: &mut State, opts: &GcOptions) -> Result<GcOutcome, Error> {
    state.refuse_if_interrupted()?;
    let active = state.db.active()?.map(|a| a.number);
    let live: Vec<_> = state
        .db
        .generations()?
        .into_iter()
        .filter(|g| g.collected_at.is_none())
        .collect();
    let mut doomed = Vec::new();
    if opts.keep.is_some() || opts.older_than.is_some() {
        // Newest first, so `keep` spares the first ones.
        for (i, g) in live.iter().rev().enumerate() {
            let spared = Some(g.number) == active
                || g.pinned
                || opts.keep.is_some_and(|k| i < k)
                || opts.older_than.is_some_and(|d| g.created_at > opts.now - d);
            if !spared {
                doomed.push(g.number);
            }
        }
        doomed.sort_unstable();
    }
    let kept: Vec<GenerationId> = live
        .iter()
        .filter(|g| !doomed.contains(&g.number))
        .map(|g| g.id)
        .collect();

    // Mark: every node and object the kept generations, the ledger and the saved copies reach.
    let mut nodes: HashKeySet<NodeId> = HashKeySet::default();
    let mut public: HashKeySet<Hash> = HashKeySet::default();
    let mut secret: HashKeySet<Hash> = HashKeySet::default();
    state.db.reading(|db| {
        for id in &kept {
            if let Some((m, _)) = db.manifest(id)? {
                mark(db, m.root, &mut nodes, &mut public, &mut secret)?;
            }
        }
        Ok(())
    })?;
    for o in state.db.ledger()?.values() {
        if let Origin::File { hash, .. } = o {
            secret.insert(*hash);
        }
    }
    secret.extend(state.db.saved_hashes()?);
    // The .deb files of the kept generations' packages.
    for id in &kept {
        if let Some((m, _)) = state.db.manifest(id)? {
            crate::packages::mark_files(&state.db, std::iter::once(&m.packages), &mut public)?;
        }
    }

    let mut out = GcOutcome {
        dry_run: opts.dry_run,
        generations: doomed.clone(),
        ..Default::default()
    };
    let mut garbage = Vec::new();
    for (area, live) in [(Area::Public, &public), (Area::Secret, &secret)] {
        for h in state.store.list(area)? {
            if !live.contains(&h) {
                out.bytes_freed += state.store.disk_size(&h, area)?;
                garbage.push((h, area));
            }
        }
    }
    out.objects = garbage.len() as u64;
    let all_manifests = state.db.all_manifest_ids()?;
    out.manifests = all_manifests.iter().filter(|m| !kept.contains(m)).count() as u64;
    if opts.dry_run {
        out.datasets = crate::datasets::gc_datasets(state, &opts.tools, &kept, true)?;
        return Ok(out);
    }
    let (_, removed_nodes) = state.db.collect(&doomed, opts.now, &nodes, &kept)?;
    // After the generations are gone: a crash here leaves the dataset
    // records, and the next gc destroys what they name.
    out.datasets = crate::datasets::gc_datasets(state, &opts.tools, &kept, false)?;
    out.nodes = removed_nodes;
    let gone: Vec<Hash> = garbage
        .iter()
        .filter(|(_, a)| *a == Area::Public)
        .map(|(h, _)| *h)
        .collect();
    crate::packages::forget_files(&state.db, &gone)?;
    state.store.remove_all(&garbage)?;
    Ok(out)
}

fn mark(
    db: &dyn NodeSource,
    root: NodeId,
    nodes: &mut HashKeySet<NodeId>,
    public: &mut HashKeySet<Hash>,
    secret: &mut HashKeySet<Hash>,
) -> Result<(), Error> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !nodes.insert(id) {
            continue;
        }
        for e in db.node(&id)?.entries {
            if let Some(t) = e.tree {
                stack.push(t);
            }
            if let Entry::File {
                hash, secret: s, ..
            } = e.entry
            {
                if s {
                    secret.insert(hash)
                } else {
                    public.insert(hash)
                };
            }
        }
    }
    Ok(())
}
