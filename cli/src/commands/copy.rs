//! `sysgen copy SRC DST REF`: copy a signed ref and its generation from
//! one remote to another as they are (signatures travel, secrets stay
//! encrypted), moving only what DST lacks. The ref must be signed by a key
//! this host trusts, and newer than DST's.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_remote::ops::{CopyOutcome, copy};

use super::push::{moved_line, open_remote, remote_err};
use crate::Env;
use crate::output::{Bar, Out};

/// The examples `--help` shows.
pub const HELP: &str = "\
Examples:
  sysgen copy file:///srv/gens file:///mnt/usb/gens channels/stable
                                       mirror a signed ref and its generation, as they are";

#[derive(Serialize)]
struct CopyOutput<'a> {
    ok: bool,
    from: &'a str,
    to: &'a str,
    #[serde(flatten)]
    outcome: &'a CopyOutcome,
}

pub fn run(
    env: &Env,
    out: &Out,
    bar: &Bar,
    src: &str,
    dst: &str,
    ref_name: &str,
) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let trusted: Vec<String> = state
        .db
        .trusted_keys()?
        .into_iter()
        .map(|k| k.key)
        .collect();
    drop(state);
    let s = open_remote(src, false)?;
    let d = open_remote(dst, true)?;
    let o = copy(s.as_ref(), d.as_ref(), ref_name, &trusted, bar).map_err(remote_err)?;
    out.line(format!(
        "copied {} (version {}, generation {}) from {} to {}: {}{}",
        o.ref_name,
        o.seq,
        &o.generation[..12],
        s.describe(),
        d.describe(),
        moved_line(&o.moved),
        if o.moved_ref {
            ""
        } else {
            "; the ref was there already"
        }
    ));
    out.doc(CopyOutput {
        ok: true,
        from: src,
        to: dst,
        outcome: &o,
    })?;
    Ok(0)
}
