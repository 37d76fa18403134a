//! Damaged packs: found when the packs load ([`crate::pack::load`]), named
//! by the errors of the objects they may hold, and moved aside with
//! whatever they still hold salvaged.
//!
//! A pack whose index (or length) is damaged is left out of its area's pack
//! set: every other pack loads, every other object reads as usual, and only
//! a read of an object found nowhere else fails, naming the pack
//! ([`StoreError::InDamagedPack`]). [`Store::set_aside`] then renames the
//! pack and its index into `<store>/damaged/`, after copying every frame
//! that still decompresses into an object of its own, so that nothing is
//! lost that can be kept.

use std::fs;
use std::path::PathBuf;

use crate::pack::{self, DamagedPack};
use crate::{Area, Hash, PRIVATE_DIR_MODE, Store, StoreError, ensure_dir, sync_dir};

/// What a read of one object would find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Present, and its content matches its hash.
    Good,
    /// In no pack and no file of its area.
    Missing,
    /// Present, but its content no longer matches its hash (`pack`: the
    /// pack that holds it, if packed).
    Corrupt { pack: Option<PathBuf> },
    /// Found nowhere readable, and this damaged pack of its area may hold it.
    InDamagedPack { pack: PathBuf },
}

/// A damaged pack moved aside.
#[derive(Clone, Debug)]
pub struct SetAside {
    pub pack: DamagedPack,
    /// Where its two files are now.
    pub moved_to: PathBuf,
    /// Objects read back from its frames and stored on their own.
    pub salvaged: u64,
}

impl Store {
    /// The packs of both areas that are left out because they are damaged.
    pub fn damaged_packs(&self) -> Result<Vec<DamagedPack>, StoreError> {
        let mut out = self.with_packs(Area::Public, |set| set.damaged.clone())?;
        out.extend(self.with_packs(Area::Secret, |set| set.damaged.clone())?);
        Ok(out)
    }

    /// Reads the object through (verifying it) and says what a read finds.
    pub fn health(&self, hash: &Hash, area: Area) -> Result<Health, StoreError> {
        match self.stream(hash, area, &mut |_| Ok(())) {
            Ok(_) => Ok(Health::Good),
            Err(StoreError::NotFound { .. }) => Ok(Health::Missing),
            Err(StoreError::Corrupt { .. }) => Ok(Health::Corrupt { pack: None }),
            Err(StoreError::CorruptInPack { pack, .. }) => Ok(Health::Corrupt { pack: Some(pack) }),
            Err(StoreError::InDamagedPack { pack, .. }) => Ok(Health::InDamagedPack { pack }),
            Err(e) => Err(e),
        }
    }

    /// Stores `bytes` as an object of its own unless a good copy of it can
    /// already be read: puts back an object that is missing, corrupt, or in
    /// a damaged pack, from a copy found elsewhere (a live file with the
    /// same content). Returns its hash, and whether it was stored.
    pub fn restore(&self, bytes: &[u8], area: Area) -> Result<(Hash, bool), StoreError> {
        let hash = Hash::of(bytes);
        if self.health(&hash, area)? == Health::Good {
            return Ok((hash, false));
        }
        let staged = self.stage_bytes(&hash, bytes, area, true)?;
        self.install(staged.temp, &hash, area, true)?;
        Ok((hash, true))
    }

    /// Salvages what `damaged` still holds (every frame that decompresses
    /// is stored as an object of its own), then renames the pack, and its
    /// index after it, into `<store>/damaged/`. The pack goes first: an index
    /// left behind by a crash in between is a leftover that
    /// [`Store::clean_temp`] removes, while the pack is already safe.
    pub fn set_aside(&self, damaged: &DamagedPack) -> Result<SetAside, StoreError> {
        let mut salvaged = 0u64;
        pack::salvage(&damaged.path, &mut |content| {
            if self.restore(content, damaged.area)?.1 {
                salvaged += 1;
            }
            Ok(())
        })?;
        let aside = self.dir.join("damaged");
        ensure_dir(&aside, PRIVATE_DIR_MODE, true)?;
        let area = match damaged.area {
            Area::Public => "objects",
            Area::Secret => "secret",
        };
        for from in [damaged.path.clone(), damaged.path.with_extension("idx")] {
            let Some(file) = from.file_name() else {
                continue;
            };
            let to = aside.join(format!("{area}-{}", file.to_string_lossy()));
            match fs::rename(&from, &to) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StoreError::Io {
                        path: to,
                        source: e,
                    });
                }
            }
        }
        sync_dir(&aside)?;
        if let Some(dir) = damaged.path.parent() {
            sync_dir(dir)?;
        }
        self.forget_packs(damaged.area);
        Ok(SetAside {
            pack: damaged.clone(),
            moved_to: aside,
            salvaged,
        })
    }
}
