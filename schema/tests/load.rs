//! `load` against real files in temp dirs: one case per rule of SPEC §2,
//! each checking that the error names the file and the location.

// clippy.toml allows unwrap in #[test] functions only; the fixture helpers
// here are test code too, where a panic is a failed test.
#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::path::{Path, PathBuf};

use sysgen_schema::{
    Check, DEFAULT_CHECK_TIMEOUT_SECS, DatasetKind, EntryPath, FileContent, LoadOptions, Mode,
    Principal, load,
};

mod common;

use common::{Fixture, ep, opts};

#[test]
fn identical_sibling_declarations_are_fine() {
    let f = Fixture::new(&[
        ("c.json", r#"{"include": ["a.json", "b.toml"]}"#),
        (
            "a.json",
            r#"{"files": {"/etc/motd": {"content": "hi", "mode": "644"}}, "packages": {"apt": ["htop"]}}"#,
        ),
        (
            "b.toml",
            "packages.apt = [\"htop\"]\n[files.\"/etc/motd\"]\ncontent = \"hi\"\nmode = \"0644\"\n",
        ),
    ]);
    let spec = f.load("c.json").unwrap();
    assert_eq!(spec.files[&ep("/etc/motd")].declared_in, f.real("a.json"));
    assert_eq!(spec.packages.apt.len(), 1);
}

#[test]
fn including_file_overrides() {
    let f = Fixture::new(&[
        (
            "c.json",
            r#"{"include": ["roles/web.json"], "files": {"/etc/motd": {"content": "top"}},
                "packages": {"apt": ["htop=3.2.2-2"]}, "host": "top"}"#,
        ),
        (
            "roles/web.json",
            r#"{"include": ["base.json"], "files": {"/etc/motd": {"content": "web"}},
                "services": {"nginx.service": {"enable": false}}}"#,
        ),
        (
            "roles/base.json",
            r#"{"files": {"/etc/motd": {"content": "base"}, "/etc/issue": {"content": "base"}},
                "packages": {"apt": ["htop"]}, "host": "base",
                "services": {"nginx.service": {}}}"#,
        ),
    ]);
    let spec = f.load("c.json").unwrap();
    let motd = &spec.files[&ep("/etc/motd")];
    assert_eq!(motd.content, FileContent::Inline("top".into()));
    assert_eq!(motd.declared_in, f.real("c.json"));
    assert_eq!(
        spec.files[&ep("/etc/issue")].declared_in,
        f.real("roles/base.json")
    );
    assert_eq!(
        spec.packages.apt["htop"].version.as_deref(),
        Some("3.2.2-2")
    );
    assert_eq!(spec.host.as_deref(), Some("top"));
    let nginx = &spec.services["nginx.service"];
    assert!(!nginx.enable);
    assert_eq!(nginx.declared_in, f.real("roles/web.json"));
}

#[test]
fn service_checks_get_a_timeout() {
    let f = Fixture::new(&[(
        "c.json",
        r#"{"services": {"a.service": {"check": "curl -f http://localhost/"},
                         "b.service": {"check": "true", "check_timeout": 5},
                         "c.service": {}}}"#,
    )]);
    let spec = f.load("c.json").unwrap();
    let check = |u: &str| spec.services[u].check.clone();
    assert_eq!(
        check("a.service"),
        Some(Check {
            command: "curl -f http://localhost/".into(),
            timeout_secs: DEFAULT_CHECK_TIMEOUT_SECS
        })
    );
    assert_eq!(check("b.service").map(|c| c.timeout_secs), Some(5));
    assert_eq!(check("c.service"), None);
}

