//! `sysgen saved [COPY] [--to FILE]`: the copies sysgen keeps in the store
//! of what it overwrote or took over: files `--force` (or `repair`)
//! replaced, each numbered, and what was at each path before sysgen first
//! managed it. Their hashes are never shown (a copy may be of a secret);
//! `--to` writes one out, mode 0600, to a new file the admin names.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::db::Origin;
use sysgen_generations::state::Access;
use sysgen_store::{Area, Hash};

use crate::Env;
use crate::output::{BOLD, DIM, Out, local, paint, relative, rfc3339};
use crate::render::Names;

#[derive(Serialize)]
struct SavedOutput {
    ok: bool,
    /// Copies of files sysgen overwrote, oldest first.
    saved: Vec<Copy>,
    /// What was at each path before sysgen managed it.
    taken_over: Vec<Takeover>,
    /// With `--to`: where the copy was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    written: Option<String>,
}

#[derive(Serialize)]
struct Copy {
    number: u64,
    path: String,
    at: String,
    why: String,
}

#[derive(Serialize)]
struct Takeover {
    path: String,
    #[serde(flatten)]
    was: Origin,
}

pub fn run(env: &Env, out: &Out, copy: Option<&str>, to: Option<&Path>) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let names = Names::read(&state)?;
    let rows = state.db.saved()?;
    let ledger = state.db.ledger()?;
    let saved: Vec<Copy> = rows
        .iter()
        .map(|r| Copy {
            number: r.seq,
            path: r.path.to_string(),
            at: rfc3339(r.at),
            why: r.why.clone(),
        })
        .collect();
    let taken_over: Vec<Takeover> = ledger
        .iter()
        .filter(|(_, o)| !matches!(o, Origin::Dir { .. }))
        .map(|(p, o)| Takeover {
            path: p.to_string(),
            was: o.clone(),
        })
        .collect();
    let mut written = None;
    match copy {
        None => {
            if rows.is_empty() && taken_over.is_empty() {
                out.line("no saved copies: sysgen has overwritten nothing and taken over no file");
            }
            if !rows.is_empty() {
                out.line(paint(BOLD, "saved before sysgen overwrote them:"));
            }
            for r in &rows {
                out.line(format!(
                    "{:>4}  {}  {} ({})  {}",
                    r.seq,
                    r.path,
                    local(r.at),
                    relative(r.at, env.now),
                    paint(DIM, &r.why)
                ));
            }
            if !taken_over.is_empty() {
                out.line(paint(
                    BOLD,
                    "taken over (put back when the path leaves the configuration):",
                ));
            }
            for t in &taken_over {
                out.line(format!("      {}  {}", t.path, origin_text(&t.was, &names)));
            }
        }
        Some(c) => {
            let (hash, what) = find(&rows, &ledger, c)?;
            match to {
                Some(to) => {
                    write_out(&state.store, &hash, to)?;
                    out.line(format!("wrote {what} to {}", to.display()));
                    written = Some(to.display().to_string());
                }
                None => out.line(format!(
                    "{what}; `sysgen saved {c} --to FILE` writes it out"
                )),
            }
        }
    }
    out.doc(SavedOutput {
        ok: true,
        saved,
        taken_over,
        written,
    })?;
    Ok(0)
}

/// The copy `c` names: a saved copy's number, or a path sysgen took over.
fn find(
    rows: &[sysgen_generations::db::history::SavedRow],
    ledger: &std::collections::BTreeMap<sysgen_schema::EntryPath, Origin>,
    c: &str,
) -> Result<(Hash, String), Error> {
    if let Ok(n) = c.parse::<u64>() {
        return rows
            .iter()
            .find(|r| r.seq == n)
            .map(|r| (r.hash, format!("saved copy {n} of {}", r.path)))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "there is no saved copy {n}; `sysgen saved` lists them"
                ))
            });
    }
    let found = ledger.iter().find(|(p, _)| p.as_str() == c);
    match found {
        Some((p, Origin::File { hash, .. })) => {
            Ok((*hash, format!("the file at {p} before sysgen")))
        }
        Some((p, _)) => Err(Error::Invalid(format!(
            "{p} was not a file before sysgen; `sysgen saved` says what it was"
        ))),
        None => Err(Error::Invalid(format!(
            "{c:?} is neither a saved copy's number nor a path sysgen took over; `sysgen saved` lists them"
        ))),
    }
}

/// Writes the object to a new file `to`, readable by its owner only (the
/// copy may be of a secret). An existing file is never overwritten.
fn write_out(store: &sysgen_store::Store, hash: &Hash, to: &Path) -> Result<(), Error> {
    let io = |source| Error::Io {
        path: to.to_owned(),
        source,
    };
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                Error::Invalid(format!(
                    "{}: exists; name a new file (sysgen never overwrites one here)",
                    to.display()
                ))
            } else {
                io(e)
            }
        })?;
    store.copy_to(hash, Area::Secret, &mut f)?;
    f.flush().map_err(io)?;
    f.sync_all().map_err(io)
}

/// `file (0644, owner root, group root)`, `symlink -> x`.
fn origin_text(o: &Origin, names: &Names) -> String {
    match o {
        Origin::File { mode, uid, gid, .. } => format!(
            "file ({mode:04o}, owner {}, group {})",
            names.user(u64::from(*uid)),
            names.group(u64::from(*gid))
        ),
        Origin::Symlink { target, .. } => format!("symlink -> {target}"),
        Origin::Dir { mode, .. } => format!("directory ({mode:04o})"),
    }
}
