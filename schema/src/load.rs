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

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{LoadError, LoadErrorKind as Kind};
use crate::raw::{RawConfig, VersionProbe};
use crate::{EntryPath, HostSpec};

mod blocks;
mod check;
mod diagnose;
mod exclude;
mod merge;
pub(crate) mod users;
pub(crate) mod vars;
mod xattrs;

use check::{Decls, check_file};
pub use diagnose::located;
use merge::merge;

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
    merge(&graph.nodes, &reach).map_err(|e| diagnose::place_conflict(e, &graph.nodes))
}

/// One configuration file of the include graph.
struct Node {
    /// As named (for messages, and as the base of relative paths).
    shown: PathBuf,
    /// Canonicalized (to count a file included twice once, and for `declared_in`).
    real: PathBuf,
    includes: Vec<usize>,
    decls: Decls,
    /// The file's text, to point at a merge conflict in it.
    text: String,
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

/// How deep includes may nest (the top-level file is depth 1).
const MAX_INCLUDE_DEPTH: usize = 64;

/// Reads a configuration file, which must be a regular file: opened
/// without blocking (a FIFO would block a plain open until a writer comes)
/// and checked before any read.
fn read_config(path: &Path) -> io::Result<String> {
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file; a configuration file must be one",
        ));
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(text)
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
            )
            .key(&["include", inc]),
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
                )
                .key(&["include", inc]));
            }
            return Ok(i); // a diamond: already loaded, counts once
        }
        // Depth, not count, is limited: the walk recurses once per level.
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(blame(format!(
                "{}: includes nest more than {MAX_INCLUDE_DEPTH} files deep; include the files from fewer levels",
                shown.display()
            )));
        }
        let text = read_config(shown).map_err(|e| {
            blame(format!(
                "cannot read {}: {}",
                shown.display(),
                io_reason(&e)
            ))
        })?;
        let json = matches!(format, Format::Json);
        let raw =
            parse(shown, &text, format).map_err(|e| diagnose::place(e, shown, &text, json))?;
        diagnose::number_modes(shown, &text, json)?;
        let decls = check_file(shown, &real, &raw, opts)
            .map_err(|e| diagnose::place(e, shown, &text, json))?;

        let idx = self.nodes.len();
        self.nodes.push(Node {
            shown: shown.to_owned(),
            real: real.clone(),
            includes: Vec::new(),
            decls,
            text,
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
            let child = self
                .visit(&base.join(inc), Some((idx, inc)), opts)
                .map_err(|e| diagnose::place(e, shown, &self.nodes[idx].text, json))?;
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
    // serde_path_to_error: the keys serde was at, to point at them and to
    // say which key of the JSON output is wrong.
    let keys = |p: &serde_path_to_error::Path| -> Vec<String> {
        p.iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect()
    };
    match format {
        Format::Json => {
            let json_error = |e: serde_json::Error, path: Vec<String>| {
                let full = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let msg = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
                // A syntax error is where serde stopped, whatever the keys.
                let path = match e.classify() {
                    serde_json::error::Category::Data => path,
                    _ => Vec::new(),
                };
                diagnose::syntax(shown, text, true, msg, (e.line(), e.column()), path)
            };
            let mut de = serde_json::Deserializer::from_str(text);
            let raw = serde_path_to_error::deserialize(&mut de).map_err(|e| {
                let path = keys(e.path());
                json_error(e.into_inner(), path)
            })?;
            // Trailing characters after the document, as from_str refuses.
            de.end().map_err(|e| json_error(e, Vec::new()))?;
            Ok(raw)
        }
        Format::Toml => {
            let de = toml::Deserializer::new(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let path = keys(e.path());
                let e = e.into_inner();
                // toml's messages may span lines ("invalid string\nexpected ..."):
                // one line reads better after file:line:column.
                let msg = e
                    .message()
                    .trim_end()
                    .lines()
                    .collect::<Vec<_>>()
                    .join("; ");
                let at = line_col(text, e.span().map_or(0, |s| s.start));
                diagnose::syntax(shown, text, false, msg, at, path)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check::{
        normalized, valid_deb_name, valid_deb_version, valid_hostname, valid_unit, valid_zfs_name,
    };
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
