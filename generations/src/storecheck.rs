//! Whether the store can give the objects a plan or a generation needs,
//! said in words; and putting back, from the live root, an object whose
//! content is still there (a managed file nobody changed).
//!
//! Used before a journal is written ([`crate::pipeline::prepare`]), by
//! `verify --store` and by gc's repair of damaged packs.

use std::io::Read;

use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash, Health};

use crate::rootfs::Live;
use crate::{Error, State, io_err};

/// What is wrong with an object a read would find so, or `None` if nothing.
/// Names no hash: callers add one where it may be shown.
pub fn problem(health: &Health) -> Option<String> {
    match health {
        Health::Good => None,
        Health::Missing => Some("missing from the store".into()),
        Health::Corrupt { pack: None } => Some("corrupt in the store".into()),
        Health::Corrupt { pack: Some(p) } => {
            Some(format!("corrupt in the store pack {}", p.display()))
        }
        Health::InDamagedPack { pack } => Some(format!(
            "in no readable place of the store (the damaged pack {} may hold it)",
            pack.display()
        )),
    }
}

/// Puts the object `hash` back into `area` from the regular file at `p` on
/// the root, if that file's content is exactly it. Returns whether it did.
pub fn put_back(state: &State, p: &EntryPath, hash: &Hash, area: Area) -> Result<bool, Error> {
    let root = &state.root;
    if !matches!(root.inspect(p)?, Live::File(_)) {
        return Ok(false);
    }
    let mut bytes = Vec::new();
    root.open_file(p)?
        .read_to_end(&mut bytes)
        .map_err(io_err(root.display(p)))?;
    if &Hash::of(&bytes) != hash {
        return Ok(false);
    }
    state.store.restore(&bytes, area)?;
    Ok(true)
}
