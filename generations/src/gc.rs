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
//! A damaged store pack (its index or data unreadable) is moved aside into
//! `store/damaged/` first, after salvaging every object it still holds, and
//! every needed object that is still lost but whose content is on the root
//! (a managed file nobody changed) is put back from there: the way out that
//! `verify --store` and the errors of a damaged pack point to.
//!
//! Database rows go first, in one transaction; store objects after it
//! commits. A crash in between leaves unreferenced objects that the next
//! gc removes, never a generation that refers to a missing object.

use serde::Serialize;
use sysgen_store::{Area, Hash};

use crate::db::Origin;
use crate::host::Options;
use crate::kind::{Collect, Marks, Reports};
use crate::kinds;
use crate::{Error, GenerationId, Progress, State};

pub struct GcOptions<'a> {
    pub keep: Option<usize>,
    /// In seconds: only generations created longer ago than this go.
    pub older_than: Option<i64>,
    pub dry_run: bool,
    pub now: i64,
    /// What the kinds need to destroy what no generation has (tools).
    pub kinds: &'a Options,
    /// The scan of the store's objects reports how far it is.
    pub progress: &'a dyn Progress,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcOutcome {
    pub dry_run: bool,
    pub generations: Vec<u64>,
    pub manifests: u64,
    pub nodes: u64,
    pub objects: u64,
    pub bytes_freed: u64,
    /// Damaged store packs moved into `store/damaged/`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub packs_set_aside: Vec<String>,
    /// Objects read back from those packs, and put back from the root.
    #[serde(skip_serializing_if = "is_zero")]
    pub objects_salvaged: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub objects_put_back: u64,
    /// What kinds destroyed themselves (detached datasets and snapshots no
    /// remaining generation has), under each kind's name.
    #[serde(flatten)]
    pub kinds: Reports,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub fn gc(state: &mut State, opts: &GcOptions<'_>) -> Result<GcOutcome, Error> {
    state.refuse_if_interrupted()?;
    state.db.unmap()?;
    let mut repaired = GcOutcome::default();
    if !opts.dry_run {
        set_aside(state, &mut repaired)?;
    }
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

    // Mark: every node and object the kept generations need (each kind
    // marks its own), and the ledger's and the saved copies' objects.
    let mut manifests = Vec::with_capacity(kept.len());
    for id in &kept {
        if let Some((m, _)) = state.db.manifest(id)? {
            manifests.push(m);
        }
    }
    let mut marks = Marks::default();
    for k in kinds::all() {
        k.mark(state, &manifests, &mut marks)?;
    }
    drop(manifests);
    for o in state.db.ledger()?.values() {
        if let Origin::File { hash, .. } = o {
            marks.secret.insert(*hash);
        }
    }
    marks.secret.extend(state.db.saved_hashes()?);

    let mut out = GcOutcome {
        dry_run: opts.dry_run,
        generations: doomed.clone(),
        ..repaired
    };
    // Sweep: the store's objects in order beside the sorted marks.
    let Marks {
        nodes,
        mut public,
        mut secret,
    } = marks;
    let mut garbage = Vec::new();
    opts.progress.start(
        "scanning store",
        state.store.packed_count(Area::Public)? + state.store.packed_count(Area::Secret)?,
    );
    for (area, live) in [
        (Area::Public, public.finish()),
        (Area::Secret, secret.finish()),
    ] {
        for (h, bytes) in state
            .store
            .sweep(area, live, &mut |n| opts.progress.advance(n))?
        {
            out.bytes_freed += bytes;
            garbage.push((h, area));
        }
    }
    opts.progress.finish();
    // The largest thing gc holds: gone before the store is rewritten.
    drop((public, secret));
    out.objects = garbage.len() as u64;
    let all_manifests = state.db.all_manifest_ids()?;
    out.manifests = all_manifests.iter().filter(|m| !kept.contains(m)).count() as u64;
    let gone_public: Vec<Hash> = garbage
        .iter()
        .filter(|(_, a)| *a == Area::Public)
        .map(|(h, _)| *h)
        .collect();
    if !opts.dry_run {
        let (_, removed_nodes) = state.db.collect(&doomed, opts.now, &nodes, &kept)?;
        out.nodes = removed_nodes;
    }
    // After the generations are gone: a crash here leaves the kinds'
    // records (dataset rows, package files), and the next gc finishes.
    let cx = Collect {
        state,
        kept: &kept,
        dry_run: opts.dry_run,
        gone_public: &gone_public,
        opts: opts.kinds,
        now: opts.now,
    };
    for k in kinds::all() {
        out.kinds.0.extend(k.collect(&cx)?);
    }
    if !opts.dry_run {
        state.store.remove_all(&garbage)?;
        state.db.reclaim()?;
    }
    Ok(out)
}

/// Moves every damaged pack aside (salvaging what it holds), then puts back
/// from the root what is still needed and lost, where the root has it.
fn set_aside(state: &State, out: &mut GcOutcome) -> Result<(), Error> {
    let damaged = state.store.damaged_packs()?;
    if damaged.is_empty() {
        return Ok(());
    }
    for d in &damaged {
        let s = state.store.set_aside(d)?;
        out.objects_salvaged += s.salvaged;
        out.packs_set_aside.push(d.path.display().to_string());
    }
    // Objects may be lost with the packs: the next build looks each file
    // up in the store again rather than take a recorded directory's node
    // (ingest/walk/clean.rs), so that it stores again what its sources
    // still have.
    state.db.forget_dir_records()?;
    let mut done = sysgen_store::HashKeySet::default();
    for n in crate::verify::needs(state)? {
        if done.contains(&(n.hash, n.area)) {
            continue;
        }
        let Ok(path) = sysgen_schema::EntryPath::parse(&n.path) else {
            continue;
        };
        if n.generation.is_none() && !n.original {
            // A saved copy has no path of its own on the root.
            continue;
        }
        if state.store.health(&n.hash, n.area)? == sysgen_store::Health::Good {
            done.insert((n.hash, n.area));
        } else if crate::storecheck::put_back(state, &path, &n.hash, n.area)? {
            out.objects_put_back += 1;
            done.insert((n.hash, n.area));
        }
    }
    Ok(())
}
