//! The extended attributes a `files` entry declares: names sysgen may set
//! from text. A capability is binary and has its own key (`caps`); POSIX
//! ACLs are binary too and come only from a tree's source.

use std::collections::BTreeMap;

/// Namespaces a declared attribute may be in.
const NAMESPACES: [&str; 3] = ["user.", "trusted.", "security."];

/// Checks the names of `files.<path>.xattrs` (`label`); the values are
/// kept as declared.
pub(super) fn check(
    label: &str,
    xattrs: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    for name in xattrs.keys() {
        if name == "security.capability" {
            return Err(format!(
                "{label}.xattrs: {name} is binary; declare it as caps, e.g. \"caps\": \"cap_net_raw=ep\""
            ));
        }
        let ok = NAMESPACES
            .iter()
            .any(|ns| name.len() > ns.len() && name.starts_with(ns))
            && !name.contains(['\0', '/'])
            && name.len() <= 255;
        if !ok {
            return Err(format!(
                "{label}.xattrs: {name:?} is not an attribute name sysgen sets; use a name in the user., trusted. or security. namespace (at most 255 bytes)"
            ));
        }
    }
    Ok(xattrs.clone())
}
