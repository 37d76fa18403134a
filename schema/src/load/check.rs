//! Step 2 of `load`: each file's rules on its own (paths, sources, names).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::raw::{self, RawConfig, RawDatasetType};
use crate::{
    AptPackage, Check, DEFAULT_CHECK_TIMEOUT_SECS, DatasetKind, DatasetSpec, DirSpec, EntryPath,
    FileContent, FileSpec, Mode, PathError, ServiceSpec, SymlinkSpec, TreeSpec,
};

use super::{FORMAT_VERSION, LoadOptions, io_reason};

/// One file's declarations, checked, not yet merged. `declared_in` is this
/// file's canonical path.
#[derive(Default)]
pub(super) struct Decls {
    pub(super) host: BTreeMap<(), String>,
    pub(super) files: BTreeMap<EntryPath, FileSpec>,
    pub(super) directories: BTreeMap<EntryPath, DirSpec>,
    pub(super) symlinks: BTreeMap<EntryPath, SymlinkSpec>,
    pub(super) trees: BTreeMap<EntryPath, TreeSpec>,
    pub(super) datasets: BTreeMap<EntryPath, DatasetSpec>,
    pub(super) services: BTreeMap<String, ServiceSpec>,
    pub(super) apt: BTreeMap<String, AptPackage>,
    pub(super) vars: BTreeMap<String, crate::VarSpec>,
    pub(super) secrets: BTreeMap<String, crate::SecretSpec>,
    pub(super) blocks: BTreeMap<(EntryPath, String), crate::BlockSpec>,
    pub(super) checks: Vec<Check>,
    pub(super) purge: std::collections::BTreeSet<String>,
    pub(super) groups: BTreeMap<String, crate::GroupSpec>,
    pub(super) users: BTreeMap<String, crate::UserSpec>,
}

/// What a path would be once normalized, as a hint; `None` when there is
/// nothing sensible to suggest.
pub(super) fn normalized(s: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in s.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    let n = format!("/{}", parts.join("/"));
    (n != "/" && n != s && !n.contains('\0')).then_some(n)
}

