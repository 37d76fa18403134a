//! `sysgen schema` against the loader, with a real JSON Schema validator
//! (`jsonschema`, draft 2020-12): every example configuration of the README,
//! the docs and the tour scripts is valid; the schema refuses what the
//! loader refuses for its shape and accepts what it accepts. (Every
//! configuration the other tests run is checked too, as they run:
//! `sysgen_tests::schema_check`.)

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sysgen_schema::{LoadOptions, json_schema, load};
use sysgen_tests::schema_check::{config_value, schema_errors};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The configurations shown in the README and the docs (fenced `json` and
/// `toml` blocks; a command's output is fenced `console`, and a block of
/// another format names it after the language, as ```` ```toml inventory````
/// in docs/fleet.md) and written by the tour scripts (`cat > x.json <<'JSON'`).
fn examples() -> Vec<(String, String, &'static str)> {
    let mut out = Vec::new();
    let mut docs = vec![repo().join("README.md")];
    let mut more: Vec<PathBuf> = fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    for doc in docs {
        let text = fs::read_to_string(&doc).unwrap();
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let format = match line.trim() {
                "```json" => "json",
                "```toml" => "toml",
                _ => continue,
            };
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != "```")
                .collect();
            let name = format!("{}:{}", doc.display(), n + 1);
            out.push((name, body.join("\n"), format));
        }
    }
    let mut scripts: Vec<PathBuf> = fs::read_dir(repo().join("scripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    scripts.sort();
    for script in scripts {
        let Ok(text) = fs::read_to_string(&script) else {
            continue;
        };
        let mut lines = text.lines().enumerate();
        while let Some((n, line)) = lines.next() {
            let format = if line.contains(".json <<'JSON'") {
                "json"
            } else if line.contains(".toml <<'TOML'") {
                "toml"
            } else {
                continue;
            };
            let end = format.to_uppercase();
            let body: Vec<&str> = lines
                .by_ref()
                .map(|(_, l)| l)
                .take_while(|l| l.trim() != end)
                .collect();
            let name = format!("{}:{}", script.display(), n + 1);
            out.push((name, body.join("\n"), format));
        }
    }
    out
}

fn value_of(text: &str, format: &str) -> Value {
    match format {
        "toml" => serde_json::to_value(toml::from_str::<toml::Value>(text).unwrap()).unwrap(),
        _ => serde_json::from_str(text).unwrap(),
    }
}

#[test]
fn every_example_configuration_is_valid() {
    let examples = examples();
    // The README's first example, the services and datasets docs, the tours.
    assert!(examples.len() >= 6, "found only {examples:?}");
    let mut bad = Vec::new();
    for (name, text, format) in &examples {
        // A doc may show some keys of a file, without its braces.
        let whole = match (*format, text.trim_start().starts_with('"')) {
            ("json", true) => format!("{{{text}}}"),
            _ => text.clone(),
        };
        let errors = schema_errors(&value_of(&whole, format));
        if !errors.is_empty() {
            bad.push(format!("{name}:\n{}", errors.join("\n")));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n\n"));
}

#[test]
fn the_schema_is_a_2020_12_schema_with_an_id() {
    let schema = json_schema();
    jsonschema::meta::validate(&schema).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert!(schema["$id"].as_str().is_some_and(|id| id.contains(':')));
}

/// A scratch directory with a source file and a source directory, for
/// configurations that name them.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("motd"), "hi\n").unwrap();
    fs::create_dir(dir.path().join("site")).unwrap();
    fs::write(dir.path().join("role.json"), "{}").unwrap();
    dir
}

/// What the loader says of `text` (written as `c.<format>`).
fn loads(dir: &Path, text: &str, format: &str) -> Result<(), sysgen_schema::LoadError> {
    let path = dir.join(format!("c.{format}"));
    fs::write(&path, text).unwrap();
    let opts = LoadOptions {
        reserved: vec![sysgen_schema::EntryPath::parse("/var/lib/sysgen").unwrap()],
    };
    load(&path, &opts).map(|_| ())
}

/// Configurations that use every key, in both formats: the loader and the
/// schema both accept them.
const GOOD: &[(&str, &str, &str)] = &[
    (
        "every section",
        "json",
        r#"{
  "$schema": "urn:sysgen:schema:config:1",
  "sysgen": 1,
  "host": "web-1.example.com",
  "include": ["role.json"],
  "files": {
    "/etc/motd": { "source": "motd", "mode": "0644", "owner": "root", "group": 0 },
    "/etc/app/secret.key": { "content": "k", "secret": true, "mode": "600" },
    "/etc/...odd/.hidden/..x": { "content": "" }
  },
  "directories": { "/srv/app": { "mode": "2750", "owner": 33, "group": "www-data" } },
  "symlinks": { "/etc/localtime": "../usr/share/zoneinfo/UTC" },
  "trees": {
    "/srv/www": { "source": "site", "mode": "0640", "exclude": ["*~", "/cache/", "*.sw?"], "vcs": false }
  },
  "packages": { "apt": ["nginx", "g++", "libc6=2.36-9+deb12u4", "vim=2:9.0.1378-2"] },
  "datasets": {
    "/srv/data": { "type": "btrfs", "snapshot": true, "mode": "0750" },
    "/srv/pg": { "type": "zfs", "name": "tank/pg" },
    "/srv/plain": { "type": "directory" }
  },
  "services": {
    "nginx.service": {
      "restart_on": ["/etc/motd"], "reload_on": ["/srv/www"],
      "check": "curl -fsS http://127.0.0.1/", "check_timeout": 10
    },
    "getty@tty1.service": { "enable": false },
    "backup.timer": {}
  }
}"#,
    ),
    (
        "TOML with an octal integer mode",
        "toml",
        r#""$schema" = "urn:sysgen:schema:config:1"
sysgen = 1

[files."/etc/motd"]
content = "hi\n"
mode = 0o644

[directories."/srv/app"]
mode = 0o2750

[datasets."/srv/pg"]
type = "zfs"
name = "tank/pg"
"#,
    ),
];

#[test]
fn the_schema_accepts_what_the_loader_accepts() {
    let dir = scratch();
    for (name, format, text) in GOOD {
        if let Err(e) = loads(dir.path(), text, format) {
            panic!("{name}: the loader refuses it: {e}");
        }
        let errors = schema_errors(&value_of(text, format));
        assert!(errors.is_empty(), "{name}: {}", errors.join("\n"));
    }
}

/// Configurations the loader refuses for their shape (a key, a type, a
/// pattern, a field that needs another): the schema must refuse them too.
const BAD_SHAPE: &[(&str, &str)] = &[
    ("unknown key", r#"{"filez": {}}"#),
    (
        "unknown file key",
        r#"{"files": {"/a": {"content": "", "colour": 1}}}"#,
    ),
    ("format version 2", r#"{"sysgen": 2}"#),
    ("bad host", r#"{"host": "-web"}"#),
    ("include of another format", r#"{"include": ["x.yaml"]}"#),
    (
        "relative path",
        r#"{"files": {"etc/motd": {"content": ""}}}"#,
    ),
    ("trailing slash", r#"{"directories": {"/srv/app/": {}}}"#),
    (
        "a .. component",
        r#"{"files": {"/etc/../x": {"content": ""}}}"#,
    ),
    ("a . component", r#"{"symlinks": {"/etc/./l": "x"}}"#),
    (
        "an empty component",
        r#"{"trees": {"/srv//www": {"source": "site"}}}"#,
    ),
    (
        "the root itself",
        r#"{"datasets": {"/": {"type": "directory"}}}"#,
    ),
    (
        "a control character",
        r#"{"directories": {"/srv/a\nb": {}}}"#,
    ),
    (
        "restart_on not canonical",
        r#"{"services": {"a.service": {"restart_on": ["/etc/a/"]}}}"#,
    ),
    (
        "reload_on relative",
        r#"{"services": {"a.service": {"reload_on": ["etc/a"]}}}"#,
    ),
    (
        "content and source",
        r#"{"files": {"/a": {"content": "", "source": "motd"}}}"#,
    ),
    (
        "neither content nor source",
        r#"{"files": {"/a": {"mode": "0644"}}}"#,
    ),
    (
        "mode not octal",
        r#"{"files": {"/a": {"content": "", "mode": "0999"}}}"#,
    ),
    (
        "mode symbolic",
        r#"{"directories": {"/a": {"mode": "rwx"}}}"#,
    ),
    (
        "mode too long",
        r#"{"directories": {"/a": {"mode": "07777"}}}"#,
    ),
    (
        "negative owner",
        r#"{"directories": {"/a": {"owner": -1}}}"#,
    ),
    (
        "owner 2^32-1",
        r#"{"directories": {"/a": {"owner": 4294967295}}}"#,
    ),
    (
        "owner with a colon",
        r#"{"directories": {"/a": {"owner": "a:b"}}}"#,
    ),
    (
        "owner with a control character",
        r#"{"directories": {"/a": {"owner": "a\u0085b"}}}"#,
    ),
    ("empty group", r#"{"directories": {"/a": {"group": ""}}}"#),
    (
        "secret not a bool",
        r#"{"files": {"/a": {"content": "", "secret": "yes"}}}"#,
    ),
    ("empty symlink target", r#"{"symlinks": {"/l": ""}}"#),
    (
        "symlink target with a newline",
        r#"{"symlinks": {"/l": "a\nb"}}"#,
    ),
    (
        "zfs without a name",
        r#"{"datasets": {"/d": {"type": "zfs"}}}"#,
    ),
    (
        "zfs name without a pool",
        r#"{"datasets": {"/d": {"type": "zfs", "name": "tank"}}}"#,
    ),
    (
        "btrfs with a name",
        r#"{"datasets": {"/d": {"type": "btrfs", "name": "a/b"}}}"#,
    ),
    (
        "unknown dataset type",
        r#"{"datasets": {"/d": {"type": "ext4"}}}"#,
    ),
    ("unit without a suffix", r#"{"services": {"nginx": {}}}"#),
    ("unit of another kind", r#"{"services": {"a.slice": {}}}"#),
    ("unit with two @", r#"{"services": {"a@b@c.service": {}}}"#),
    (
        "unit starting with @",
        r#"{"services": {"@x.service": {}}}"#,
    ),
    (
        "timeout without a check",
        r#"{"services": {"a.service": {"check_timeout": 5}}}"#,
    ),
    (
        "timeout 0",
        r#"{"services": {"a.service": {"check": "true", "check_timeout": 0}}}"#,
    ),
    (
        "timeout too long",
        r#"{"services": {"a.service": {"check": "true", "check_timeout": 3601}}}"#,
    ),
    (
        "a blank check",
        r#"{"services": {"a.service": {"check": "  "}}}"#,
    ),
    ("apt uppercase", r#"{"packages": {"apt": ["Nginx"]}}"#),
    ("apt one character", r#"{"packages": {"apt": ["a"]}}"#),
    ("apt empty version", r#"{"packages": {"apt": ["htop="]}}"#),
    (
        "apt version not starting with a digit",
        r#"{"packages": {"apt": ["htop=x1"]}}"#,
    ),
    ("apt not a list", r#"{"packages": {"apt": "nginx"}}"#),
    ("$schema not a string", r#"{"$schema": 5}"#),
    (
        "an empty exclude glob",
        r#"{"trees": {"/w": {"source": "site", "exclude": [""]}}}"#,
    ),
    (
        "a slash for a glob",
        r#"{"trees": {"/w": {"source": "site", "exclude": ["/"]}}}"#,
    ),
    (
        "exclude not a list",
        r#"{"trees": {"/w": {"source": "site", "exclude": "*~"}}}"#,
    ),
    (
        "vcs not a bool",
        r#"{"trees": {"/w": {"source": "site", "vcs": "yes"}}}"#,
    ),
];

#[test]
fn the_schema_refuses_what_the_loader_refuses_for_shape() {
    let dir = scratch();
    let mut bad = Vec::new();
    for (name, text) in BAD_SHAPE {
        assert!(
            loads(dir.path(), text, "json").is_err(),
            "{name}: the loader accepts {text}"
        );
        if schema_errors(&serde_json::from_str(text).unwrap()).is_empty() {
            bad.push(format!("{name}: the schema accepts {text}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// What a schema cannot see: how a number was written. The loader takes a
/// mode as a number only as TOML's octal literal; the schema sees the value
/// (420 for `0o644`, `644` or JSON's 420) and must accept it for the
/// first. Kept here so the day the two agree, this test says so.
#[test]
fn a_number_mode_is_told_apart_by_the_loader_alone() {
    let dir = scratch();
    for (text, format) in [
        ("[files.\"/a\"]\ncontent = \"\"\nmode = 644\n", "toml"),
        (r#"{"files": {"/a": {"content": "", "mode": 420}}}"#, "json"),
    ] {
        let e = loads(dir.path(), text, format).unwrap_err();
        assert!(e.to_string().contains("invalid mode"), "{e}");
        assert!(schema_errors(&value_of(text, format)).is_empty(), "{text}");
    }
    let octal = "[files.\"/a\"]\ncontent = \"\"\nmode = 0o644\n";
    loads(dir.path(), octal, "toml").unwrap();
}

/// The check every run does (`schema_check`), on a file that goes through
/// the real binary: a TOML configuration with an octal mode is accepted by
/// both, and the file lands with that mode.
#[test]
fn a_toml_octal_mode_switches() {
    use std::os::unix::fs::PermissionsExt;
    let env = sysgen_tests::TestEnv::new();
    let cfg = env.write_cfg(
        "c.toml",
        "\"$schema\" = \"urn:sysgen:schema:config:1\"\n\n[files.\"/etc/motd\"]\ncontent = \"hi\\n\"\nmode = 0o640\n",
    );
    env.switch(&cfg);
    let mode = fs::metadata(env.at("/etc/motd"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o640);
    assert!(config_value(&cfg).is_ok());
}

/// The schema's path pattern and the loader's path rule agree on every
/// kind of component (lengths aside: the pattern counts characters, the
/// loader bytes).
#[test]
fn the_path_pattern_is_the_loaders_rule() {
    let paths = [
        "/a",
        "/.a",
        "/..a",
        "/...",
        "/a.",
        "/a..",
        "/a/.b/..c/...d",
        "/a b",
        "/é/ü",
        "/a-b_c~",
        "/a/./b",
        "/a/../b",
        "/.",
        "/..",
        "/a/.",
        "/a/..",
        "/a//b",
        "/a/",
        "/",
        "",
        "a",
        "a/b",
        "//a",
        "/a\tb",
        "/a\u{7f}",
        "/a\nb",
    ];
    let mut bad = Vec::new();
    for p in paths {
        // The loader refuses control characters before it parses a path.
        let loader = sysgen_schema::EntryPath::parse(p).is_ok() && !p.contains(char::is_control);
        let doc = serde_json::json!({ "directories": { p: {} }, "services": { "a.service": { "restart_on": [p] } } });
        let schema = schema_errors(&doc).is_empty();
        if loader != schema {
            bad.push(format!("{p:?}: loader {loader}, schema {schema}"));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
