//! Issue 12: every configuration error points into its file: line and
//! column, the keys, and the span a caret goes under, in JSON and TOML,
//! in the top file and in included ones, for syntax errors and the rules
//! checked after parsing alike.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;

use sysgen_schema::{EntryPath, LoadError, LoadOptions, load, located};

fn load_err(files: &[(&str, &str)]) -> (tempfile::TempDir, LoadError) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let p = dir.path().join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }
    let opts = LoadOptions {
        reserved: vec![EntryPath::parse("/var/lib/sysgen").unwrap()],
    };
    let e = load(&dir.path().join(files[0].0), &opts).unwrap_err();
    (dir, e)
}

struct Case {
    name: &'static str,
    files: &'static [(&'static str, &'static str)],
    /// The file at fault, its line and column, the keys, and the text the
    /// caret goes under.
    file: &'static str,
    at: (usize, usize),
    keys: &'static [&'static str],
    under: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "a path rule, JSON",
        files: &[(
            "c.json",
            "{\n  \"files\": {\n    \"/etc/motd/\": { \"content\": \"\" }\n  }\n}\n",
        )],
        file: "c.json",
        at: (3, 5),
        keys: &["files", "/etc/motd/"],
        under: "\"/etc/motd/\"",
    },
    Case {
        name: "a path rule, TOML table header",
        files: &[(
            "c.toml",
            "host = \"web1\"\n\n[directories.\"/srv/../x\"]\nmode = \"0750\"\n",
        )],
        file: "c.toml",
        at: (3, 14),
        keys: &["directories", "/srv/../x"],
        under: "\"/srv/../x\"",
    },
    Case {
        name: "a rule on a unit's field, the unit's name holding a dot",
        files: &[("c.toml", "[services.\"a.service\"]\ncheck_timeout = 5\n")],
        file: "c.toml",
        at: (2, 1),
        keys: &["services", "a.service", "check_timeout"],
        under: "check_timeout",
    },
    Case {
        name: "a restart_on item",
        files: &[(
            "c.json",
            "{\"services\": {\"a.service\": {\n  \"restart_on\": [\"/etc/a\", \"etc/b\"]}}}",
        )],
        file: "c.json",
        at: (2, 28),
        keys: &["services", "a.service", "restart_on", "etc/b"],
        under: "\"etc/b\"",
    },
    Case {
        name: "a package listed twice: the second",
        files: &[(
            "c.json",
            "{\"packages\": {\"apt\": [\"htop\", \"curl\", \"htop=3.2\"]}}",
        )],
        file: "c.json",
        at: (1, 39),
        keys: &["packages", "apt", "htop=3.2"],
        under: "\"htop=3.2\"",
    },
    Case {
        name: "zfs without a name",
        files: &[("c.toml", "[datasets.\"/d\"]\ntype = \"zfs\"\n")],
        file: "c.toml",
        at: (1, 11),
        keys: &["datasets", "/d"],
        under: "\"/d\"",
    },
    Case {
        name: "an error in an included file is in that file",
        files: &[
            ("c.json", "{\"include\": [\"roles/web.toml\"]}"),
            (
                "roles/web.toml",
                "[files.\"/a\"]\ncontent = \"\"\nsource = \"x\"\n",
            ),
        ],
        file: "roles/web.toml",
        at: (1, 8),
        keys: &["files", "/a"],
        under: "\"/a\"",
    },
    Case {
        name: "a missing include is the include",
        files: &[(
            "c.json",
            "{\n  \"include\": [\"base.json\", \"gone.json\"]\n}",
        )],
        file: "c.json",
        at: (2, 28),
        keys: &["include", "gone.json"],
        under: "\"gone.json\"",
    },
    Case {
        name: "an unknown key",
        files: &[(
            "c.toml",
            "[files.\"/a\"]\ncontent = \"\"\nmdoe = \"0644\"\n",
        )],
        file: "c.toml",
        at: (3, 1),
        keys: &["files", "/a", "mdoe"],
        under: "mdoe",
    },
    Case {
        name: "a bad value is the value",
        files: &[(
            "c.json",
            "{\"directories\": {\"/srv\": {\"mode\": \"0999\"}}}",
        )],
        file: "c.json",
        at: (1, 35),
        keys: &["directories", "/srv", "mode"],
        under: "\"0999\"",
    },
    Case {
        name: "a decimal TOML mode is the number",
        files: &[("c.toml", "[directories.\"/srv\"]\nmode = 750\n")],
        file: "c.toml",
        at: (2, 8),
        keys: &["directories", "/srv", "mode"],
        under: "750",
    },
];