pub(super) fn check_file(
    shown: &Path,
    real: &Path,
    raw: &RawConfig,
    opts: &LoadOptions,
) -> Result<Decls, LoadError> {
    let invalid = |msg: String| LoadError::new(shown, Kind::Invalid, msg);
    let base = shown.parent().unwrap_or(Path::new(""));
    let origin = real.to_path_buf();

    let path = |section: &str, key: &str| -> Result<EntryPath, LoadError> {
        // Refused, not quoted: a newline would forge lines in the plan and
        // an escape sequence would reach the terminal.
        if key.contains(|c: char| c.is_control() && c != '\0') {
            return Err(invalid(format!(
                "{section}.{}: path contains a control character; rename it without control characters",
                key.escape_debug()
            )));
        }
        let p = EntryPath::parse(key).map_err(|e| {
            let hint = match (&e, normalized(key)) {
                (PathError::IsRoot | PathError::Nul, _) | (_, None) => String::new(),
                (_, Some(n)) => format!(" (write {n})"),
            };
            invalid(format!("{section}.{key}: {e}{hint}"))
        })?;
        for r in &opts.reserved {
            if p == *r || p.is_under(r) {
                return Err(invalid(format!(
                    "{section}.{p}: path is inside sysgen's state directory {r}; declare a path outside it"
                )));
            }
        }
        Ok(p)
    };
    // A file or symlink above the state directory would replace it.
    let not_above_reserved = |section: &str, p: &EntryPath| -> Result<(), LoadError> {
        match opts.reserved.iter().find(|r| r.is_under(p)) {
            Some(r) => Err(invalid(format!(
                "{section}.{p}: a {} here would replace sysgen's state directory {r}; declare a directory or nothing at {p}",
                if section == "files" {
                    "file"
                } else {
                    "symlink"
                }
            ))),
            None => Ok(()),
        }
    };
    let source = |label: &str, s: &str, want_dir: bool| -> Result<PathBuf, LoadError> {
        let what = if want_dir {
            "directory"
        } else {
            "regular file"
        };
        if s.is_empty() {
            return Err(invalid(format!(
                "{label}: source must not be empty; name a {what}"
            )));
        }
        let joined = base.join(s);
        let meta = fs::metadata(&joined).map_err(|e| {
            invalid(format!(
                "{label}: source {s} ({}): {}; create it or fix the path",
                joined.display(),
                io_reason(&e)
            ))
        })?;
        let ok = if want_dir {
            meta.is_dir()
        } else {
            meta.is_file()
        };
        if !ok {
            return Err(invalid(format!(
                "{label}: source {s} ({}) is not a {what}; name a {what}",
                joined.display()
            )));
        }
        fs::canonicalize(&joined).map_err(|e| {
            invalid(format!(
                "{label}: source {s} ({}): {}",
                joined.display(),
                io_reason(&e)
            ))
        })
    };
    let mode = |m: &Option<raw::RawMode>, default: u32| {
        m.map_or_else(
            || Mode::new(default).expect("default modes are valid"),
            |m| m.0,
        )
    };
    let principal = |p: &Option<raw::RawPrincipal>| p.as_ref().map(|p| p.0.clone());

    let mut d = Decls::default();

    // Normally caught by the probe in `parse`; kept so the rule holds on its own.
    if let Some(v) = raw.sysgen.filter(|&v| v != FORMAT_VERSION) {
        return Err(invalid(format!(
            "sysgen: unsupported format version {v}; this sysgen reads format version {FORMAT_VERSION}"
        )));
    }

    if let Some(h) = &raw.host {
        if !valid_hostname(h) {
            return Err(invalid(format!(
                "host: invalid host name {h:?}; use letters, digits and hyphens, in labels separated by dots"
            )));
        }
        d.host.insert((), h.clone());
    }

    for (k, f) in &raw.files {
        let p = path("files", k)?;
        not_above_reserved("files", &p)?;
        let label = format!("files.{p}");
        let download = super::vars::download(&label, f).map_err(&invalid)?;
        let content = match (download, &f.content, &f.source) {
            (Some(url), _, _) => url,
            (None, Some(c), None) => FileContent::Inline(c.clone()),
            (None, None, Some(s)) => FileContent::Source(source(&label, s, false)?),
            (None, Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{label}: both content and source are set; keep only one"
                )));
            }
            (None, None, None) => {
                return Err(invalid(format!(
                    "{label}: neither content nor source is set; set one (content: \"\" for an empty file)"
                )));
            }
        };
        let spec = FileSpec {
            content,
            mode: mode(&f.mode, if f.secret { 0o600 } else { 0o644 }),
            owner: principal(&f.owner),
            group: principal(&f.group),
            secret: f.secret,
            declared_in: origin.clone(),
            template: f.template,
            // Only a template's result depends on it: two declarations of
            // a plain file that differ only in writing the default agree.
            mode_given: f.template && f.mode.is_some(),
            validate: super::blocks::validate_command(&label, &f.validate).map_err(invalid)?,
            caps: f.caps.clone(),
            xattrs: super::xattrs::check(&label, &f.xattrs).map_err(invalid)?,
        };
        d.files.insert(p, spec);
    }

    for (k, dir) in &raw.directories {
        let p = path("directories", k)?;
        let spec = DirSpec {
            mode: mode(&dir.mode, 0o755),
            owner: principal(&dir.owner),
            group: principal(&dir.group),
            declared_in: origin.clone(),
        };
        d.directories.insert(p, spec);
    }

    for (k, target) in &raw.symlinks {
        let p = path("symlinks", k)?;
        not_above_reserved("symlinks", &p)?;
        if target.is_empty() || target.contains('\0') {
            return Err(invalid(format!(
                "symlinks.{p}: the target must be a non-empty string without NUL; write the path the link points to"
            )));
        }
        if target.contains(char::is_control) {
            return Err(invalid(format!(
                "symlinks.{p}: the target \"{}\" contains a control character; write it without control characters",
                target.escape_debug()
            )));
        }
        if target.len() > crate::path::PATH_MAX {
            return Err(invalid(format!(
                "symlinks.{p}: the target has {} bytes; a symlink target may have at most {} (PATH_MAX)",
                target.len(),
                crate::path::PATH_MAX
            )));
        }
        let spec = SymlinkSpec {
            target: target.clone(),
            declared_in: origin.clone(),
        };
        d.symlinks.insert(p, spec);
    }

    for (k, t) in &raw.trees {
        let p = path("trees", k)?;
        for g in &t.exclude {
            if let Err(why) = super::exclude::check_glob(g) {
                return Err(invalid(format!("trees.{p}.exclude.{g}: {why}")));
            }
        }
        let spec = TreeSpec {
            source: source(&format!("trees.{p}"), &t.source, true)?,
            mode: t.mode.map(|m| m.0),
            declared_in: origin.clone(),
            exclude: t.exclude.clone(),
            vcs: t.vcs,
            owner: principal(&t.owner),
            group: principal(&t.group),
            xattrs: t.xattrs,
        };
        d.trees.insert(p, spec);
    }

    for (k, ds) in &raw.datasets {
        let p = path("datasets", k)?;
        let label = format!("datasets.{p}");
        let kind = match (ds.kind, &ds.name) {
            (RawDatasetType::Zfs, Some(n)) if valid_zfs_name(n) => {
                DatasetKind::Zfs { name: n.clone() }
            }
            (RawDatasetType::Zfs, Some(n)) => {
                return Err(invalid(format!(
                    "{label}: invalid zfs dataset name {n:?}; write pool/dataset"
                )));
            }
            (RawDatasetType::Zfs, None) => {
                return Err(invalid(format!(
                    "{label}: type zfs needs a name; add \"name\": \"pool/dataset\""
                )));
            }
            (t, Some(_)) => {
                return Err(invalid(format!(
                    "{label}: name is only for type zfs; remove it or set type zfs{}",
                    if t == RawDatasetType::Btrfs {
                        " (a btrfs subvolume is named by its path)"
                    } else {
                        ""
                    }
                )));
            }
            (RawDatasetType::Directory, None) => DatasetKind::Directory,
            (RawDatasetType::Btrfs, None) => DatasetKind::Btrfs,
        };
        let spec = DatasetSpec {
            kind,
            snapshot: ds.snapshot,
            mode: ds.mode.map(|m| m.0),
            owner: principal(&ds.owner),
            group: principal(&ds.group),
            declared_in: origin.clone(),
        };
        d.datasets.insert(p, spec);
    }

    for (unit, s) in &raw.services {
        if let Err(why) = valid_unit(unit) {
            let mut e = invalid(format!("services.{unit}: {why}"));
            e.detail.hint = super::diagnose::unit_suffix_hint(unit, &UNIT_SUFFIXES);
            return Err(e);
        }
        let paths = |field: &str, list: &[String]| -> Result<Vec<EntryPath>, LoadError> {
            let mut out: Vec<EntryPath> = Vec::new();
            for s in list {
                let p = path(&format!("services.{unit}.{field}"), s)?;
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            Ok(out)
        };
        if s.check.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err(invalid(format!(
                "services.{unit}.check: the command is empty; write a command or remove check"
            )));
        }
        let check = match (&s.check, s.check_timeout) {
            (None, Some(_)) => {
                return Err(invalid(format!(
                    "services.{unit}.check_timeout: there is no check to time; add check or remove check_timeout"
                )));
            }
            (_, Some(t)) if !(1..=3600).contains(&t) => {
                return Err(invalid(format!(
                    "services.{unit}.check_timeout: {t} is out of range; give 1 to 3600 seconds"
                )));
            }
            (None, None) => None,
            (Some(c), t) => Some(Check {
                command: c.clone(),
                timeout_secs: t.unwrap_or(DEFAULT_CHECK_TIMEOUT_SECS),
            }),
        };
        let spec = ServiceSpec {
            enable: s.enable,
            restart_on: paths("restart_on", &s.restart_on)?,
            reload_on: paths("reload_on", &s.reload_on)?,
            check,
            declared_in: origin.clone(),
        };
        d.services.insert(unit.clone(), spec);
    }

    for entry in &raw.packages.apt {
        let (name, version) = match entry.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (entry.as_str(), None),
        };
        if !valid_deb_name(name) {
            return Err(invalid(format!(
                "packages.apt: invalid package name {name:?}; a Debian package name has at least 2 characters, lowercase letters, digits, +, - and ., and starts with a letter or digit"
            ))
            .key(&["packages", "apt", entry]));
        }
        if let Some(v) = version.filter(|v| !valid_deb_version(v)) {
            {
                return Err(invalid(format!(
                    "packages.apt.{name}: invalid version {v:?}; write name=version with a Debian version such as 1.2.3-1 (or leave the version out)"
                )));
            }
        }
        if d.apt.contains_key(name) {
            return Err(invalid(format!(
                "packages.apt.{name}: listed more than once in this file; list it once"
            ))
            .key(&["packages", "apt", entry]));
        }
        let pkg = AptPackage {
            name: name.to_owned(),
            version: version.map(str::to_owned),
            declared_in: origin.clone(),
        };
        d.apt.insert(name.to_owned(), pkg);
    }
    for name in &raw.packages.purge {
        if !valid_deb_name(name) {
            return Err(invalid(format!(
                "packages.purge: invalid package name {name:?}; a Debian package name has at least 2 characters, lowercase letters, digits, +, - and ., and starts with a letter or digit (no version: a purge takes whatever is there)"
            )));
        }
        if d.apt.contains_key(name.as_str()) {
            return Err(invalid(format!(
                "packages.purge.{name}: {name} is also in packages.apt; a package is purged when it leaves, so list it in one of them"
            )));
        }
        d.purge.insert(name.clone());
    }

    d.vars = super::vars::vars(&raw.vars, &origin).map_err(&invalid)?;
    d.secrets = super::vars::secrets(&raw.secrets, &origin).map_err(&invalid)?;
    super::blocks::check_blocks(raw, &path, &invalid, &origin, &mut d)?;
    super::users::check(shown, &origin, &raw.groups, &raw.users, &mut d)?;

    Ok(d)
}

