//! What `adopt --packages` and `adopt --units` ask the root's own tools:
//! the packages installed by hand (`apt-mark showmanual`, run in the root
//! as the packages kind runs apt: directly on `/`, through `chroot(8)`
//! elsewhere) and the enabled units (`systemctl --root`, which reads the
//! unit files offline).

use std::path::Path;
use std::process::{Command, Stdio};

use sysgen_generations::error::ServiceError;
use sysgen_generations::rootfs::{Live, RootDir};
use sysgen_generations::{Error, PackageError};
use sysgen_schema::EntryPath;

/// The unit types a configuration can declare (the schema's pattern).
const UNIT_TYPES: [&str; 6] = [
    ".service", ".socket", ".timer", ".target", ".path", ".mount",
];

/// The packages marked as installed by hand in the root, sorted.
pub fn manual_packages(root: &RootDir) -> Result<Vec<String>, Error> {
    let tool = "/usr/bin/apt-mark";
    let p = EntryPath::parse(tool).map_err(|e| Error::Internal(format!("{tool}: {e}")))?;
    if !matches!(root.inspect(&p)?, Live::File(_)) {
        return Err(Error::Invalid(format!(
            "--packages: the root {} has no {tool}; adopt without --packages, or install apt in it",
            root.path().display()
        )));
    }
    let is_slash = std::fs::canonicalize(root.path()).is_ok_and(|r| r == Path::new("/"));
    let mut c = if is_slash {
        Command::new(tool)
    } else {
        let mut c = Command::new("chroot");
        c.arg(root.path()).arg(tool);
        c
    };
    c.arg("showmanual")
        .env("LC_ALL", "C")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    let text = output(c).map_err(|why| {
        Error::Package(PackageError {
            package: None,
            what: format!("apt-mark showmanual failed in the root: {why}"),
            hint: "check that apt works in the root, or adopt without --packages".into(),
        })
    })?;
    let mut names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        // An architecture-qualified name (`libfoo:i386`) names a foreign
        // package, which the apt list cannot declare yet: kept as it is,
        // the loader says so.
        .map(str::to_owned)
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// The units enabled on the root, sorted: those `systemctl --root
/// list-unit-files --state=enabled` lists, of a type a configuration can
/// declare; and apart, the enabled templates (`getty@.service`), which a
/// switch could enable but never start: their instances are the admin's
/// to declare.
pub fn enabled_units(systemctl: &Path, root: &Path) -> Result<(Vec<String>, Vec<String>), Error> {
    let mut c = Command::new(systemctl);
    c.arg(format!("--root={}", root.display())).args([
        "list-unit-files",
        "--state=enabled",
        "--no-legend",
        "--no-pager",
        "--plain",
    ]);
    let text = output(c).map_err(|why| {
        Error::Service(ServiceError::Tool {
            command: format!(
                "{} --root={} list-unit-files --state=enabled",
                systemctl.display(),
                root.display()
            ),
            why: format!("{why}; install systemd (systemctl), or adopt without --units"),
        })
    })?;
    let mut units: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|u| UNIT_TYPES.iter().any(|t| u.ends_with(t)))
        .map(str::to_owned)
        .collect();
    units.sort();
    units.dedup();
    Ok(units.into_iter().partition(|u| !is_template(u)))
}

/// `name@.type`: a template, not a unit that can run.
fn is_template(unit: &str) -> bool {
    unit.rsplit_once('.')
        .is_some_and(|(name, _)| name.ends_with('@'))
}

/// Runs `c` (never interactive) and returns its stdout, or why it failed.
fn output(mut c: Command) -> Result<String, String> {
    let o = c.stdin(Stdio::null()).output().map_err(|e| e.to_string())?;
    if !o.status.success() {
        return Err(format!(
            "{}: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    String::from_utf8(o.stdout).map_err(|_| "it printed something that is not UTF-8".to_owned())
}
