//! `sysgen adopt PATH… --into DIR`: how an existing host becomes its first
//! generation. Writes `DIR/sysgen.json` declaring every file, directory and
//! symlink under the paths as it is now (mode, owner and group; names where
//! the root's `/etc/passwd` and `/etc/group` have them), with each file's
//! content copied to `DIR/files/<path>`, so that switching to it changes
//! nothing on the root. `--packages` adds the packages installed by hand,
//! `--units` the enabled units. The root is only read.

mod system;
mod walk;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value, json};
use sysgen_generations::Error;
use sysgen_generations::rootfs::{Meta, RootDir};
use sysgen_generations::state::reserved_path;
use sysgen_schema::EntryPath;

use crate::Env;
use crate::output::Out;
use walk::{Found, Skipped, Walker};

/// The configuration's name in `DIR`.
pub const CONFIG: &str = "sysgen.json";

/// What `adopt` was asked for.
pub struct Request<'a> {
    pub paths: &'a [String],
    pub into: &'a Path,
    pub packages: bool,
    pub units: bool,
}

#[derive(Serialize)]
struct AdoptOutput {
    ok: bool,
    config: PathBuf,
    files: usize,
    directories: usize,
    symlinks: usize,
    secrets: usize,
    hard_links: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    units: Option<Vec<String>>,
    skipped: Vec<Skipped>,
}

