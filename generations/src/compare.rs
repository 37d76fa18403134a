//! compare: what switching from one generation to another adds, removes
//! and changes, kind by kind (each kind says it: [`crate::kind::Kind::diff`]).
//! Pure: it reads the database only, never the root. `sysgen diff` prints
//! it; `--json` serializes it.

use crate::error::GenerationError;
use crate::kind::Reports;
use crate::kinds;
use crate::manifest::{GenerationId, Manifest};
use crate::{Error, State};

/// What switching from `a` (`None`: from nothing) to `b` changes: one
/// report per kind, in the order of the list of kinds.
pub fn compare(
    state: &State,
    a: Option<&GenerationId>,
    b: &GenerationId,
) -> Result<Reports, Error> {
    let ma = a.map(|id| manifest_of(state, id)).transpose()?;
    let mb = manifest_of(state, b)?;
    let mut out = Reports::default();
    for k in kinds::all() {
        out.0.push(k.diff(state, ma.as_ref(), &mb)?);
    }
    Ok(out)
}

/// How many entries switching from `a` to `b` adds, removes and changes,
/// every kind's: the `+`, `-` and `~` lines of [`compare`], counted
/// without making them (`list` counts them for every generation).
pub fn counts(
    state: &State,
    a: Option<&GenerationId>,
    b: &GenerationId,
) -> Result<(u64, u64, u64), Error> {
    let ma = a.map(|id| manifest_of(state, id)).transpose()?;
    let mb = manifest_of(state, b)?;
    let mut n = (0, 0, 0);
    for k in kinds::all() {
        let (a, r, c) = k.counts(state, ma.as_ref(), &mb)?;
        n = (n.0 + a, n.1 + r, n.2 + c);
    }
    Ok(n)
}

fn manifest_of(state: &State, id: &GenerationId) -> Result<Manifest, Error> {
    Ok(state
        .db
        .manifest(id)?
        .ok_or_else(|| {
            Error::Generation(GenerationError::NoSuch(format!(
                "generation {id} is not in the store"
            )))
        })?
        .0)
}
