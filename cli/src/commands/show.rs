//! `sysgen show [N]`: one generation: its number, id and date, the
//! configuration it was built from, its tree counted by type with the size
//! of its files, and every other section of its manifest (packages with
//! their versions, services, datasets, and whatever a kind adds) by name.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use sysgen_generations::Error;
use sysgen_generations::error::GenerationError;
use sysgen_generations::manifest::{self, Entry};
use sysgen_generations::state::Access;
use sysgen_generations::switch::resolve;

use crate::Env;
use crate::output::{BOLD, Out, human_bytes, local, paint, plural, relative, rfc3339};

#[derive(Serialize)]
struct ShowOutput {
    ok: bool,
    number: Option<u64>,
    id: String,
    built_at: String,
    active: bool,
    pinned: bool,
    config: Option<String>,
    files: Tree,
    /// Each other section of the manifest, under its name, as recorded.
    sections: BTreeMap<String, Value>,
}

/// The tree, counted.
#[derive(Serialize, Default)]
struct Tree {
    files: u64,
    directories: u64,
    symlinks: u64,
    /// The files' content, in bytes.
    bytes: u64,
    secret_files: u64,
}

pub fn run(env: &Env, out: &Out, which: Option<&str>) -> Result<i32, Error> {
    let state = env.open(Access::Read)?;
    let active = state.db.active()?;
    let id = match (which, &active) {
        (Some(w), _) => resolve(&state, w)?,
        (None, Some(a)) => a.id,
        (None, None) => {
            return Err(Error::Generation(GenerationError::NoSuch(
                "no generation is active; name one (`sysgen list` shows them)".into(),
            )));
        }
    };
    let (m, info) = state.db.manifest(&id)?.ok_or_else(|| {
        Error::Generation(GenerationError::NoSuch(format!(
            "generation {id} is not in the store; `sysgen list` shows them"
        )))
    })?;
    let row = state.db.generation_of(&id)?;
    let mut tree = Tree::default();
    // Counted one directory's node at a time: the tree is never held whole.
    state.db.reading(|db| {
        manifest::walk_each(&db.shown()?, m.root, &mut |_, e| {
            match e {
                Entry::File { size, secret, .. } => {
                    tree.files += 1;
                    tree.bytes += size;
                    tree.secret_files += u64::from(secret);
                }
                Entry::Dir { .. } => tree.directories += 1,
                Entry::Symlink { .. } => tree.symlinks += 1,
            }
            Ok(())
        })
    })?;
    let mut sections = match serde_json::to_value(&m) {
        Ok(Value::Object(o)) => o.into_iter().collect::<BTreeMap<_, _>>(),
        _ => BTreeMap::new(),
    };
    // The rest is the manifest's frame, not a section.
    for k in ["sysgen", "host", "root"] {
        sections.remove(k);
    }
    let is_active = active.as_ref().is_some_and(|a| a.id == id);
    let pinned = row.as_ref().is_some_and(|r| r.pinned);
    let number = row.as_ref().map(|r| r.number);
    out.line(format!(
        "{} ({}){}{}",
        paint(
            BOLD,
            number.map_or("a generation never switched to".into(), |n| format!(
                "generation {n}"
            ))
        ),
        id.short(),
        if is_active { ", active" } else { "" },
        if pinned { ", pinned" } else { "" },
    ));
    out.detail(format!("id:       {id}"));
    out.line(format!(
        "built:    {} ({})",
        local(info.built_at),
        relative(info.built_at, env.now)
    ));
    out.line(format!(
        "config:   {}",
        info.config
            .as_deref()
            .map_or("(not recorded)".into(), crate::render::config_path)
    ));
    if let Some(h) = &m.host {
        out.line(format!("host:     {h}"));
    }
    out.line(format!(
        "files:    {} ({}{}), {}, {}",
        plural(tree.files, "file"),
        human_bytes(tree.bytes),
        if tree.secret_files > 0 {
            format!(", {} secret", tree.secret_files)
        } else {
            String::new()
        },
        plural(tree.directories, "directory"),
        plural(tree.symlinks, "symlink"),
    ));
    for (name, v) in &sections {
        for l in section_lines(name, v) {
            out.line(l);
        }
    }
    out.doc(ShowOutput {
        ok: true,
        number,
        id: id.to_string(),
        built_at: rfc3339(info.built_at),
        active: is_active,
        pinned,
        config: info.config,
        files: tree,
        sections,
    })?;
    Ok(0)
}

/// `packages: 2 (apt: hello 2.10-3, jq 1.6-2)`, `services: 1 (app.service)`.
fn section_lines(name: &str, v: &Value) -> Vec<String> {
    let Value::Object(o) = v else {
        return vec![format!("{name}: {v}")];
    };
    let items: Vec<String> = if name == "packages" {
        // By manager, then name: each with its version.
        o.iter()
            .flat_map(|(manager, pkgs)| {
                pkgs.as_object().into_iter().flatten().map(move |(p, pin)| {
                    let v = pin["version"].as_str().unwrap_or_default();
                    let dep = if pin["dependency"] == true {
                        ", a dependency"
                    } else {
                        ""
                    };
                    format!("{manager}: {p} {v}{dep}")
                })
            })
            .collect()
    } else {
        o.keys().cloned().collect()
    };
    let mut lines = vec![format!("{:<9} {}", format!("{name}:"), items.len())];
    lines.extend(items.into_iter().map(|i| format!("  {i}")));
    lines
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn packages_show_with_their_versions() {
        let v = json!({ "apt": {
            "hello": { "version": "2.10-3", "arch": "amd64" },
            "libx": { "version": "1.0", "arch": "amd64", "dependency": true },
        }});
        assert_eq!(
            super::section_lines("packages", &v),
            [
                "packages: 2",
                "  apt: hello 2.10-3",
                "  apt: libx 1.0, a dependency"
            ]
        );
    }
}
