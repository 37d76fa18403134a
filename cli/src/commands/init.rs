//! `sysgen init [FILE]`: a commented example configuration to start from.
//! TOML is the format that can carry the comments; a `.json` file gets the
//! same declarations (converted from the TOML, so the two never differ)
//! without them, since JSON has none. Never writes over an existing file.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sysgen_generations::Error;

use crate::output::Out;

/// The example. What is not commented out builds on any root; the
/// commented sections need sources, apt or systemd in the root.
pub const EXAMPLE: &str = r#"# A sysgen configuration (format version 1). `sysgen switch FILE` makes the
# root match it exactly, and `sysgen rollback` goes back. `sysgen schema`
# prints the JSON Schema of the format; JSON (.json) works as well as TOML.
sysgen = 1

# Refuse to switch (unless --force) a root whose /etc/hostname differs.
# host = "web1"

# Other configuration files, relative to this one: roles. What this file
# declares overrides what they declare.
# include = ["roles/base.toml"]

# Commands run in the root after every switch; one that fails rolls the
# switch back.
# checks = ["nginx -t"]

# Regular files: `content` (text) or `source` (a file, relative to this
# one). mode defaults to "0644"; owner and group are names from the root's
# /etc/passwd and /etc/group, or numbers; absent, ownership is not managed.
# A file sysgen takes over is saved first, and put back when it leaves.
[files."/etc/motd"]
content = "This host is managed by sysgen: edit its configuration, not this file.\n"

[files."/etc/sysgen-example/app.conf"]
content = "workers = 4\n"
mode = "0640"
owner = "root"
group = "root"

# A secret is never printed by any command and is stored where only root
# can read it (mode "0600" unless given).
# [files."/etc/sysgen-example/token"]
# source = "secrets/token"
# secret = true

# Directories (mode defaults to "0755"). Parents that a declared path needs
# are created, and removed again when nothing needs them.
[directories."/srv/sysgen-example"]
mode = "0750"

# Symbolic links: the path of the link = its target, verbatim.
[symlinks]
"/etc/sysgen-example/current" = "/srv/sysgen-example"

# A file checked before anything changes: `%s` is a staged copy of it.
# [files."/etc/sudoers.d/admins"]
# content = "%admin ALL=(ALL) ALL\n"
# mode = "0440"
# validate = "visudo -cf %s"

# A template (minijinja) with variables ([vars]), host facts (host.name,
# host.release, host.arch) and secrets ([secrets]); a file that reads a
# secret is secret.
# [files."/etc/app/db.conf"]
# template = true
# content = "host = {{ db_host }}\npassword = {{ secrets.db_password }}\n"

# A download, checked against its hash and kept in the store.
# [files."/usr/local/bin/tool"]
# url = "https://example.org/tool"
# sha256 = "<64 hex digits>"
# mode = "0755"
# caps = "cap_net_bind_service=ep"

# A tree: every file, directory and symlink under `source` (relative to
# this file), with the source's permission bits, owner, group, file
# capabilities and hard links; .git and other VCS directories are left out.
# [trees."/srv/www"]
# source = "site"
# exclude = ["*.swp", "*~"]

# Packages, installed and removed with the root's own apt.
# [packages]
# apt = ["htop", "nginx=1.22.1-9"]

# Data the host writes (a database, uploads): kept and snapshotted, never
# deleted when it leaves the configuration (only gc destroys it).
# [datasets."/srv/db"]
# type = "directory"    # or "btrfs", or "zfs" with name = "pool/db"
# snapshot = true

# systemd units: enabled, restarted when the files they watch change; a
# failing check rolls the switch back.
# [services."nginx.service"]
# restart_on = ["/etc/nginx/nginx.conf"]
# check = "systemctl is-active nginx.service"

# A block in a file sysgen does not own, between `# BEGIN sysgen NAME` and
# `# END sysgen NAME`; the rest of the file stays as it is.
# [blocks."/etc/hosts"]
# db = "10.0.0.5 db.internal\n"

# Groups and users, made with the root's own shadow tools. One sysgen made
# is removed when it leaves (its home kept until gc); one that was there
# before is put back as it was.
# [groups.dev]
# [users.alice]
# groups = ["dev"]
# shell = "/bin/bash"

# Variables for templates, and secrets read at build from a 0600 file
# outside this repository (or from a command's output).
# [vars]
# db_host = "10.0.0.5"
# [secrets.db_password]
# file = "/root/secrets/db_password"
"#;

#[derive(Serialize)]
struct InitOutput {
    ok: bool,
    file: PathBuf,
    format: &'static str,
}

pub fn run(out: &Out, file: &Path) -> Result<i32, Error> {
    let (format, text) = match file.extension().and_then(|e| e.to_str()) {
        Some("toml") => ("toml", EXAMPLE.to_owned()),
        Some("json") => ("json", as_json()?),
        _ => {
            return Err(Error::Invalid(format!(
                "{}: name the file .toml (with comments) or .json",
                file.display()
            )));
        }
    };
    let io = |source| Error::Io {
        path: file.to_owned(),
        source,
    };
    // create_new: an existing file, or a symlink planted at the name, is
    // never written through.
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(file)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!(
                "{}: already exists; sysgen init never writes over a file: name another, or remove it first",
                file.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Invalid(format!(
                "{}: its directory does not exist; create it first, or name a file in an existing one",
                file.display()
            )));
        }
        Err(e) => return Err(io(e)),
    };
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    out.line(format!(
        "wrote {}: an example configuration; edit it, then `sysgen switch {} --dry-run`",
        file.display(),
        file.display()
    ));
    out.doc(InitOutput {
        ok: true,
        file: file.to_owned(),
        format,
    })?;
    Ok(0)
}

/// The example's declarations as JSON.
fn as_json() -> Result<String, Error> {
    let value: serde_json::Value = toml::from_str(EXAMPLE)
        .map_err(|e| Error::Internal(format!("the example configuration: {e}")))?;
    let mut text = serde_json::to_string_pretty(&value)
        .map_err(|e| Error::Internal(format!("the example configuration: {e}")))?;
    text.push('\n');
    Ok(text)
}
