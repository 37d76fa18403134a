//! `sysgen diff [A [B]]`: what switching from A to B adds, removes and
//! changes. No argument: the previous generation to the active one; one
//! argument X: the active generation to X, which is what `sysgen switch X`
//! would do; two: A to B. `+` is what B has and A has not. With `-p`, the
//! content changes of text files as unified diffs (never a secret's).

use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;
use similar::TextDiff;
use sysgen_generations::Error;
use sysgen_generations::State;
use sysgen_generations::compare::compare;
use sysgen_generations::error::GenerationError;
use sysgen_generations::kind::{FileChange, Json, Reports};
use sysgen_generations::manifest::Entry;
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;
use sysgen_store::{Area, Hash, Store};

use super::{looks_like_config, target_id};
use crate::Env;
use crate::output::{ADDED, Bar, CHANGED, DIM, Out, REMOVED, marked, paint};
use crate::render::{Names, ancestors, change_lines, is_dir};

#[derive(Serialize)]
struct DiffOutput<'a> {
    ok: bool,
    /// `null`: from nothing (no generation is active yet).
    from: Option<String>,
    to: String,
    /// Each kind's changes under its name ("changes" for the tree).
    #[serde(flatten)]
    kinds: &'a Reports,
    /// With `--patch`: each file's content change.
    #[serde(skip_serializing_if = "Option::is_none")]
    patches: Option<Vec<Patch>>,
}

/// A file's content change, as `--patch` shows it.
#[derive(Serialize)]
struct Patch {
    path: String,
    /// "text" (with `diff`), "binary", or "secret" (nothing shown).
    content: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    diff: Option<String>,
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    a: Option<&str>,
    b: Option<&str>,
    patch: bool,
) -> Result<i32, Error> {
    let needs_build = [a, b]
        .iter()
        .flatten()
        .any(|t| looks_like_config(Path::new(t)));
    let mut state = env.open(if needs_build {
        Access::Write
    } else {
        Access::Read
    })?;
    if needs_build {
        state.refuse_if_interrupted()?;
    }
    let prev = state.db.previous()?;
    let cur = state.db.active()?.map(|g| g.number);
    let none = |which: &str| {
        Error::Generation(GenerationError::NoSuch(format!(
            "there is no {which} generation to compare; name two generations"
        )))
    };
    let (ida, idb) = match (a, b) {
        (None, _) => {
            let (p, c) = (
                prev.ok_or_else(|| none("previous"))?,
                cur.ok_or_else(|| none("active"))?,
            );
            (
                Some(resolve(&state, &p.to_string())?),
                resolve(&state, &c.to_string())?,
            )
        }
        // What `switch X` would do: from the active generation (or from
        // nothing on a root sysgen never switched) to X.
        (Some(x), None) => {
            let to = target_id(env, &mut state, x, out, bar)?;
            let from = cur.map(|c| resolve(&state, &c.to_string())).transpose()?;
            (from, to)
        }
        (Some(a), Some(b)) => (
            Some(target_id(env, &mut state, a, out, bar)?),
            target_id(env, &mut state, b, out, bar)?,
        ),
    };
    let c = compare(&state, ida.as_ref(), &idb)?;
    let mut empty = true;
    // The lines are for people: `--json` and `--quiet` make none (a tenth
    // of a large diff's time), and need no owner names.
    let (shown, names) = if out.shows_lines() {
        (&c.0[..], Names::read(&state)?)
    } else {
        (&[][..], Names::default())
    };
    for r in shown {
        let lines = match &r.json {
            Json::Changes(records) => change_lines(records, &names, out.verbose),
            Json::Value(_) => r.lines.iter().map(|l| marked(l)).collect(),
        };
        for l in lines {
            out.line(l);
            empty = false;
        }
    }
    if empty && out.shows_lines() {
        out.line(format!(
            "no differences between {} and {}",
            ida.map_or("nothing".into(), |i| i.short()),
            idb.short()
        ));
    }
    let patches = if patch {
        let records =
            c.0.iter()
                .find_map(|r| match &r.json {
                    Json::Changes(records) => Some(records.as_slice()),
                    Json::Value(_) => None,
                })
                .unwrap_or_default();
        let p = patches(&state, records)?;
        for x in &p {
            show_patch(out, x);
        }
        Some(p)
    } else {
        None
    };
    out.doc(DiffOutput {
        ok: true,
        from: ida.map(|i| i.to_string()),
        to: idb.to_string(),
        kinds: &c,
        patches,
    })?;
    // Freeing a large diff's report, value by value, was a twentieth of
    // the command's time (1% of 100k files); the process ends right after
    // and gives its memory back whole.
    std::mem::forget(c);
    Ok(0)
}

