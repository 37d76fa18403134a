//! The tree of files, directories and symlinks (`files`, `directories`,
//! `symlinks`, `trees` of the configuration): the Merkle tree of a
//! generation, and the kind that puts it on the root.
//!
//! - inspect ([`precheck`]): drift, conflicts, and what is already at each
//!   newly managed path (hashed, to be saved before the journal);
//! - plan ([`plan`]): removals deepest first, then creations parents first;
//! - apply ([`apply`]): one writer, runs of files in parallel;
//! - verify: every entry against the root, files hashed in parallel;
//! - gc: the nodes and objects of the kept generations' trees.

mod apply;
pub mod caps;
pub mod diff;
pub mod plan;
pub mod precheck;
mod step;

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use sysgen_schema::EntryPath;
use sysgen_store::Area;

pub use self::precheck::drift_of;
pub use self::step::{FileStep, Why};
use crate::db::Origin;
use crate::host::Options;
use crate::kind::{
    ApplyCx, Claims, FileChange, Inspection, Json, Kind, KindStepOps, Marks, Mode, Needs, Report,
    Transition, Verified,
};
use crate::manifest::{self, Change, Entry, Manifest, NodeId, NodeSource, walk_each};
use crate::{Drift, Error, Progress, State};

/// What the precheck learned about paths the target generation newly
/// manages, that the plan needs.
#[derive(Debug, Default, Clone)]
pub struct Facts {
    /// What was on the root before (saved in the store where needed).
    pub origins: BTreeMap<EntryPath, Origin>,
    /// Newly managed paths where an unmanaged entry of another type must be
    /// removed first (it was saved in `origins`).
    pub in_the_way: BTreeSet<EntryPath>,
    /// Paths another kind makes before the tree's creations (a new user's
    /// home, a dataset): an implicit directory there keeps the attributes
    /// that kind gave it (a home's 0700), where one sysgen makes gets 0755.
    pub provided: BTreeSet<EntryPath>,
}

/// Entries a verify checks at once (in parallel): enough to keep every
/// core busy, few enough that a million-file tree is not held at once.
const VERIFY_BATCH: usize = 4096;

/// The kind of the tree of paths.
pub struct Files;

impl Kind for Files {
    type Step = FileStep;

    fn name(&self) -> &'static str {
        "files"
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        claims: &'a Claims,
        _undone: &[&FileStep],
    ) -> Result<Inspection<'a, FileStep>, Error> {
        // The removals other kinds took over are not the tree's to plan.
        // Filtered as they are read, not listed: a first switch's diff has
        // a change per file.
        let mine = move |c: &Change| !matches!(c, Change::Removed(p, _) if claims.contains(p));
        let ledger = t.ledger;
        // The planner takes the changes (it is asked last, see
        // `Changes::take`) and frees each as its step is made.
        let planner = move |facts: Facts| {
            move || {
                let changes = crate::plan::shrinking(t.changes.take()).filter(mine);
                plan::plan(changes, ledger, &facts)
            }
        };
        match t.mode {
            Mode::Switch { force, .. } => {
                let listed = t.changes.list();
                let changes = listed.iter().filter(|&c| mine(c));
                let pre = precheck::precheck(&t.state.root, changes, ledger, force)?;
                drop(listed);
                let ledger_add = pre
                    .facts
                    .origins
                    .iter()
                    .map(|(p, o)| (p.clone(), o.clone()))
                    .collect();
                let facts = Facts {
                    provided: claims.clone(),
                    ..pre.facts
                };
                Ok(Inspection {
                    conflicts: pre.conflicts,
                    drift: pre.drift,
                    saved: pre.saved,
                    ledger_add,
                    planner: Box::new(planner(facts)),
                })
            }
            // The way back converges from wherever the switch stopped: it
            // knows every ledger record involved, and looks at nothing.
            Mode::Undo => Ok(Inspection::planning(planner(Facts {
                provided: claims.clone(),
                ..Facts::default()
            }))),
        }
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        _opts: &Options,
        progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        // One directory's node at a time, the entries checked in batches:
        // a million-file tree is never held whole (see `walk_each`).
        let root = &state.root;
        let mut drift = Vec::new();
        let mut entries = 0u64;
        let mut batch: Vec<(EntryPath, Entry)> = Vec::with_capacity(VERIFY_BATCH);
        let check = |batch: &mut Vec<(EntryPath, Entry)>, drift: &mut Vec<Drift>| {
            let results: Vec<Result<Option<Drift>, Error>> = batch
                .par_iter()
                .map(|(p, e)| {
                    let live = root.inspect(p)?;
                    let d = drift_of(root, p, e, &live)?;
                    progress.advance(1);
                    Ok(d.map(|what| Drift {
                        path: p.to_string(),
                        what,
                    }))
                })
                .collect();
            batch.clear();
            for r in results {
                drift.extend(r?);
            }
            Ok::<(), Error>(())
        };
        // The walk does not count ahead; the generation's record did.
        let total = state
            .db
            .manifest(&generation.id()?)?
            .map_or(0, |(_, info)| info.entries);
        progress.start("verifying", total);
        let walked = state.db.reading(|db| {
            walk_each(db, generation.root, &mut |p, e| {
                entries += 1;
                batch.push((p, e));
                if batch.len() == VERIFY_BATCH {
                    check(&mut batch, &mut drift)?;
                }
                Ok(())
            })
        });
        let last = walked.and_then(|()| check(&mut batch, &mut drift));
        progress.finish();
        last?;
        // Path order, as when the whole tree was walked first.
        drift.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Verified { entries, drift })
    }

    fn diff(&self, state: &State, old: Option<&Manifest>, new: &Manifest) -> Result<Report, Error> {
        let changes = state
            .db
            .reading(|db| manifest::diff(&db.shown()?, old.map(|m| m.root), Some(new.root)))?;
        let mut changes: Vec<FileChange> = changes.into_iter().map(FileChange::from).collect();
        let none = crate::sections::Templates::none();
        diff::note_templates(
            &mut changes,
            old.map_or(none, |m| &m.templates),
            &new.templates,
        );
        Ok(Report {
            // The tree's changes are `diff`'s main list; the CLI words
            // their lines.
            kind: "changes",
            lines: Vec::new(),
            json: Json::Changes(changes),
        })
    }

    /// One per change, by its kind: a line's sign is the change's, and
    /// templates only add to a line's text.
    fn counts(
        &self,
        state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<(u64, u64, u64), Error> {
        let mut n = (0, 0, 0);
        state.db.reading(|db| {
            let nodes = db.shown()?;
            manifest::diff_each(&nodes, old.map(|m| m.root), Some(new.root), &mut |c| {
                match c {
                    Change::Added(..) => n.0 += 1,
                    Change::Removed(..) => n.1 += 1,
                    Change::Changed(..) => n.2 += 1,
                }
                Ok(())
            })
        })?;
        Ok(n)
    }

    fn mark(&self, state: &State, kept: &[Manifest], marks: &mut Marks) -> Result<(), Error> {
        state.db.reading(|db| {
            for m in kept {
                mark_tree(db, m.root, marks)?;
            }
            Ok(())
        })
    }
}

