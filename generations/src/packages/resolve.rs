//! Build: the exact packages a configuration means on this root.

use std::collections::BTreeMap;

use super::apt::Apt;
use super::closure::closure;
use super::{PackageManager, PackageSet, Pin, Want};
use crate::{Error, PackageError, State};

/// The exact packages a configuration means on this root (see the module
/// doc). Runs only simulations and queries: nothing on the root changes.
pub fn resolve(state: &State, spec: &sysgen_schema::Packages) -> Result<PackageSet, Error> {
    let Some(first) = spec.apt.values().next() else {
        return Ok(PackageSet {
            purge: spec.purge.clone(),
            ..PackageSet::default()
        });
    };
    // A root without apt is a fault of this configuration on this root:
    // name the file that declares packages.
    let apt = Apt::for_root(&state.root).map_err(|e| match e {
        Error::Invalid(m) => Error::Invalid(format!("{}: {m}", first.declared_in.display())),
        e => e,
    })?;
    let wanted: Vec<Want> = spec
        .apt
        .values()
        .map(|p| Want {
            name: p.name.clone(),
            version: p.version.clone(),
            declared_in: p.declared_in.clone(),
        })
        .collect();
    Ok(PackageSet {
        apt: resolve_with(&apt, &wanted)?,
        purge: spec.purge.clone(),
    })
}

fn resolve_with(pm: &dyn PackageManager, wanted: &[Want]) -> Result<BTreeMap<String, Pin>, Error> {
    let installed = pm.installed()?;
    let res = pm.resolve(wanted)?;
    if !res.removes.is_empty() {
        let names: Vec<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
        return Err(Error::Package(PackageError {
            package: res.removes.first().cloned(),
            what: format!(
                "installing {} would remove {}, which is installed on the root {} (a dependency conflict)",
                names.join(", "),
                res.removes.join(", "),
                pm.root_display()
            ),
            hint: "declare packages that can be installed together, or remove the conflicting package from the root yourself first; nothing was changed".into(),
        }));
    }
    let mut set = BTreeMap::new();
    for w in wanted {
        let (version, arch) = match (res.installs.get(&w.name), installed.get(&w.name)) {
            (Some((v, a)), _) => (v.clone(), a.clone()),
            (None, Some(i)) => (i.version.clone(), i.arch.clone()),
            (None, None) => {
                return Err(Error::Package(PackageError {
                    package: Some(w.name.clone()),
                    what: format!(
                        "{} neither installs {} nor has it installed",
                        pm.name(),
                        w.name
                    ),
                    hint: format!("check `apt-cache policy {}` in the root", w.name),
                }));
            }
        };
        set.insert(
            w.name.clone(),
            Pin {
                version,
                arch,
                dependency: false,
            },
        );
    }
    for (name, (version, arch)) in &res.installs {
        set.entry(name.clone()).or_insert_with(|| Pin {
            version: version.clone(),
            arch: arch.clone(),
            dependency: true,
        });
    }
    // The exact closure: everything the declared packages need at the
    // versions this generation installs, whether the transaction brings it
    // or it is on the root already (sysgen's or not). A rollback to the
    // generation then reinstalls exactly what it stood on.
    let candidates: Vec<(String, String)> = res
        .installs
        .iter()
        .map(|(n, (v, _))| (n.clone(), v.clone()))
        .collect();
    let world = pm.relations(&candidates)?;
    let roots: Vec<String> = wanted.iter().map(|w| w.name.clone()).collect();
    for name in closure(&world, &roots) {
        if set.contains_key(&name) {
            continue;
        }
        let Some(i) = installed.get(&name) else {
            continue;
        };
        set.insert(
            name,
            Pin {
                version: i.version.clone(),
                arch: i.arch.clone(),
                dependency: true,
            },
        );
    }
    Ok(set)
}
