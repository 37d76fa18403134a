//! `load`: read a configuration file and everything it includes, check every
//! rule of SPEC §2, and merge the files into one [`HostSpec`].
//!
//! Three steps, each with its own kind of error:
//! 1. read and parse every file of the include graph (syntax and type
//!    errors, with line and column), visiting each file once;
//! 2. check each file on its own (paths, sources, names), naming the file
//!    and the declared key;
//! 3. merge: for each key, the declarations that no other declaration
//!    overrides (no declaring file includes their file, transitively) must
//!    all be equal; then check the merged whole (one section per path, no
//!    path under a file or symlink).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::raw::{self, RawConfig, RawDatasetType, VersionProbe};
use crate::{
    AptPackage, Check, DEFAULT_CHECK_TIMEOUT_SECS, DatasetKind, DatasetSpec, DirSpec, EntryPath,
    FileContent, FileSpec, HostSpec, Mode, Packages, PathError, ServiceSpec, SymlinkSpec, TreeSpec,
};

/// The only format version this build reads.
pub const FORMAT_VERSION: i64 = 1;

/// What `load` needs to know besides the configuration itself.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Paths no declaration may be at or under (sysgen's state directory
    /// inside the root, e.g. /var/lib/sysgen). Empty when the state dir lies
    /// outside the root.
    pub reserved: Vec<EntryPath>,
}

/// Load `config` (`.json` or `.toml`) and every file it includes, check
/// every rule of SPEC §2, and merge them into one [`HostSpec`].
///
/// Relative includes and sources are resolved against the directory of the
/// file that names them, as that file was named (so `config/web.json`
/// including `roles/base.json` reads `config/roles/base.json`). Sources must
/// exist now; they are canonicalized in the result.
pub fn load(config: &Path, opts: &LoadOptions) -> Result<HostSpec, LoadError> {
    let mut graph = Graph::default();
    let root = graph.visit(config, None, opts)?;
    debug_assert_eq!(root, 0);
    let reach = graph.reach();
    merge(&graph.nodes, &reach)
}

/// One configuration file of the include graph.
struct Node {
    /// As named (for messages, and as the base of relative paths).
    shown: PathBuf,
    /// Canonicalized (to count a file included twice once, and for `declared_in`).
    real: PathBuf,
    includes: Vec<usize>,
    decls: Decls,
}

#[derive(Default)]
struct Graph {
    nodes: Vec<Node>,
    by_real: HashMap<PathBuf, usize>,
    /// The include chain being visited, for cycle detection.
    stack: Vec<usize>,
}

enum Format {
    Json,
    Toml,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => Some(Format::Json),
        Some("toml") => Some(Format::Toml),
        _ => None,
    }
}

fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

impl Graph {
    /// Visit `shown`, included by `from` (the including node and the include
    /// as written) unless it is the top-level file. Returns its node index.
    fn visit(
        &mut self,
        shown: &Path,
        from: Option<(usize, &str)>,
        opts: &LoadOptions,
    ) -> Result<usize, LoadError> {
        // Errors about finding the file belong to the file that names it.
        let blame = |msg: String| match from {
            Some((i, inc)) => LoadError::new(
                &self.nodes[i].shown,
                Kind::Read,
                format!("include {inc:?}: {msg}"),
            ),
            None => LoadError::new(shown, Kind::Read, msg),
        };
        let Some(format) = format_of(shown) else {
            return Err(blame(format!(
                "unsupported file type {}: a configuration file must end in .json or .toml",
                shown.display()
            )));
        };
        let real = fs::canonicalize(shown).map_err(|e| {
            blame(format!(
                "cannot read {}: {}; fix the path or create the file",
                shown.display(),
                io_reason(&e)
            ))
        })?;
        if let Some(&i) = self.by_real.get(&real) {
            if let Some(pos) = self.stack.iter().position(|&s| s == i) {
                let (from, inc) = from.expect("the top-level file is never revisited");
                let mut chain: Vec<String> = self.stack[pos..]
                    .iter()
                    .map(|&s| self.nodes[s].shown.display().to_string())
                    .collect();
                chain.push(self.nodes[i].shown.display().to_string());
                return Err(LoadError::new(
                    &self.nodes[from].shown,
                    Kind::Cycle,
                    format!(
                        "include {inc:?} makes a cycle: {}; remove one of these includes",
                        chain.join(" -> ")
                    ),
                ));
            }
            return Ok(i); // a diamond: already loaded, counts once
        }
        let text = fs::read_to_string(shown).map_err(|e| {
            blame(format!(
                "cannot read {}: {}",
                shown.display(),
                io_reason(&e)
            ))
        })?;
        let raw = parse(shown, &text, format)?;
        let decls = check_file(shown, &real, &raw, opts)?;

        let idx = self.nodes.len();
        self.nodes.push(Node {
            shown: shown.to_owned(),
            real: real.clone(),
            includes: Vec::new(),
            decls,
        });
        self.by_real.insert(real, idx);
        self.stack.push(idx);
        let base = shown.parent().unwrap_or(Path::new(""));
        for inc in &raw.include {
            if inc.is_empty() {
                return Err(LoadError::new(
                    shown,
                    Kind::Invalid,
                    "include: an empty file name; remove it or name a file".to_owned(),
                ));
            }
            let child = self.visit(&base.join(inc), Some((idx, inc)), opts)?;
            self.nodes[idx].includes.push(child);
        }
        self.stack.pop();
        Ok(idx)
    }