/// Marks every node and object reachable from `root`. Each node is read
/// checked against its id and split into its entries, whose records are
/// not decoded: only a file's hash and secret flag are read.
fn mark_tree(db: &dyn NodeSource, root: NodeId, marks: &mut Marks) -> Result<(), Error> {
    let mut stack = vec![root];
    while let Some(id) = stack.pop() {
        if !marks.nodes.insert(id) {
            continue;
        }
        let body = db.raw(&id)?;
        let corrupt = |e: String| Error::CorruptManifest(format!("node {id:?}: {e}"));
        for e in manifest::binary::entries(&body).map_err(corrupt)? {
            if let Some(t) = e.tree {
                stack.push(t);
            }
            if let Some((hash, secret)) = e.file_object().map_err(corrupt)? {
                marks.object(hash, if secret { Area::Secret } else { Area::Public });
            }
        }
    }
    Ok(())
}

impl KindStepOps for FileStep {
    fn path(&self) -> Option<&EntryPath> {
        Some(FileStep::path(self))
    }

    fn reads(&self) -> Vec<(sysgen_store::Hash, Area)> {
        match self {
            FileStep::PutFile { hash, secret, .. } => {
                vec![(*hash, if *secret { Area::Secret } else { Area::Public })]
            }
            _ => Vec::new(),
        }
    }

    fn needs(&self) -> Needs {
        match self {
            FileStep::PutFile { size, .. } => Needs {
                bytes: *size,
                entries: 1,
            },
            // A directory takes a block; a long symlink target one too.
            FileStep::MakeDir { .. } => Needs {
                bytes: 4096,
                entries: 1,
            },
            // Short targets live in the inode (ext4 keeps up to 60 bytes there).
            FileStep::PutSymlink { target, .. } => Needs {
                bytes: if target.len() < 60 {
                    0
                } else {
                    target.len() as u64
                },
                entries: 1,
            },
            FileStep::Remove { .. } | FileStep::SetMeta { .. } => Needs::default(),
            // A name in its directory, no data.
            FileStep::Link { .. } => Needs {
                bytes: 0,
                entries: 0,
            },
        }
    }

    fn apply(&self, cx: &mut ApplyCx<'_>) -> Result<(), Error> {
        apply::run(cx, self)
    }

    fn apply_from(
        steps: &mut dyn Iterator<Item = &FileStep>,
        cx: &mut ApplyCx<'_>,
    ) -> Result<usize, Error> {
        apply::apply_from(steps, cx)
    }
}
