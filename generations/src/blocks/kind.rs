//! Managed blocks as a kind of resource: build the section, inspect the
//! files (drift, conflicts), plan one step per file, verify, diff.

use std::collections::BTreeMap;

use serde::Serialize;
use sysgen_schema::EntryPath;

use super::{Block, BlockStep, Blocks, read_text, text};
use crate::db::Saved;
use crate::host::Options;
use crate::kind::{
    BuildCx, Claims, Inspection, Kind, Mode, Phase, Planned, Report, Transition, Verified, to_json,
};
use crate::manifest::{Change, Entry, Manifest, NodeId, NodeSource};
use crate::rootfs::Live;
use crate::sections::keyed_changes;
use crate::{Drift, Error, Progress, State};

/// The kind of `blocks`.
pub struct BlockKind;

/// The steps from `old` to `new`: for each file, the blocks that change or
/// arrive (`put`) and those that leave (`drop`; a block whose comment
/// leader changes leaves under the old markers and comes back under the
/// new). Pure.
pub(crate) fn plan(old: &Blocks, new: &Blocks) -> Vec<BlockStep> {
    let none = BTreeMap::new();
    let mut steps = Vec::new();
    let paths: std::collections::BTreeSet<&EntryPath> = old.0.keys().chain(new.0.keys()).collect();
    for p in paths {
        let (o, n) = (old.0.get(p).unwrap_or(&none), new.0.get(p).unwrap_or(&none));
        let put: BTreeMap<String, Block> = n
            .iter()
            .filter(|(name, b)| o.get(*name) != Some(*b))
            .map(|(name, b)| (name.clone(), b.clone()))
            .collect();
        let drop: BTreeMap<String, String> = o
            .iter()
            .filter(|(name, b)| n.get(*name).is_none_or(|nb| nb.comment != b.comment))
            .map(|(name, b)| (name.clone(), b.comment.clone()))
            .collect();
        if !put.is_empty() || !drop.is_empty() {
            steps.push(BlockStep {
                path: p.clone(),
                put,
                drop,
            });
        }
    }
    steps
}