    /// For each node, every node it includes, transitively (not itself).
    fn reach(&self) -> Vec<BTreeSet<usize>> {
        fn go(g: &Graph, i: usize, memo: &mut Vec<Option<BTreeSet<usize>>>) -> BTreeSet<usize> {
            if let Some(r) = &memo[i] {
                return r.clone();
            }
            let mut r = BTreeSet::new();
            for &c in &g.nodes[i].includes {
                r.insert(c);
                r.extend(go(g, c, memo));
            }
            memo[i] = Some(r.clone());
            r
        }
        let mut memo = vec![None; self.nodes.len()];
        (0..self.nodes.len())
            .map(|i| go(self, i, &mut memo))
            .collect()
    }
}

/// 1-based line and column (in characters) of byte offset `off` in `text`.
fn line_col(text: &str, off: usize) -> (usize, usize) {
    let mut off = off.min(text.len());
    while !text.is_char_boundary(off) {
        off -= 1;
    }
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[start..].chars().count() + 1)
}

fn parse(shown: &Path, text: &str, format: Format) -> Result<RawConfig, LoadError> {
    // The version first, so a newer format gets "unsupported version" rather
    // than "unknown field". A probe that fails to parse is reported (with its
    // location) by the full parse below.
    let probe = match format {
        Format::Json => serde_json::from_str::<VersionProbe>(text).ok(),
        Format::Toml => toml::from_str::<VersionProbe>(text).ok(),
    };
    if let Some(v) = probe
        .and_then(|p| p.sysgen)
        .filter(|&v| v != FORMAT_VERSION)
    {
        {
            return Err(LoadError::new(
                shown,
                Kind::Invalid,
                format!(
                    "sysgen: unsupported format version {v}; this sysgen reads format version {FORMAT_VERSION} (write \"sysgen\": 1 or leave it out)"
                ),
            ));
        }
    }
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let msg = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
            LoadError::new(shown, Kind::Syntax, msg).at(e.line().max(1), e.column().max(1))
        }),
        Format::Toml => toml::from_str(text).map_err(|e| {
            let (l, c) = line_col(text, e.span().map_or(0, |s| s.start));
            // toml's messages may span lines ("invalid string\nexpected ..."):
            // one line reads better after file:line:column.
            let msg = e
                .message()
                .trim_end()
                .lines()
                .collect::<Vec<_>>()
                .join("; ");
            LoadError::new(shown, Kind::Syntax, msg).at(l, c)
        }),
    }
}

/// One file's declarations, checked, not yet merged. `declared_in` is this
/// file's canonical path.
#[derive(Default)]
struct Decls {
    host: BTreeMap<(), String>,
    files: BTreeMap<EntryPath, FileSpec>,
    directories: BTreeMap<EntryPath, DirSpec>,
    symlinks: BTreeMap<EntryPath, SymlinkSpec>,
    trees: BTreeMap<EntryPath, TreeSpec>,
    datasets: BTreeMap<EntryPath, DatasetSpec>,
    services: BTreeMap<String, ServiceSpec>,
    apt: BTreeMap<String, AptPackage>,
}

/// What a path would be once normalized, as a hint; `None` when there is
/// nothing sensible to suggest.
fn normalized(s: &str) -> Option<String> {
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

fn check_file(
    shown: &Path,
    real: &Path,
    raw: &RawConfig,
    opts: &LoadOptions,
) -> Result<Decls, LoadError> {
    let invalid = |msg: String| LoadError::new(shown, Kind::Invalid, msg);
    let base = shown.parent().unwrap_or(Path::new(""));
    let origin = real.to_path_buf();

    let path = |section: &str, key: &str| -> Result<EntryPath, LoadError> {
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
        let content = match (&f.content, &f.source) {
            (Some(c), None) => FileContent::Inline(c.clone()),
            (None, Some(s)) => FileContent::Source(source(&label, s, false)?),
            (Some(_), Some(_)) => {
                return Err(invalid(format!(
                    "{label}: both content and source are set; keep only one"
                )));
            }
            (None, None) => {
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
        let spec = SymlinkSpec {
            target: target.clone(),
            declared_in: origin.clone(),
        };
        d.symlinks.insert(p, spec);
    }

    for (k, t) in &raw.trees {
        let p = path("trees", k)?;
        let spec = TreeSpec {
            source: source(&format!("trees.{p}"), &t.source, true)?,
            mode: t.mode.map(|m| m.0),
            declared_in: origin.clone(),
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
            return Err(invalid(format!("services.{unit}: {why}")));
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
            )));
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
            )));
        }
        let pkg = AptPackage {
            name: name.to_owned(),
            version: version.map(str::to_owned),
            declared_in: origin.clone(),
        };
        d.apt.insert(name.to_owned(), pkg);
    }

    Ok(d)
}