#[test]
fn every_error_points_at_its_key() {
    let mut bad = Vec::new();
    for c in CASES {
        let mut files = c.files.to_vec();
        if c.name.contains("missing include") {
            files.push(("base.json", "{}"));
        }
        let (dir, e) = load_err(&files);
        let d = &e.detail;
        let under = d
            .source
            .as_deref()
            .zip(d.span.clone())
            .and_then(|(text, span)| text.get(span))
            .unwrap_or("<no span>");
        let got = (
            e.file
                .strip_prefix(dir.path())
                .unwrap()
                .display()
                .to_string(),
            e.line.zip(e.column),
            d.path.clone(),
            under.to_owned(),
        );
        let want = (
            c.file.to_owned(),
            Some(c.at),
            c.keys.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
            c.under.to_owned(),
        );
        if got != want {
            bad.push(format!("{}: got {got:?}, want {want:?} ({e})", c.name));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Two sibling files declaring one file differently: the error is in the
/// first, and names where the other declares it.
#[test]
fn a_conflict_points_into_both_files() {
    let (dir, e) = load_err(&[
        ("c.json", "{\"include\": [\"a.json\", \"b.toml\"]}"),
        (
            "a.json",
            "{\n  \"files\": {\"/etc/motd\": {\"content\": \"a\"}}\n}",
        ),
        ("b.toml", "# b\n\n[files.\"/etc/motd\"]\ncontent = \"b\"\n"),
    ]);
    assert_eq!(e.file, dir.path().join("a.json"), "{e}");
    assert_eq!(e.line.zip(e.column), Some((2, 13)), "{e}");
    assert_eq!(e.other_file, Some(dir.path().join("b.toml")));
    assert_eq!(e.detail.other_at, Some((3, 8)), "{e}");
    assert_eq!(e.code(), "config-conflict");
}

/// An error the library finds after loading, written "FILE: LABEL: what",
/// is placed the same way.
#[test]
fn an_error_found_after_loading_is_located() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.json");
    fs::write(
        &cfg,
        "{\n  \"trees\": {\n    \"/srv/www\": { \"source\": \"site\" }\n  }\n}\n",
    )
    .unwrap();
    let msg = format!(
        "{}: trees./srv/www: site/x is a special file; trees may hold only files",
        cfg.display()
    );
    let e = located(&msg).unwrap();
    assert_eq!((e.line, e.column), (Some(3), Some(5)));
    assert_eq!(e.detail.path, ["trees", "/srv/www"]);
    let (what, hint) = e.parts();
    assert_eq!(what, "trees./srv/www: site/x is a special file");
    assert_eq!(hint, Some("trees may hold only files"));
    // An owner the root lacks is the owner key.
    fs::write(
        &cfg,
        "{\"files\": {\"/a\": {\"content\": \"\", \"owner\": \"web\", \"group\": \"web\"}}}",
    )
    .unwrap();
    let e = located(&format!(
        "{}: files./a: group \"web\" does not exist in the target root's /etc/group",
        cfg.display()
    ))
    .unwrap();
    assert_eq!(e.detail.path, ["files", "/a", "group"]);
    assert_eq!(e.column, Some(50));
    // Not a configuration file, or no such label: nothing to point at.
    assert!(located("/etc/passwd: x: y").is_none());
    assert!(located(&format!("{}: nothing.here: y", cfg.display())).is_none());
}