#[test]
fn a_diamond_counts_once() {
    // base is reached through a and through b (spelled differently); a
    // overrides it. Were base loaded twice, b's copy would be a sibling of a
    // and conflict with it.
    let f = Fixture::new(&[
        ("c.json", r#"{"include": ["roles/a.json", "roles/b.json"]}"#),
        (
            "roles/a.json",
            r#"{"include": ["base.json"], "directories": {"/srv": {"mode": "0700"}}}"#,
        ),
        (
            "roles/b.json",
            r#"{"include": ["../roles/./base.json"], "symlinks": {"/b": "x"}}"#,
        ),
        (
            "roles/base.json",
            r#"{"directories": {"/srv": {}}, "packages": {"apt": ["git"]}}"#,
        ),
    ]);
    let spec = f.load("c.json").unwrap();
    let srv = &spec.directories[&ep("/srv")];
    assert_eq!(srv.mode, Mode::new(0o700).unwrap());
    assert_eq!(srv.declared_in, f.real("roles/a.json"));
    assert_eq!(spec.packages.apt["git"].name, "git");
    assert_eq!(spec.symlinks.len(), 1);
}

#[test]
fn defaults_and_principals() {
    let f = Fixture::new(&[(
        "c.json",
        r#"{
          "files": {
            "/a": {"content": "x"},
            "/s": {"content": "x", "secret": true},
            "/m": {"content": "x", "secret": true, "mode": "0640", "owner": 0, "group": "33"}
          },
          "directories": {"/d": {"owner": "www-data"}},
          "datasets": {"/z": {"type": "zfs", "name": "tank/z", "mode": "750"}},
          "services": {"a.service": {"restart_on": ["/a", "/a"]}}
        }"#,
    )]);
    let spec = f.load("c.json").unwrap();
    let mode = |p: &str| spec.files[&ep(p)].mode.bits();
    assert_eq!((mode("/a"), mode("/s"), mode("/m")), (0o644, 0o600, 0o640));
    assert!(!spec.files[&ep("/a")].secret);
    assert!(spec.files[&ep("/s")].secret);
    assert_eq!(spec.files[&ep("/a")].owner, None);
    assert_eq!(spec.files[&ep("/m")].owner, Some(Principal::Id(0)));
    assert_eq!(spec.files[&ep("/m")].group, Some(Principal::Id(33)));
    let d = &spec.directories[&ep("/d")];
    assert_eq!(d.mode.bits(), 0o755);
    assert_eq!(d.owner, Some(Principal::Name("www-data".into())));
    let z = &spec.datasets[&ep("/z")];
    assert_eq!(
        z.kind,
        DatasetKind::Zfs {
            name: "tank/z".into()
        }
    );
    assert!(!z.snapshot);
    assert_eq!(z.mode, Mode::new(0o750));
    let a = &spec.services["a.service"];
    assert!(a.enable);
    assert_eq!(a.restart_on, [ep("/a")]);
    assert_eq!(spec.host, None);
}

#[test]
fn no_reserved_paths_when_state_dir_is_outside_the_root() {
    let f = Fixture::new(&[("c.json", r#"{"directories": {"/var/lib/sysgen": {}}}"#)]);
    let spec = load(&f.path("c.json"), &LoadOptions::default()).unwrap();
    assert_eq!(spec.directories.len(), 1);
}

const SPEC_JSON: &str = r#"{
  "sysgen": 1,
  "host": "web1",
  "include": ["roles/base.json", "roles/web.json"],
  "files": {
    "/etc/motd": { "content": "Welcome to web1\n" },
    "/etc/nginx/nginx.conf": { "source": "files/nginx.conf", "mode": "0644", "owner": "root", "group": "root" },
    "/etc/app/token": { "source": "secrets/token", "secret": true }
  },
  "directories": { "/srv/app": { "mode": "0750", "owner": "root", "group": "www-data" } },
  "symlinks": { "/etc/localtime": "/usr/share/zoneinfo/UTC" },
  "trees": { "/srv/www": { "source": "site" } },
  "packages": { "apt": ["nginx", "htop=3.2.2-2"] },
  "datasets": { "/srv/data": { "type": "btrfs", "snapshot": true } },
  "services": { "nginx.service": { "enable": true, "restart_on": ["/etc/nginx/nginx.conf"] } }
}"#;

const SPEC_TOML: &str = r#"
sysgen = 1
host = "web1"
include = ["roles/base.json", "roles/web.json"]

[files."/etc/motd"]
content = "Welcome to web1\n"

[files."/etc/nginx/nginx.conf"]
source = "files/nginx.conf"
mode = "0644"
owner = "root"
group = "root"

[files."/etc/app/token"]
source = "secrets/token"
secret = true

[directories."/srv/app"]
mode = "0750"
owner = "root"
group = "www-data"

[symlinks]
"/etc/localtime" = "/usr/share/zoneinfo/UTC"

[trees."/srv/www"]
source = "site"

[packages]
apt = ["nginx", "htop=3.2.2-2"]

[datasets."/srv/data"]
type = "btrfs"
snapshot = true

[services."nginx.service"]
enable = true
restart_on = ["/etc/nginx/nginx.conf"]
"#;

fn spec_fixture() -> Fixture {
    Fixture::new(&[
        ("host/web1.json", SPEC_JSON),
        ("host/web1.toml", SPEC_TOML),
        ("host/files/nginx.conf", "events {}\n"),
        ("host/secrets/token", "s3cret\n"),
        ("host/site/index.html", "<h1>hi</h1>\n"),
        (
            "host/roles/base.json",
            r#"{"packages": {"apt": ["htop", "curl"]}, "files": {"/etc/motd": {"content": "base\n"}},
                "directories": {"/srv": {}}}"#,
        ),
        (
            "host/roles/web.json",
            r#"{"include": ["base.json"], "packages": {"apt": ["nginx"]},
                "files": {"/etc/nginx/mime.types": {"content": "types {}\n"}}}"#,
        ),
    ])
}

