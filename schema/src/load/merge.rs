//! Step 3 of `load`: the merge of every file's declarations into one
//! [`HostSpec`], and the rules on the merged whole.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::{
    AptPackage, DatasetSpec, DirSpec, EntryPath, FileSpec, HostSpec, Packages, ServiceSpec,
    SymlinkSpec, TreeSpec,
};

use super::Node;
use super::check::Decls;

/// Equality of two declarations, ignoring where they were declared.
trait SameDecl {
    fn same(&self, other: &Self) -> bool;
}

macro_rules! same_ignoring_origin {
    ($($t:ty),*) => {$(
        impl SameDecl for $t {
            fn same(&self, other: &Self) -> bool {
                let mut a = self.clone();
                a.declared_in = other.declared_in.clone();
                a == *other
            }
        }
    )*};
}
same_ignoring_origin!(
    FileSpec,
    DirSpec,
    SymlinkSpec,
    TreeSpec,
    DatasetSpec,
    ServiceSpec,
    crate::VarSpec,
    crate::SecretSpec,
    crate::BlockSpec,
    crate::GroupSpec,
    crate::UserSpec
);

impl SameDecl for String {
    fn same(&self, other: &Self) -> bool {
        self == other
    }
}

impl SameDecl for AptPackage {
    fn same(&self, other: &Self) -> bool {
        self.name == other.name && self.version == other.version
    }
}

/// Merge one section: for each key, the declarations that no other
/// declaration overrides must all be equal. Returns each key's winner and
/// the index of the file it came from.
fn merge_section<K: Ord + Clone, V: Clone + SameDecl>(
    nodes: &[Node],
    reach: &[BTreeSet<usize>],
    get: impl Fn(&Decls) -> &BTreeMap<K, V>,
    label: impl Fn(&K) -> String,
) -> Result<BTreeMap<K, (usize, V)>, LoadError> {
    let mut all: BTreeMap<&K, Vec<(usize, &V)>> = BTreeMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for (k, v) in get(&n.decls) {
            all.entry(k).or_default().push((i, v));
        }
    }
    let mut out = BTreeMap::new();
    for (k, decls) in all {
        // Not overridden: no other declaring file includes this one.
        let top: Vec<(usize, &V)> = decls
            .iter()
            .copied()
            .filter(|(i, _)| !decls.iter().any(|(j, _)| reach[*j].contains(i)))
            .collect();
        let (wi, wv) = top[0];
        if let Some(&(oi, _)) = top[1..].iter().find(|(_, v)| !wv.same(v)) {
            let (a, b) = (&nodes[wi].shown, &nodes[oi].shown);
            return Err(LoadError::new(
                a,
                Kind::Conflict,
                format!(
                    "{}: declared differently in {} and in {}, and neither file includes the other; keep one declaration, or override it in a file that includes both",
                    label(k),
                    a.display(),
                    b.display()
                ),
            )
            .other(b));
        }
        out.insert(k.clone(), (wi, wv.clone()));
    }
    Ok(out)
}

fn strip<K: Ord, V>(m: BTreeMap<K, (usize, V)>) -> BTreeMap<K, V> {
    m.into_iter().map(|(k, (_, v))| (k, v)).collect()
}

