//! `sysgen diff [A [B]]`: what switching from A to B adds, removes and
//! changes. No argument: the previous generation to the active one; one
//! argument X: the active generation to X (what `sysgen switch X` would do).

use std::path::Path;

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::compare::{Comparison, FileChange, compare};
use sysgen_generations::datasets::DatasetChange;
use sysgen_generations::manifest::{Entry, GenerationId};
use sysgen_generations::packages::PkgDiff;
use sysgen_generations::services::UnitChange;
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;

use super::{looks_like_config, target_id};
use crate::Env;
use crate::output::{Bar, Out};

#[derive(Serialize)]
struct DiffOutput<'a> {
    ok: bool,
    from: String,
    to: String,
    changes: &'a [FileChange],
    packages: &'a [PkgDiff],
    services: &'a [UnitChange],
    datasets: &'a [DatasetChange],
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    a: Option<&str>,
    b: Option<&str>,
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
    let mut pick =
        |t: Option<&str>, default: Option<u64>, which: &str| -> Result<GenerationId, Error> {
            match (t, default) {
                (Some(t), _) => target_id(env, &mut state, t, out, bar),
                (None, Some(n)) => resolve(&state, &n.to_string()),
                (None, None) => Err(Error::NoSuchGeneration(format!(
                    "there is no {which} generation to compare; name two generations"
                ))),
            }
        };
    let (ida, idb) = match (a, b) {
        (None, _) => (pick(None, prev, "previous")?, pick(None, cur, "active")?),
        (Some(a), None) => (pick(Some(a), None, "")?, pick(None, cur, "active")?),
        (Some(a), Some(b)) => (pick(Some(a), None, "")?, pick(Some(b), None, "")?),
    };
    let c: Comparison = compare(&state, Some(&ida), &idb)?;
    for f in &c.files {
        out.line(describe(f));
    }
    for p in &c.packages {
        out.line(p.to_string());
    }
    for u in &c.services {
        let sign = match u.change {
            "added" => '+',
            "removed" => '-',
            _ => '~',
        };
        out.line(format!("{sign} service {}  {}", u.unit, u.what()));
    }
    for d in &c.datasets {
        out.line(d.to_string());
    }
    if c.is_empty() {
        out.line(format!(
            "no differences between {} and {}",
            ida.short(),
            idb.short()
        ));
    }
    out.doc(DiffOutput {
        ok: true,
        from: ida.to_string(),
        to: idb.to_string(),
        changes: &c.files,
        packages: &c.packages,
        services: &c.services,
        datasets: &c.datasets,
    })?;
    Ok(0)
}

/// `+ /etc/motd  file (0644, 16 bytes)`, `~ /etc/app.conf  content`.
fn describe(c: &FileChange) -> String {
    let text = match (c.change, &c.old, &c.new) {
        ("added", _, Some(e)) | ("removed", Some(e), _) => entry_text(e),
        _ => c.what.clone().unwrap_or_default(),
    };
    let sign = match c.change {
        "added" => '+',
        "removed" => '-',
        _ => '~',
    };
    format!("{sign} {}  {text}", c.path)
}

fn entry_text(e: &Entry) -> String {
    match e {
        Entry::File {
            mode, secret: true, ..
        } => format!("file ({mode:04o}, secret)"),
        Entry::File { size, mode, .. } => format!("file ({mode:04o}, {size} bytes)"),
        Entry::Dir { mode: Some(m), .. } => format!("directory ({m:04o})"),
        Entry::Dir { mode: None, .. } => "directory".into(),
        Entry::Symlink { target } => format!("symlink -> {target}"),
    }
}