/// Whether the generation's tree has an entry at `p`.
fn in_tree(db: &dyn NodeSource, root: NodeId, p: &EntryPath) -> Result<bool, Error> {
    let mut node = root;
    let names: Vec<&str> = p.as_str().trim_start_matches('/').split('/').collect();
    for (i, name) in names.iter().enumerate() {
        let entries = db.node(&node)?.entries;
        let Some(e) = entries.into_iter().find(|e| e.name == *name) else {
            return Ok(false);
        };
        if i + 1 == names.len() {
            return Ok(true);
        }
        match e.tree {
            Some(t) => node = t,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// What a switch finds at one file it is about to edit.
#[derive(Default)]
struct Look {
    conflicts: Vec<String>,
    drift: Vec<Drift>,
    saved: Vec<Saved>,
}

fn inspect_step(
    t: &Transition<'_>,
    old: &Blocks,
    s: &BlockStep,
    force: bool,
) -> Result<Look, Error> {
    let root = &t.state.root;
    let p = &s.path;
    let shown = root.display(p);
    let mut look = Look::default();
    if let Some(to) = t.to
        && t.state.db.reading(|db| in_tree(db, to.manifest.root, p))?
    {
        look.conflicts.push(format!(
            "{shown}: the generation puts a file there and keeps blocks in it; declare it under files or under blocks, not both"
        ));
        return Ok(look);
    }
    let ours = old.0.get(p);
    let touched = s.put.keys().chain(s.drop.keys());
    let managed: Vec<(&String, &Block)> = touched
        .filter_map(|n| ours.and_then(|o| o.get_key_value(n)))
        .collect();
    let found = match read_text(root, p) {
        Ok(f) => f,
        Err(Error::Root(e)) => {
            look.conflicts.push(format!("{shown}: {}", e.source));
            return Ok(look);
        }
        Err(e) => return Err(e),
    };
    let Some((text, _)) = found else {
        if let Some((name, _)) = managed.first() {
            look.drift.push(Drift {
                path: shown.clone(),
                what: format!("the file is gone (it held block {name})"),
            });
        }
        if !s.put.is_empty() && !parent_will_exist(t, p)? {
            look.conflicts.push(format!(
                "{shown}: its directory does not exist, so the block cannot create the file; declare the directory under directories"
            ));
        }
        return Ok(look);
    };
    let mut drifted = false;
    for (name, b) in &managed {
        match text::body(&text, &b.comment, name) {
            Err(why) => look.conflicts.push(format!("{shown}: {why}")),
            Ok(Some(live)) if live == b.text => {}
            Ok(found) => {
                drifted = true;
                look.drift.push(Drift {
                    path: shown.clone(),
                    what: format!(
                        "block {name} was {} by hand",
                        if found.is_some() {
                            "changed"
                        } else {
                            "removed"
                        }
                    ),
                });
            }
        }
    }
    for (name, b) in s
        .put
        .iter()
        .filter(|(n, _)| ours.is_none_or(|o| !o.contains_key(*n)))
    {
        match text::find(&text, &b.comment, name) {
            Err(why) => look.conflicts.push(format!("{shown}: {why}")),
            Ok(Some(_)) => look.conflicts.push(format!(
                "{shown}: it already holds a block {name} that sysgen did not write; remove it by hand or name the block differently"
            )),
            Ok(None) => {}
        }
    }
    if drifted && force {
        look.saved.push(Saved {
            path: p.clone(),
            hash: sysgen_store::Hash::of(text.as_bytes()),
            why: "blocks changed by hand; saved before --force replaced them".into(),
            secret: false,
        });
    }
    Ok(look)
}

/// Whether `p`'s directory is on the root, or is made by this switch.
fn parent_will_exist(t: &Transition<'_>, p: &EntryPath) -> Result<bool, Error> {
    let Some(parent) = p.parent() else {
        return Ok(true);
    };
    if matches!(t.state.root.inspect(&parent)?, Live::Dir(_)) {
        return Ok(true);
    }
    Ok(t.changes.list().iter().any(|c| match c {
        Change::Added(q, e) => *q == parent && matches!(e, Entry::Dir { .. }),
        Change::Changed(q, _, e) => *q == parent && matches!(**e, Entry::Dir { .. }),
        Change::Removed(..) => false,
    }))
}

fn phased(steps: Vec<BlockStep>) -> Vec<(Phase, BlockStep)> {
    steps
        .into_iter()
        .map(|s| {
            let phase = if s.put.is_empty() {
                Phase::Unblock
            } else {
                Phase::Block
            };
            (phase, s)
        })
        .collect()
}

/// One block's change between two generations, for `diff`.
#[derive(Serialize)]
struct BlockChange<'a> {
    path: &'a EntryPath,
    block: &'a str,
    change: &'static str,
}

impl Kind for BlockKind {
    type Step = BlockStep;

    fn name(&self) -> &'static str {
        "blocks"
    }

    fn build(&self, cx: &mut BuildCx<'_>) -> Result<(), Error> {
        cx.sections.blocks = Blocks(
            cx.spec
                .blocks
                .iter()
                .map(|(p, blocks)| {
                    let blocks = blocks
                        .iter()
                        .map(|(name, b)| {
                            let block = Block {
                                comment: b.comment.clone(),
                                text: b.text.clone(),
                                mode: b.mode.map(|m| m.bits()),
                                validate: b.validate.clone(),
                            };
                            (name.clone(), block)
                        })
                        .collect();
                    (p.clone(), blocks)
                })
                .collect(),
        );
        Ok(())
    }

    fn inspect<'a>(
        &self,
        t: &'a Transition<'a>,
        _claims: &'a Claims,
        _undone: &[&BlockStep],
    ) -> Result<Inspection<'a, BlockStep>, Error> {
        let old = t.from.map_or(Blocks::none(), |g| &g.manifest.blocks);
        let new = t.to.map_or(Blocks::none(), |g| &g.manifest.blocks);
        let steps = plan(old, new);
        let Mode::Switch { force, .. } = t.mode else {
            // The way back converges from wherever the switch stopped: each
            // step finds its blocks as they are.
            return Ok(Inspection::planning(move || Planned::steps(phased(steps))));
        };
        let mut found = Look::default();
        for s in &steps {
            let mut l = inspect_step(t, old, s, force)?;
            found.conflicts.append(&mut l.conflicts);
            found.drift.append(&mut l.drift);
            found.saved.append(&mut l.saved);
        }
        let mut look = Inspection::planning(move || Planned::steps(phased(steps)));
        look.conflicts = found.conflicts;
        look.drift = found.drift;
        look.saved = found.saved;
        Ok(look)
    }

    fn verify(
        &self,
        state: &State,
        generation: &Manifest,
        _opts: &Options,
        _progress: &dyn Progress,
    ) -> Result<Verified, Error> {
        let mut out = Verified::default();
        for (p, blocks) in &generation.blocks.0 {
            let shown = state.root.display(p);
            out.entries += blocks.len() as u64;
            let text = match read_text(&state.root, p) {
                Ok(Some((text, _))) => text,
                Ok(None) => {
                    out.drift.push(Drift {
                        path: shown,
                        what: "the file with its blocks is gone".into(),
                    });
                    continue;
                }
                Err(Error::Root(e)) => {
                    out.drift.push(Drift {
                        path: shown,
                        what: e.source.to_string(),
                    });
                    continue;
                }
                Err(e) => return Err(e),
            };
            for (name, b) in blocks {
                let what = match text::body(&text, &b.comment, name) {
                    Ok(Some(live)) if live == b.text => continue,
                    Ok(Some(_)) => format!("block {name} was changed by hand"),
                    Ok(None) => format!("block {name} was removed by hand"),
                    Err(why) => why,
                };
                out.drift.push(Drift {
                    path: shown.clone(),
                    what,
                });
            }
        }
        Ok(out)
    }

    fn diff(
        &self,
        _state: &State,
        old: Option<&Manifest>,
        new: &Manifest,
    ) -> Result<Report, Error> {
        let empty = BTreeMap::new();
        let old = old.map_or(Blocks::none(), |m| &m.blocks);
        let paths: std::collections::BTreeSet<&EntryPath> =
            old.0.keys().chain(new.blocks.0.keys()).collect();
        let mut changes = Vec::new();
        for p in paths {
            let o = old.0.get(p).unwrap_or(&empty);
            let n = new.blocks.0.get(p).unwrap_or(&empty);
            for (name, change, _, _) in keyed_changes(o, n) {
                changes.push(BlockChange {
                    path: p,
                    block: name,
                    change,
                });
            }
        }
        let lines = changes
            .iter()
            .map(|c| {
                let sign = match c.change {
                    "added" => '+',
                    "removed" => '-',
                    _ => '~',
                };
                format!("{sign} block {} in {}", c.block, c.path)
            })
            .collect();
        Ok(Report {
            kind: "blocks",
            lines,
            json: to_json("blocks", &changes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code: a panic is a failed test")]

    use super::*;

    fn blocks(list: &[(&str, &str, &str, &str)]) -> Blocks {
        let mut out = Blocks::default();
        for (p, name, comment, text) in list {
            out.0
                .entry(EntryPath::parse(p).unwrap())
                .or_default()
                .insert(
                    name.to_string(),
                    Block {
                        comment: comment.to_string(),
                        text: text.to_string(),
                        mode: None,
                        validate: None,
                    },
                );
        }
        out
    }

    #[test]
    fn one_step_per_file_with_what_changes() {
        let old = blocks(&[
            ("/etc/hosts", "a", "#", "1\n"),
            ("/etc/hosts", "b", "#", "2\n"),
            ("/etc/fstab", "c", "#", "3\n"),
            ("/etc/same", "d", "#", "4\n"),
        ]);
        let new = blocks(&[
            ("/etc/hosts", "a", "#", "1\n"),
            ("/etc/hosts", "b", "//", "2\n"),
            ("/etc/new", "e", "#", "5\n"),
            ("/etc/same", "d", "#", "4\n"),
        ]);
        let lines: Vec<(Phase, String)> = phased(plan(&old, &new))
            .into_iter()
            .map(|(ph, s)| (ph, s.to_string()))
            .collect();
        assert_eq!(
            lines,
            [
                (
                    Phase::Unblock,
                    "edit blocks of /etc/fstab: remove c".to_owned()
                ),
                (
                    Phase::Block,
                    "edit blocks of /etc/hosts: write b; remove b".to_owned()
                ),
                (Phase::Block, "edit blocks of /etc/new: write e".to_owned()),
            ]
        );
        assert!(plan(&new, &new).is_empty());
    }
}
