//! `sysgen verify [--store]`: compare the root with the active generation
//! (exit 1 on drift); with `--store`, also rehash every store object.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_generations::verify::{VerifyOutcome, verify};

use crate::Env;
use crate::output::{Bar, Out};

#[derive(Serialize)]
struct VerifyOutput<'a> {
    ok: bool,
    verify: &'a VerifyOutcome,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, store: bool) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let v = verify(&state, store, &env.kinds, bar)?;
    for d in &v.drift {
        out.line(format!("drift: {}: {}", d.path, d.what));
    }
    if v.corrupt_secret_objects > 0 {
        out.line(format!(
            "corrupt: {} objects in the secret area of the store (not named: their names are hashes of secrets)",
            v.corrupt_secret_objects
        ));
    }
    for h in &v.corrupt_objects {
        out.line(format!("corrupt: store object {h}"));
    }
    let bad = !v.drift.is_empty() || !v.corrupt_objects.is_empty() || v.corrupt_secret_objects > 0;
    match v.active {
        None => out.line("no active generation; nothing to verify"),
        Some(n) if !bad => out.line(format!(
            "ok: the root matches generation {n} ({} entries)",
            v.entries
        )),
        Some(n) => out.line(format!(
            "the root differs from generation {n} in {} of {} entries{}",
            v.drift.len(),
            v.entries,
            if v.corrupt_objects.is_empty() {
                String::new()
            } else {
                format!("; {} store objects are corrupt", v.corrupt_objects.len())
            }
        )),
    }
    if store {
        out.detail(format!("checked {} store objects", v.objects_checked));
    }
    out.doc(VerifyOutput {
        ok: !bad,
        verify: &v,
    })?;
    Ok(if bad { 1 } else { 0 })
}