fn valid_hostname(h: &str) -> bool {
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

fn valid_zfs_name(n: &str) -> bool {
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

fn valid_unit(u: &str) -> Result<(), String> {
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

fn valid_deb_name(n: &str) -> bool {
    let b = n.as_bytes();
    b.len() >= 2
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+-.".contains(&c))
}

/// `[epoch:]upstream[-revision]`, upstream starting with a digit.
fn valid_deb_version(v: &str) -> bool {
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
    ServiceSpec
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

fn merge(nodes: &[Node], reach: &[BTreeSet<usize>]) -> Result<HostSpec, LoadError> {
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

    // Every declared path: its section and declaring file.
    let mut paths: BTreeMap<&EntryPath, Vec<(&str, usize)>> = BTreeMap::new();
    let sections: [(&str, Vec<(&EntryPath, usize)>); 5] = [
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
            if asection == "files" || asection == "symlinks" {
                let (a, b) = (&nodes[i].shown, &nodes[ai].shown);
                return Err(LoadError::new(
                    a,
                    Kind::Conflict,
                    format!(
                        "{section}.{p} lies under {asection}.{anc} (declared in {}), which is not a directory; remove one of them",
                        b.display()
                    ),
                )
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
        packages: Packages { apt: strip(apt) },
        datasets: strip(datasets),
        services: strip(services),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let t = "ab\ncé\nx";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 3), (2, 1));
        assert_eq!(line_col(t, 6), (2, 3)); // after the 2-byte é
        assert_eq!(line_col(t, 7), (3, 1));
        assert_eq!(line_col(t, 100), (3, 2));
    }

    #[test]
    fn names() {
        for h in ["web1", "web-1.example.com", "a"] {
            assert!(valid_hostname(h), "{h}");
        }
        for h in ["", "-web", "web-", "a..b", "web_1", "wéb", "a b"] {
            assert!(!valid_hostname(h), "{h}");
        }
        for u in [
            "nginx.service",
            "getty@tty1.service",
            "a.timer",
            "x-y_z:1.mount",
        ] {
            assert!(valid_unit(u).is_ok(), "{u}");
        }
        for u in [
            "nginx",
            ".service",
            "a b.service",
            "a.slice",
            "a/b.service",
            "@x.service",
            "a@b@c.service",
        ] {
            assert!(valid_unit(u).is_err(), "{u}");
        }
        assert!(valid_unit(&format!("{}.service", "a".repeat(247))).is_ok());
        assert!(valid_unit(&format!("{}.service", "a".repeat(248))).is_err());
        for n in ["nginx", "g++", "libc6", "0ad", "python3.11"] {
            assert!(valid_deb_name(n), "{n}");
        }
        for n in ["a", "Nginx", "-x", "+x", "a_b", "a:i386", ""] {
            assert!(!valid_deb_name(n), "{n}");
        }
        for v in ["3.2.2-2", "1:2.0", "2.0~rc1+dfsg-1"] {
            assert!(valid_deb_version(v), "{v}");
        }
        for v in ["", "x1", ":1", "a:1", "1 2", "1/2"] {
            assert!(!valid_deb_version(v), "{v}");
        }
        for z in ["tank/data", "tank/a/b.c"] {
            assert!(valid_zfs_name(z), "{z}");
        }
        for z in ["tank", "/tank/a", "tank/", "tank//a", "ta nk/a"] {
            assert!(!valid_zfs_name(z), "{z}");
        }
    }

    #[test]
    fn normalized_hints() {
        assert_eq!(normalized("/etc/motd/").as_deref(), Some("/etc/motd"));
        assert_eq!(normalized("etc/motd").as_deref(), Some("/etc/motd"));
        assert_eq!(normalized("/a/./b//c").as_deref(), Some("/a/b/c"));
        assert_eq!(normalized("/a/../b").as_deref(), Some("/b"));
        assert_eq!(normalized("/"), None);
    }
}
