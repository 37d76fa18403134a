//! `sysgen verify [--store]`: compare the root with the active generation
//! (exit 1 on drift); with `--store`, also rehash every store object.

use serde::Serialize;
use sysgen_generations::Error;
use sysgen_generations::state::Access;
use sysgen_generations::verify::{VerifyOutcome, verify};

use crate::Env;
use crate::output::{Bar, CHANGED, Out, generation_list, paint, plural};

#[derive(Serialize)]
struct VerifyOutput<'a> {
    ok: bool,
    verify: &'a VerifyOutcome,
}

pub fn run(env: &Env, out: &Out, bar: &Bar, store: bool) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let v = verify(&state, store, &env.kinds, bar)?;
    for d in &v.drift {
        out.line(format!(
            "{} {}: {}",
            paint(CHANGED, "drift:"),
            d.path,
            d.what
        ));
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
    store_lines(out, &v);
    let bad = !v.drift.is_empty()
        || !v.corrupt_objects.is_empty()
        || v.corrupt_secret_objects > 0
        || v.store_damaged();
    match v.active {
        None => out.line("no active generation; nothing to verify"),
        Some(n) if v.drift.is_empty() && v.corrupt_objects.is_empty() && v.store_damaged() => {
            out.line(format!(
                "the root matches generation {n} ({}), but the store cannot give what {} need{}; `sysgen gc` moves damaged packs aside and puts back what the root still holds",
                plural(v.entries, "entry"),
                if v.affected_generations.is_empty() {
                    "the ledger or saved copies".to_owned()
                } else {
                    generation_list(&v.affected_generations)
                },
                if v.affected_generations.len() == 1 { "s" } else { "" }
            ))
        }
        Some(n) if !bad => out.line(format!(
            "ok: the root matches generation {n} ({})",
            plural(v.entries, "entry")
        )),
        Some(n) => {
            out.line(format!(
                "the root differs from generation {n} in {} of {}{}",
                v.drift.len(),
                plural(v.entries, "entry"),
                if v.corrupt_objects.is_empty() {
                    String::new()
                } else {
                    format!("; {} are corrupt", plural(v.corrupt_objects.len(), "store object"))
                }
            ));
            // Paths are the tree's; units and packages are named otherwise.
            if v.drift.iter().any(|d| d.path.starts_with('/')) {
                out.line(
                    "`sysgen repair` puts the changed paths back (saving each first), `sysgen switch --force` does so as it switches",
                );
            }
        }
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

/// What `--store` found that the store cannot give, and who needs it.
fn store_lines(out: &Out, v: &VerifyOutcome) {
    for p in &v.damaged_packs {
        out.line(format!("damaged: store pack {p}"));
    }
    for u in &v.unreadable {
        out.line(format!(
            "unreadable: {} ({}): its content is {}",
            u.path,
            generation_list(&u.generations),
            u.what
        ));
    }
    if v.unreadable_secret > 0 {
        out.line(format!(
            "unreadable: {} secret files of the kept generations (not named: they are secret)",
            v.unreadable_secret
        ));
    }
    for p in &v.unreadable_originals {
        out.line(format!(
            "unreadable: the copy of {p} from before sysgen managed it"
        ));
    }
    if v.unreadable_saved > 0 {
        out.line(format!(
            "unreadable: {} copies saved by --force",
            v.unreadable_saved
        ));
    }
}