pub fn run(env: &Env, out: &Out, req: &Request<'_>) -> Result<i32, Error> {
    let paths = req
        .paths
        .iter()
        .map(|p| {
            EntryPath::parse(p).map_err(|e| {
                Error::Invalid(format!(
                    "adopt {p:?}: {e}; name an absolute path on the root, such as /etc"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A path named twice, or under another named path, is adopted once,
    // with the one above it.
    let paths: Vec<EntryPath> = paths
        .iter()
        .filter(|p| !paths.iter().any(|q| p.is_under(q)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .cloned()
        .collect();
    let root = RootDir::open(&env.root).map_err(|source| Error::Io {
        path: env.root.clone(),
        source,
    })?;
    let state_dir = reserved_path(&env.root, &env.state_dir);
    for p in &paths {
        if let Some(s) = &state_dir
            && (p == s || p.is_under(s))
        {
            return Err(Error::Invalid(format!(
                "adopt {p}: that is sysgen's own state directory; adopt what the host holds"
            )));
        }
    }
    for p in &paths {
        walk::check_reachable(&root, p)?;
    }
    let created = prepare_into(req.into, &env.root, &paths)?;
    // Whatever fails from here leaves `into` as it was (absent or empty):
    // a half-written adoption is worse than none.
    match adopt(env, out, req, &root, &paths, state_dir.as_ref()) {
        Ok(code) => Ok(code),
        Err(e) => {
            undo_into(req.into, created);
            Err(e)
        }
    }
}

fn adopt(
    env: &Env,
    out: &Out,
    req: &Request<'_>,
    root: &RootDir,
    paths: &[EntryPath],
    state_dir: Option<&EntryPath>,
) -> Result<i32, Error> {
    let mut walker = Walker {
        root,
        into: req.into,
        state_dir,
        found: Found::default(),
    };
    for p in paths {
        walker.adopt(p)?;
    }
    let mut found = walker.found;
    let packages = req
        .packages
        .then(|| system::manual_packages(root))
        .transpose()?;
    let units = match req.units {
        false => None,
        true => {
            let (units, templates) =
                system::enabled_units(&env.kinds.services.systemctl, &env.root)?;
            found.skipped.extend(templates.into_iter().map(|t| Skipped {
                entry: t,
                why: "an enabled template unit: declare the instances to run (name@instance) by hand"
                    .into(),
            }));
            Some(units)
        }
    };

    let users = walk::id_names(root, "/etc/passwd")?;
    let groups = walk::id_names(root, "/etc/group")?;
    let config = configuration(
        &found,
        &users,
        &groups,
        packages.as_deref(),
        units.as_deref(),
    );
    let path = req.into.join(CONFIG);
    write_config(&path, &config)?;
    // What was written must load: a name or target the loader refuses is
    // caught here, not at the admin's first switch.
    env.load(&path)?;

    let secrets = found.files.values().filter(|f| f.secret).count();
    // Counts as labels: the numbers read the same whatever they are.
    out.line(format!("wrote {} and its sources:", path.display()));
    let mut counts = vec![("files", found.files.len())];
    counts.extend((secrets > 0).then_some(("  of them secret", secrets)));
    counts.extend([
        ("directories", found.dirs.len()),
        ("symlinks", found.symlinks.len()),
    ]);
    counts.extend(packages.as_ref().map(|p| ("packages", p.len())));
    counts.extend(units.as_ref().map(|u| ("units", u.len())));
    for (what, n) in counts {
        out.line(format!("  {what}: {n}"));
    }
    if found.hard_links > 0 {
        out.line(format!(
            "files with hard links: {}; a switch writes each as a file of its own",
            found.hard_links
        ));
    }
    for s in &found.skipped {
        out.line(format!("skipped {}: {}", s.entry, s.why));
    }
    out.line(format!(
        "next: `sysgen switch {} --dry-run` shows what switching to it would do",
        path.display()
    ));
    out.doc(AdoptOutput {
        ok: true,
        config: path,
        files: found.files.len(),
        directories: found.dirs.len(),
        symlinks: found.symlinks.len(),
        secrets,
        hard_links: found.hard_links,
        packages,
        units,
        skipped: found.skipped,
    })?;
    Ok(0)
}

/// Makes `into` (a new or empty directory), refusing one that lies under
/// an adopted path: its own files would be adopted as they are written.
/// True when it created the directory.
fn prepare_into(into: &Path, root: &Path, paths: &[EntryPath]) -> Result<bool, Error> {
    let io = |source| Error::Io {
        path: into.to_owned(),
        source,
    };
    let created = match std::fs::read_dir(into) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::Invalid(format!(
                    "--into {}: not empty; name a new or empty directory, so nothing of yours is overwritten",
                    into.display()
                )));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(into).map_err(io)?;
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(Error::Invalid(format!(
                "--into {}: not a directory; name a new or empty directory",
                into.display()
            )));
        }
        Err(e) => return Err(io(e)),
    };
    let (Ok(into_real), Ok(root_real)) = (into.canonicalize(), root.canonicalize()) else {
        return Ok(created);
    };
    if let Ok(rel) = into_real.strip_prefix(&root_real)
        && let Some(inside) = rel
            .to_str()
            .and_then(|r| EntryPath::parse(&format!("/{r}")).ok())
        && let Some(p) = paths.iter().find(|p| inside == **p || inside.is_under(p))
    {
        undo_into(into, created);
        return Err(Error::Invalid(format!(
            "--into {}: lies under {p}, which is being adopted; write the configuration outside it",
            into.display()
        )));
    }
    Ok(created)
}

/// Puts `into` back as it was before: removed if adopt made it, emptied
/// otherwise. The error being reported matters more, so what cannot be
/// removed is only warned about (it is in a directory the admin named).
fn undo_into(into: &Path, created: bool) {
    let warn = |p: &Path, e: std::io::Error| {
        eprintln!("warning: {}: could not remove it: {e}", p.display());
    };
    if created {
        if let Err(e) = std::fs::remove_dir_all(into) {
            warn(into, e);
        }
        return;
    }
    let entries = match std::fs::read_dir(into) {
        Ok(entries) => entries,
        Err(e) => return warn(into, e),
    };
    for e in entries {
        let e = match e {
            Ok(e) => e,
            Err(err) => return warn(into, err),
        };
        let p = e.path();
        let gone = match e.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&p),
            _ => std::fs::remove_file(&p),
        };
        if let Err(err) = gone {
            warn(&p, err);
        }
    }
}

/// The configuration, as JSON (the canonical format); sections that would
/// be empty are left out.
fn configuration(
    found: &Found,
    users: &HashMap<u32, String>,
    groups: &HashMap<u32, String>,
    packages: Option<&[String]>,
    units: Option<&[String]>,
) -> Value {
    let who = |meta: &Meta, m: &mut Map<String, Value>| {
        m.insert("owner".into(), principal(meta.uid, users));
        m.insert("group".into(), principal(meta.gid, groups));
    };
    let mut files = BTreeMap::new();
    for (p, f) in &found.files {
        let mut m = Map::new();
        m.insert("source".into(), json!(f.source));
        m.insert("mode".into(), json!(format!("{:04o}", f.meta.mode)));
        who(&f.meta, &mut m);
        if f.secret {
            m.insert("secret".into(), json!(true));
        }
        files.insert(p.to_string(), Value::Object(m));
    }
    let mut dirs = BTreeMap::new();
    for (p, meta) in &found.dirs {
        let mut m = Map::new();
        m.insert("mode".into(), json!(format!("{:04o}", meta.mode)));
        who(meta, &mut m);
        dirs.insert(p.to_string(), Value::Object(m));
    }
    let symlinks: BTreeMap<String, &String> = found
        .symlinks
        .iter()
        .map(|(p, t)| (p.to_string(), t))
        .collect();

    let mut config = Map::new();
    config.insert("sysgen".into(), json!(1));
    if !files.is_empty() {
        config.insert("files".into(), json!(files));
    }
    if !dirs.is_empty() {
        config.insert("directories".into(), json!(dirs));
    }
    if !symlinks.is_empty() {
        config.insert("symlinks".into(), json!(symlinks));
    }
    if let Some(p) = packages.filter(|p| !p.is_empty()) {
        config.insert("packages".into(), json!({ "apt": p }));
    }
    if let Some(u) = units.filter(|u| !u.is_empty()) {
        let services: BTreeMap<&String, Value> =
            u.iter().map(|u| (u, json!({ "enable": true }))).collect();
        config.insert("services".into(), json!(services));
    }
    Value::Object(config)
}

/// A name when the root's file has one for the id, else the number.
fn principal(id: u32, names: &HashMap<u32, String>) -> Value {
    match names.get(&id) {
        // A name of digits would read as a number, another id.
        Some(name)
            if !name.is_empty()
                && !name.bytes().all(|b| b.is_ascii_digit())
                && !name.contains(['/', ' ', '\t']) =>
        {
            json!(name)
        }
        _ => json!(id),
    }
}

fn write_config(path: &Path, config: &Value) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(config)
        .map_err(|e| Error::Internal(format!("the adopted configuration: {e}")))?;
    text.push('\n');
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}