pub(super) fn merge(nodes: &[Node], reach: &[BTreeSet<usize>]) -> Result<HostSpec, LoadError> {
    let host = merge_section(nodes, reach, |d| &d.host, |_| "host".to_owned())?;
    let files = merge_section(nodes, reach, |d| &d.files, |k| format!("files.{k}"))?;
    let directories = merge_section(
        nodes,
        reach,
        |d| &d.directories,
        |k| format!("directories.{k}"),
    )?;
    let symlinks = merge_section(nodes, reach, |d| &d.symlinks, |k| format!("symlinks.{k}"))?;
    let trees = merge_section(nodes, reach, |d| &d.trees, |k| format!("trees.{k}"))?;
    let datasets = merge_section(nodes, reach, |d| &d.datasets, |k| format!("datasets.{k}"))?;
    let services = merge_section(nodes, reach, |d| &d.services, |k| format!("services.{k}"))?;
    let apt = merge_section(nodes, reach, |d| &d.apt, |k| format!("packages.apt.{k}"))?;
    let vars = merge_section(nodes, reach, |d| &d.vars, |k| format!("vars.{k}"))?;
    let secrets = merge_section(nodes, reach, |d| &d.secrets, |k| format!("secrets.{k}"))?;
    let blocks = merge_section(
        nodes,
        reach,
        |d| &d.blocks,
        |(p, n)| format!("blocks.{p}.{n}"),
    )?;
    let groups = merge_section(nodes, reach, |d| &d.groups, |k| format!("groups.{k}"))?;
    let users = merge_section(nodes, reach, |d| &d.users, |k| format!("users.{k}"))?;

    // Every declared path: its section and declaring file.
    let mut paths: BTreeMap<&EntryPath, Vec<(&str, usize)>> = BTreeMap::new();
    let sections: [(&str, Vec<(&EntryPath, usize)>); 6] = [
        ("files", files.iter().map(|(k, (i, _))| (k, *i)).collect()),
        (
            "directories",
            directories.iter().map(|(k, (i, _))| (k, *i)).collect(),
        ),
        (
            "symlinks",
            symlinks.iter().map(|(k, (i, _))| (k, *i)).collect(),
        ),
        ("trees", trees.iter().map(|(k, (i, _))| (k, *i)).collect()),
        (
            "datasets",
            datasets.iter().map(|(k, (i, _))| (k, *i)).collect(),
        ),
        // One entry per file: a file's blocks are one declaration of its path.
        ("blocks", {
            let mut v: Vec<(&EntryPath, usize)> =
                blocks.iter().map(|((p, _), (i, _))| (p, *i)).collect();
            v.dedup_by(|a, b| a.0 == b.0);
            v
        }),
    ];
    for (section, list) in &sections {
        for &(p, i) in list {
            paths.entry(p).or_default().push((section, i));
        }
    }
    for (p, decls) in &paths {
        if let [(s1, i1), (s2, i2), ..] = decls[..] {
            let (a, b) = (&nodes[i1].shown, &nodes[i2].shown);
            return Err(LoadError::new(
                a,
                Kind::Conflict,
                format!(
                    "{p} is declared under both {s1} (in {}) and {s2} (in {}); declare it under one section only",
                    a.display(),
                    b.display()
                ),
            )
            .key(&[s1, p.as_str()])
            .other(b));
        }
    }
    // Nothing under a file or symlink: it could not be created.
    for (p, decls) in &paths {
        let (section, i) = decls[0];
        for anc in p.ancestors() {
            let Some(&[(asection, ai)]) = paths.get(&anc).map(Vec::as_slice) else {
                continue;
            };
            if asection == "files" || asection == "symlinks" || asection == "blocks" {
                let (a, b) = (&nodes[i].shown, &nodes[ai].shown);
                return Err(LoadError::new(
                    a,
                    Kind::Conflict,
                    format!(
                        "{section}.{p} lies under {asection}.{anc} (declared in {}), which is not a directory; remove one of them",
                        b.display()
                    ),
                )
                .key(&[section, p.as_str()])
                .other(b));
            }
        }
    }

    Ok(HostSpec {
        config: nodes[0].real.clone(),
        host: host.into_values().next().map(|(_, h)| h),
        files: strip(files),
        directories: strip(directories),
        symlinks: strip(symlinks),
        trees: strip(trees),
        packages: Packages {
            apt: strip(apt),
            purge: nodes.iter().flat_map(|n| n.decls.purge.clone()).collect(),
        },
        datasets: strip(datasets),
        services: strip(services),
        vars: strip(vars),
        secrets: strip(secrets),
        blocks: super::blocks::by_file(strip(blocks))?,
        checks: super::blocks::all_checks(nodes.iter().map(|n| &n.decls)),
        groups: strip(groups),
        users: strip(users),
    })
}
