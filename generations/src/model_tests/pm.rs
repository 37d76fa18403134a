//! The model host's package manager: what apt answers, over the host's
//! installed set and the fixed dependencies of the model's packages.

use std::collections::{BTreeMap, BTreeSet};

use sysgen_schema::EntryPath;

use super::host::{Pkg, deps};
use crate::packages::{Installed, PackageManager, Resolved, Want};
use crate::rootfs::RootDir;

/// A package manager over the model's installed set, as apt answers.
pub struct HostPm<'a> {
    pub installed: &'a BTreeMap<String, Pkg>,
}

impl HostPm<'_> {
    /// `names` and every installed package that depends on one of them.
    pub(super) fn removed_with(&self, names: &[String]) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = names.iter().cloned().collect();
        loop {
            let more: Vec<String> = self
                .installed
                .keys()
                .filter(|n| !out.contains(*n) && deps(n).iter().any(|d| out.contains(*d)))
                .cloned()
                .collect();
            if more.is_empty() {
                return out;
            }
            out.extend(more);
        }
    }
}

impl PackageManager for HostPm<'_> {
    fn name(&self) -> &'static str {
        "apt"
    }
    fn root_display(&self) -> &str {
        "/model"
    }
    fn installed(&self) -> Result<BTreeMap<String, Installed>, crate::Error> {
        Ok(self
            .installed
            .iter()
            .map(|(n, k)| {
                let i = Installed {
                    version: k.version.clone(),
                    arch: "all".into(),
                    healthy: true,
                };
                (n.clone(), i)
            })
            .collect())
    }
    fn auto_marked(&self) -> Result<BTreeSet<String>, crate::Error> {
        Ok(self
            .installed
            .iter()
            .filter(|(_, k)| k.auto)
            .map(|(n, _)| n.clone())
            .collect())
    }
    fn resolve(&self, _: &[Want]) -> Result<Resolved, crate::Error> {
        Ok(Resolved::default())
    }
    fn relations(
        &self,
        _: &[(String, String)],
    ) -> Result<BTreeMap<String, crate::packages::closure::Relations>, crate::Error> {
        Ok(BTreeMap::new())
    }
    fn download(&self, _: &[(String, String, String)]) -> Result<Vec<EntryPath>, crate::Error> {
        Ok(Vec::new())
    }
    fn install(&self, _: &[EntryPath], _: &[String], _: &[String]) -> Result<(), crate::Error> {
        Ok(())
    }
    fn removal_extras(&self, names: &[String]) -> Result<Vec<String>, crate::Error> {
        Ok(self
            .removed_with(names)
            .into_iter()
            .filter(|n| !names.contains(n))
            .collect())
    }
    /// `apt-get -s --autoremove purge NAMES`: what goes with them, and
    /// every automatic package no manual one left needs.
    fn unneeded_after(&self, names: &[String]) -> Result<BTreeSet<String>, crate::Error> {
        let removed = self.removed_with(names);
        let mut keep: BTreeSet<&str> = BTreeSet::new();
        let mut stack: Vec<&str> = self
            .installed
            .iter()
            .filter(|(n, k)| !k.auto && !removed.contains(*n))
            .map(|(n, _)| n.as_str())
            .collect();
        while let Some(n) = stack.pop() {
            if keep.insert(n) {
                stack.extend(deps(n).iter().copied());
            }
        }
        let mut out = removed;
        out.extend(
            self.installed
                .keys()
                .filter(|n| !keep.contains(n.as_str()))
                .cloned(),
        );
        Ok(out)
    }
    fn changed_conffiles(&self, _: &str) -> Result<Vec<EntryPath>, crate::Error> {
        Ok(Vec::new())
    }
    fn remove(&self, _: &[String], _: bool) -> Result<(), crate::Error> {
        Ok(())
    }
    fn leftovers(&self) -> Result<BTreeMap<String, String>, crate::Error> {
        Ok(BTreeMap::new())
    }
    fn conffiles(&self, _: &str) -> Result<Vec<EntryPath>, crate::Error> {
        Ok(Vec::new())
    }
    fn purge_leftovers(&self, _: &[String]) -> Result<(), crate::Error> {
        Ok(())
    }
    fn abandon(&self, _: &[String], _: bool) -> Result<(), crate::Error> {
        Ok(())
    }
    fn lock_holder(&self, _: &RootDir) -> Result<Option<(String, u32)>, crate::Error> {
        Ok(None)
    }
}