#[test]
fn the_spec_example_loads() {
    let f = spec_fixture();
    let spec = f.load("host/web1.json").unwrap();
    let top = f.real("host/web1.json");
    assert_eq!(spec.config, top);
    assert_eq!(spec.host.as_deref(), Some("web1"));
    let files: Vec<&str> = spec.files.keys().map(EntryPath::as_str).collect();
    assert_eq!(
        files,
        [
            "/etc/app/token",
            "/etc/motd",
            "/etc/nginx/mime.types",
            "/etc/nginx/nginx.conf"
        ]
    );
    assert_eq!(
        spec.files[&ep("/etc/motd")].content,
        FileContent::Inline("Welcome to web1\n".into())
    );
    let conf = &spec.files[&ep("/etc/nginx/nginx.conf")];
    assert_eq!(
        conf.content,
        FileContent::Source(f.real("host/files/nginx.conf"))
    );
    assert_eq!(conf.owner, Some(Principal::Name("root".into())));
    let token = &spec.files[&ep("/etc/app/token")];
    assert!(token.secret);
    assert_eq!(token.mode.bits(), 0o600);
    assert_eq!(
        spec.files[&ep("/etc/nginx/mime.types")].declared_in,
        f.real("host/roles/web.json")
    );
    assert_eq!(
        spec.directories[&ep("/srv")].declared_in,
        f.real("host/roles/base.json")
    );
    assert_eq!(spec.directories[&ep("/srv/app")].mode.bits(), 0o750);
    assert_eq!(
        spec.symlinks[&ep("/etc/localtime")].target,
        "/usr/share/zoneinfo/UTC"
    );
    assert_eq!(spec.trees[&ep("/srv/www")].source, f.real("host/site"));
    assert_eq!(spec.trees[&ep("/srv/www")].mode, None);
    let apt: Vec<(&str, Option<&str>)> = spec
        .packages
        .apt
        .values()
        .map(|p| (p.name.as_str(), p.version.as_deref()))
        .collect();
    assert_eq!(
        apt,
        [("curl", None), ("htop", Some("3.2.2-2")), ("nginx", None)]
    );
    let data = &spec.datasets[&ep("/srv/data")];
    assert_eq!((&data.kind, data.snapshot), (&DatasetKind::Btrfs, true));
    let nginx = &spec.services["nginx.service"];
    assert_eq!(nginx.restart_on, [ep("/etc/nginx/nginx.conf")]);
    assert_eq!(nginx.check, None);
}

#[test]
fn json_and_toml_load_alike() {
    let f = spec_fixture();
    let from_json = f.load("host/web1.json").unwrap();
    let mut from_toml = f.load("host/web1.toml").unwrap();
    // Only the top-level file's name differs.
    let (json_top, toml_top) = (f.real("host/web1.json"), f.real("host/web1.toml"));
    assert_eq!(from_toml.config, toml_top);
    from_toml.config = json_top.clone();
    let fix = |p: &mut PathBuf| {
        if *p == toml_top {
            *p = json_top.clone();
        }
    };
    from_toml
        .files
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .directories
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .symlinks
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .trees
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .datasets
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .services
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    from_toml
        .packages
        .apt
        .values_mut()
        .for_each(|s| fix(&mut s.declared_in));
    assert_eq!(from_json, from_toml);
}

#[test]
fn relative_top_level_path_names_files_as_given() {
    // Errors read like what the user typed: relative stays relative.
    let f = Fixture::new(&[
        ("c.json", r#"{"include": ["roles/a.json"]}"#),
        (
            "roles/a.json",
            "{\n  \"files\": {\"/a/\": {\"content\": \"\"}}\n}",
        ),
    ]);
    let cwd = std::env::current_dir().unwrap();
    let rel = pathdiff(f.dir.path(), &cwd);
    let e = load(&rel.join("c.json"), &opts()).unwrap_err();
    assert_eq!(e.file, rel.join("roles/a.json"));
    assert!(e.to_string().starts_with(&format!(
        "{}:2:13: files./a/",
        rel.join("roles/a.json").display()
    )));
}

/// `to` relative to `from`, via `..` components (both absolute).
fn pathdiff(to: &Path, from: &Path) -> PathBuf {
    let (to, from) = (to.canonicalize().unwrap(), from.canonicalize().unwrap());
    let common = to
        .components()
        .zip(from.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut out = PathBuf::new();
    for _ in from.components().skip(common) {
        out.push("..");
    }
    for c in to.components().skip(common) {
        out.push(c);
    }
    out
}