/// The content changes of the files among `records`: files changed in
/// content, and files added or removed on their own (a whole directory
/// added or removed is its one line, not a patch per file).
fn patches(state: &State, records: &[FileChange]) -> Result<Vec<Patch>, Error> {
    let whole: HashSet<&str> = records
        .iter()
        .filter(|r| r.change != "changed")
        .filter(|r| is_dir(&r.new) || is_dir(&r.old))
        .map(|r| r.path.as_str())
        .collect();
    let under_whole = |p: &str| ancestors(p).any(|a| whole.contains(a));
    let mut out = Vec::new();
    for r in records {
        let path = r.path.as_str();
        let (old, new) = (file_of(&r.old), file_of(&r.new));
        let relevant = match r.change {
            "changed" => {
                old.is_some()
                    && new.is_some()
                    && r.what.as_deref().is_some_and(|w| w.contains("content"))
            }
            _ => (old.is_some() || new.is_some()) && !under_whole(path),
        };
        if !relevant {
            continue;
        }
        if old.is_some_and(|(_, s)| s) || new.is_some_and(|(_, s)| s) {
            out.push(Patch {
                path: path.into(),
                content: "secret",
                diff: None,
            });
            continue;
        }
        let a = content(&state.store, old)?;
        let b = content(&state.store, new)?;
        let text = |c: &Option<Vec<u8>>| match c {
            None => Some(String::new()),
            Some(bytes) if !bytes.contains(&0) => String::from_utf8(bytes.clone()).ok(),
            Some(_) => None,
        };
        let patch = match (text(&a), text(&b)) {
            (Some(x), Some(y)) => Patch {
                path: path.into(),
                content: "text",
                diff: Some(
                    TextDiff::from_lines(&x, &y)
                        .unified_diff()
                        .context_radius(3)
                        .header(
                            &if a.is_some() {
                                format!("a{path}")
                            } else {
                                "/dev/null".into()
                            },
                            &if b.is_some() {
                                format!("b{path}")
                            } else {
                                "/dev/null".into()
                            },
                        )
                        .to_string(),
                ),
            },
            _ => Patch {
                path: path.into(),
                content: "binary",
                diff: None,
            },
        };
        out.push(patch);
    }
    Ok(out)
}

/// A file entry's content hash and whether it is a secret; `None` for
/// anything but a file.
fn file_of(e: &Option<Entry>) -> Option<(&Hash, bool)> {
    match e {
        Some(Entry::File { hash, secret, .. }) => Some((hash, *secret)),
        _ => None,
    }
}

/// A file's content from the store; `None` for no file (added or
/// removed: the other side is empty).
fn content(store: &Store, file: Option<(&Hash, bool)>) -> Result<Option<Vec<u8>>, Error> {
    let Some((hash, _)) = file else {
        return Ok(None);
    };
    Ok(Some(store.read(hash, Area::Public)?))
}

fn show_patch(out: &Out, p: &Patch) {
    match (p.content, &p.diff) {
        ("text", Some(d)) => {
            for l in d.lines() {
                let style = match l.as_bytes() {
                    [b'+', b'+', b'+', ..] | [b'-', b'-', b'-', ..] => crate::output::BOLD,
                    [b'@', b'@', ..] => DIM,
                    [b'+', ..] => ADDED,
                    [b'-', ..] => REMOVED,
                    _ => anstyle::Style::new(),
                };
                out.line(paint(style, l));
            }
        }
        ("secret", _) => out.line(paint(
            CHANGED,
            format!("{}: secret; its content is not shown", p.path),
        )),
        _ => out.line(paint(
            CHANGED,
            format!("{}: binary file; not shown", p.path),
        )),
    }
}