pub(super) fn valid_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn valid_zfs_name(n: &str) -> bool {
    let parts: Vec<&str> = n.split('/').collect();
    parts.len() >= 2
        && parts.iter().all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
        })
}

const UNIT_SUFFIXES: [&str; 6] = [
    ".service", ".socket", ".timer", ".target", ".path", ".mount",
];

pub(super) fn valid_unit(u: &str) -> Result<(), String> {
    let Some(stem) = UNIT_SUFFIXES.iter().find_map(|s| u.strip_suffix(s)) else {
        return Err(format!(
            "not a unit name; a unit name ends in {}",
            UNIT_SUFFIXES.join(", ")
        ));
    };
    let ok = |b: u8| b.is_ascii_alphanumeric() || b":_.\\@-".contains(&b);
    if stem.is_empty() || u.len() > 255 || !u.bytes().all(ok) {
        return Err(
            "invalid unit name; use letters, digits and : _ . \\ @ - before the suffix".to_owned(),
        );
    }
    if stem.starts_with('@') || u.matches('@').count() > 1 {
        return Err(
            "invalid unit name; a template instance is written name@instance.service, with one @"
                .to_owned(),
        );
    }
    Ok(())
}

pub(super) fn valid_deb_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

/// `[epoch:]upstream[-revision]`, upstream starting with a digit.
pub(super) fn valid_deb_version(v: &str) -> bool {
    let ok = |c: u8| c.is_ascii_alphanumeric() || b".+~:-".contains(&c);
    let upstream = match v.split_once(':') {
        Some((epoch, rest)) if !epoch.is_empty() && epoch.bytes().all(|c| c.is_ascii_digit()) => {
            rest
        }
        Some(_) => return false,
        None => v,
    };
    v.bytes().all(ok) && upstream.bytes().next().is_some_and(|c| c.is_ascii_digit())
}
