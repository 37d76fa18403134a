//! `load` against real files in temp dirs: one case per rule of SPEC §2,
//! each checking that the error names the file and the location.

// clippy.toml allows unwrap in #[test] functions only; the fixture helpers
// here are test code too, where a panic is a failed test.
#![allow(clippy::unwrap_used, reason = "test helpers")]

use std::path::{Path, PathBuf};

use sysgen_schema::{
    Check, DEFAULT_CHECK_TIMEOUT_SECS, DatasetKind, EntryPath, FileContent, HostSpec, LoadError,
    LoadErrorKind, LoadOptions, Mode, Principal, load,
};

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(files: &[(&str, &str)]) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        for (rel, text) in files {
            f.write(rel, text);
        }
        f
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn real(&self, rel: &str) -> PathBuf {
        self.path(rel).canonicalize().unwrap()
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        if let Some(dir) = rel.strip_suffix('/') {
            std::fs::create_dir_all(self.path(dir)).unwrap();
        } else {
            std::fs::write(p, text).unwrap();
        }
    }

    fn load(&self, rel: &str) -> Result<HostSpec, LoadError> {
        load(&self.path(rel), &opts())
    }
}

fn opts() -> LoadOptions {
    LoadOptions {
        reserved: vec![ep("/var/lib/sysgen")],
    }
}

fn ep(s: &str) -> EntryPath {
    EntryPath::parse(s).unwrap()
}

/// What an error must say.
struct Want {
    /// The file named, relative to the fixture.
    file: &'static str,
    /// Line and column, for syntax and type errors; `None` for the others.
    at: Option<(usize, usize)>,
    kind: LoadErrorKind,
    /// Substrings of the message (the path, the other file, ...).
    says: &'static [&'static str],
}

fn check(name: &str, files: &[(&str, &str)], top: &str, want: Want) {
    let f = Fixture::new(files);
    let e = match f.load(top) {
        Ok(spec) => panic!("{name}: loaded, want an error: {spec:#?}"),
        Err(e) => e,
    };
    let shown = e.to_string();
    assert_eq!(e.file, f.path(want.file), "{name}: wrong file: {shown}");
    assert_eq!(e.kind, want.kind, "{name}: wrong kind: {shown}");
    // Syntax errors are at serde's position; the others at the key they
    // name, found in the text (issue 12), except a file that cannot be read.
    let at = match (want.at, e.kind) {
        (Some(at), _) => Some(at),
        (None, LoadErrorKind::Read) => e.line.zip(e.column),
        (None, _) => Some((
            e.line.unwrap_or_else(|| panic!("{name}: no line: {shown}")),
            e.column
                .unwrap_or_else(|| panic!("{name}: no column: {shown}")),
        )),
    };
    let prefix = match at {
        Some((l, c)) => format!("{}:{l}:{c}: ", f.path(want.file).display()),
        None => format!("{}: ", f.path(want.file).display()),
    };
    assert!(
        shown.starts_with(&prefix),
        "{name}: want prefix {prefix:?}, got {shown:?}"
    );
    assert_eq!(
        (e.line, e.column),
        (at.map(|a| a.0), at.map(|a| a.1)),
        "{name}"
    );
    for s in want.says {
        let s = s.replace("$DIR", &f.dir.path().display().to_string());
        assert!(shown.contains(&s), "{name}: want {s:?} in {shown:?}");
    }
    let first = e.message.chars().next().unwrap();
    assert!(
        !first.is_uppercase(),
        "{name}: message must start lowercase: {shown}"
    );
    assert!(
        !e.message.ends_with('.'),
        "{name}: no trailing period: {shown}"
    );
}

const fn syntax(file: &'static str, l: usize, c: usize, says: &'static [&'static str]) -> Want {
    Want {
        file,
        at: Some((l, c)),
        kind: LoadErrorKind::Syntax,
        says,
    }
}

const fn invalid(file: &'static str, says: &'static [&'static str]) -> Want {
    Want {
        file,
        at: None,
        kind: LoadErrorKind::Invalid,
        says,
    }
}

const fn conflict(file: &'static str, says: &'static [&'static str]) -> Want {
    Want {
        file,
        at: None,
        kind: LoadErrorKind::Conflict,
        says,
    }
}

#[test]
fn syntax_and_type_errors_give_line_and_column() {
    let cases: &[(&str, &str, &str, Want)] = &[
        (
            "json syntax",
            "c.json",
            "{\n  \"files\": {},\n}",
            syntax("c.json", 3, 1, &["trailing comma"]),
        ),
        (
            "unknown top-level key",
            "c.json",
            "{\n  \"fils\": {}\n}",
            syntax(
                "c.json",
                2,
                3,
                &["unknown field `fils`; did you mean `files`?"],
            ),
        ),
        (
            "unknown file key",
            "c.json",
            "{\"files\": {\n  \"/etc/motd\": {\"contnet\": \"x\"}\n}}",
            syntax(
                "c.json",
                2,
                17,
                &["unknown field `contnet`; did you mean `content`?"],
            ),
        ),
        (
            "sysgen as a string",
            "c.json",
            "{\"sysgen\": \"1\"}",
            syntax("c.json", 1, 12, &["invalid type: string \"1\""]),
        ),
        (
            "mode as a number",
            "c.json",
            "{\"directories\": {\"/srv\": {\n  \"mode\": 755}}}",
            Want {
                at: Some((2, 11)),
                ..invalid(
                    "c.json",
                    &["invalid mode 755: JSON has no octal numbers", "\"0644\""],
                )
            },
        ),
        (
            "mode not octal",
            "c.json",
            "{\"directories\": {\"/srv\": {\n  \"mode\": \"0999\"}}}",
            syntax(
                "c.json",
                2,
                11,
                &["invalid mode \"0999\"", "3 or 4 octal digits"],
            ),
        ),
        (
            "mode symbolic",
            "c.json",
            "{\"files\": {\"/a\": {\"content\": \"\", \"mode\": \"rw-\"}}}",
            syntax("c.json", 1, 42, &["invalid mode \"rw-\""]),
        ),
        (
            "secret not a bool",
            "c.json",
            "{\"files\": {\"/a\": {\"content\": \"\",\n \"secret\": \"yes\"}}}",
            syntax(
                "c.json",
                2,
                12,
                &["invalid type: string \"yes\", expected a boolean"],
            ),
        ),
        (
            "negative owner",
            "c.json",
            "{\"directories\": {\"/srv\": {\"owner\": -1}}}",
            syntax("c.json", 1, 36, &["invalid id -1"]),
        ),
        (
            "empty group name",
            "c.json",
            "{\"directories\": {\"/srv\": {\"group\": \"\"}}}",
            syntax("c.json", 1, 36, &["invalid user or group name \"\""]),
        ),
        (
            "unknown dataset type",
            "c.json",
            "{\"datasets\": {\"/d\": {\"type\": \"ext4\"}}}",
            syntax("c.json", 1, 30, &["unknown variant `ext4`", "`btrfs`"]),
        ),
        (
            "duplicate key in json",
            "c.json",
            "{\"files\": {\n\"/a\": {\"content\": \"1\"},\n\"/a\": {\"content\": \"2\"}}}",
            syntax("c.json", 3, 4, &["duplicate key \"/a\""]),
        ),
        (
            "apt not a list",
            "c.json",
            "{\"packages\": {\"apt\": \"nginx\"}}",
            syntax("c.json", 1, 22, &["expected a sequence"]),
        ),
        (
            "toml syntax",
            "c.toml",
            "[files.\"/a\"]\ncontent = \n",
            syntax("c.toml", 2, 11, &["invalid string; expected"]),
        ),
        (
            "toml unknown key",
            "c.toml",
            "host = \"web1\"\n\n[files.\"/etc/motd\"]\ncontent = \"hi\"\nmdoe = \"0644\"\n",
            syntax("c.toml", 5, 1, &["unknown field `mdoe`"]),
        ),
        (
            "toml mode as integer",
            "c.toml",
            "[directories.\"/srv\"]\nmode = 755\n",
            Want {
                at: Some((2, 8)),
                ..invalid(
                    "c.toml",
                    &[
                        "invalid mode 755: a mode written as a number must be octal",
                        "0o644",
                    ],
                )
            },
        ),
        (
            "toml bad mode",
            "c.toml",
            "[directories.\"/srv\"]\nmode = \"0999\"\n",
            syntax("c.toml", 2, 8, &["invalid mode \"0999\""]),
        ),
        (
            "toml duplicate key",
            "c.toml",
            "[files.\"/a\"]\ncontent = \"1\"\n[files.\"/a\"]\ncontent = \"2\"\n",
            syntax("c.toml", 3, 1, &["duplicate key `\"/a\"` in table `files`"]),
        ),
    ];
    for (name, file, text, want) in cases {
        let w = Want { ..*want };
        check(name, &[(file, text)], file, w);
    }
}

#[test]
fn semantic_errors_name_the_file_and_the_key() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, Want)] = &[
        ("sysgen 2", r#"{"sysgen": 2, "newfield": 1}"#,
            invalid("c.json", &["sysgen: unsupported format version 2"])),
        ("sysgen 0", r#"{"sysgen": 0}"#,
            invalid("c.json", &["unsupported format version 0"])),
        ("relative path", r#"{"files": {"etc/motd": {"content": ""}}}"#,
            invalid("c.json", &["files.etc/motd: path must be absolute", "(write /etc/motd)"])),
        ("trailing slash", r#"{"files": {"/etc/motd/": {"content": ""}}}"#,
            invalid("c.json", &["files./etc/motd/: path must not end with / (write /etc/motd)"])),
        ("dot-dot", r#"{"directories": {"/srv/../etc": {}}}"#,
            invalid("c.json", &["directories./srv/../etc: path must not contain a . or .. component"])),
        ("empty component", r#"{"symlinks": {"/etc//l": "x"}}"#,
            invalid("c.json", &["symlinks./etc//l: path must not contain an empty component", "(write /etc/l)"])),
        ("root", r#"{"datasets": {"/": {"type": "directory"}}}"#,
            invalid("c.json", &["datasets./: path must not be / itself"])),
        ("tree path", r#"{"trees": {"/srv/www/.": {"source": "."}}}"#,
            invalid("c.json", &["trees./srv/www/.: path must not contain a . or .. component"])),
        ("restart_on path", r#"{"services": {"a.service": {"restart_on": ["etc/a"]}}}"#,
            invalid("c.json", &["services.a.service.restart_on.etc/a: path must be absolute"])),
        ("reload_on path", r#"{"services": {"a.service": {"reload_on": ["/etc/a/"]}}}"#,
            invalid("c.json", &["services.a.service.reload_on./etc/a/: path must not end with /"])),
        ("reserved: at", r#"{"directories": {"/var/lib/sysgen": {}}}"#,
            invalid("c.json", &["directories./var/lib/sysgen: path is inside sysgen's state directory /var/lib/sysgen"])),
        ("reserved: under", r#"{"files": {"/var/lib/sysgen/db": {"content": ""}}}"#,
            invalid("c.json", &["files./var/lib/sysgen/db", "state directory"])),
        ("reserved: restart_on", r#"{"services": {"a.service": {"restart_on": ["/var/lib/sysgen/x"]}}}"#,
            invalid("c.json", &["services.a.service.restart_on./var/lib/sysgen/x", "state directory"])),
        ("reserved: symlink above", r#"{"symlinks": {"/var/lib": "/data"}}"#,
            invalid("c.json", &["symlinks./var/lib: a symlink here would replace sysgen's state directory"])),
        ("content and source", r#"{"files": {"/a": {"content": "", "source": "x"}}}"#,
            invalid("c.json", &["files./a: both content and source are set"])),
        ("neither content nor source", r#"{"files": {"/a": {"mode": "0644"}}}"#,
            invalid("c.json", &["files./a: neither content nor source"])),
        ("missing source", r#"{"files": {"/a": {"source": "files/nope"}}}"#,
            invalid("c.json", &["files./a: source files/nope ($DIR/files/nope): no such file"])),
        ("source is a directory", r#"{"files": {"/a": {"source": "dir"}}}"#,
            invalid("c.json", &["files./a: source dir", "is not a regular file"])),
        ("empty symlink target", r#"{"symlinks": {"/l": ""}}"#,
            invalid("c.json", &["symlinks./l: the target must be a non-empty string"])),
        ("missing tree source", r#"{"trees": {"/srv/www": {"source": "site"}}}"#,
            invalid("c.json", &["trees./srv/www: source site", "no such file"])),
        ("tree source is a file", r#"{"trees": {"/srv/www": {"source": "file"}}}"#,
            invalid("c.json", &["trees./srv/www: source file", "is not a directory"])),
        ("apt uppercase", r#"{"packages": {"apt": ["Nginx"]}}"#,
            invalid("c.json", &["packages.apt: invalid package name \"Nginx\""])),
        ("apt one char", r#"{"packages": {"apt": ["a=1.0"]}}"#,
            invalid("c.json", &["invalid package name \"a\""])),
        ("apt empty version", r#"{"packages": {"apt": ["htop="]}}"#,
            invalid("c.json", &["packages.apt.htop: invalid version \"\""])),
        ("apt duplicate", r#"{"packages": {"apt": ["htop", "curl", "htop=3.2"]}}"#,
            invalid("c.json", &["packages.apt.htop: listed more than once in this file"])),
        ("zfs without name", r#"{"datasets": {"/d": {"type": "zfs"}}}"#,
            invalid("c.json", &["datasets./d: type zfs needs a name"])),
        ("zfs bad name", r#"{"datasets": {"/d": {"type": "zfs", "name": "tank"}}}"#,
            invalid("c.json", &["datasets./d: invalid zfs dataset name \"tank\"", "pool/dataset"])),
        ("btrfs with name", r#"{"datasets": {"/d": {"type": "btrfs", "name": "a/b"}}}"#,
            invalid("c.json", &["datasets./d: name is only for type zfs"])),
        ("unit suffix", r#"{"services": {"nginx": {}}}"#,
            invalid("c.json", &["services.nginx: not a unit name", ".service"])),
        ("unit chars", r#"{"services": {"my app.service": {}}}"#,
            invalid("c.json", &["services.my app.service: invalid unit name"])),
        ("empty check", r#"{"services": {"a.service": {"check": " "}}}"#,
            invalid("c.json", &["services.a.service.check: the command is empty"])),
        ("check_timeout alone", r#"{"services": {"a.service": {"check_timeout": 5}}}"#,
            invalid("c.json", &["services.a.service.check_timeout: there is no check to time"])),
        ("check_timeout zero", r#"{"services": {"a.service": {"check": "true", "check_timeout": 0}}}"#,
            invalid("c.json", &["services.a.service.check_timeout: 0 is out of range", "1 to 3600"])),
        ("host", r#"{"host": "web_1"}"#,
            invalid("c.json", &["host: invalid host name \"web_1\""])),
    ];
    for (name, text, want) in cases {
        let w = Want { ..*want };
        check(
            name,
            &[("c.json", text), ("dir/", ""), ("file", "x")],
            "c.json",
            w,
        );
    }
}

#[test]
fn toml_semantic_errors_name_the_file() {
    check(
        "toml sysgen 2",
        &[("c.toml", "sysgen = 2\n")],
        "c.toml",
        invalid("c.toml", &["unsupported format version 2"]),
    );
    check(
        "toml trailing slash",
        &[("c.toml", "[files.\"/etc/motd/\"]\ncontent = \"\"\n")],
        "c.toml",
        invalid(
            "c.toml",
            &["files./etc/motd/: path must not end with / (write /etc/motd)"],
        ),
    );
}

#[test]
fn file_types() {
    check(
        "top-level yaml",
        &[("c.yaml", "{}")],
        "c.yaml",
        Want {
            file: "c.yaml",
            at: None,
            kind: LoadErrorKind::Read,
            says: &["must end in .json or .toml"],
        },
    );
    check(
        "included yaml",
        &[("c.json", r#"{"include": ["r.yaml"]}"#), ("r.yaml", "")],
        "c.json",
        Want {
            file: "c.json",
            at: None,
            kind: LoadErrorKind::Read,
            says: &["include \"r.yaml\"", "must end in .json or .toml"],
        },
    );
    check(
        "missing top-level",
        &[],
        "c.json",
        Want {
            file: "c.json",
            at: None,
            kind: LoadErrorKind::Read,
            says: &["cannot read", "no such file"],
        },
    );
}

#[test]
fn include_errors() {
    check(
        "missing include names the including file",
        &[
            ("c.json", r#"{"include": ["roles/a.json"]}"#),
            ("roles/a.json", r#"{"include": ["nope.json"]}"#),
        ],
        "c.json",
        Want {
            file: "roles/a.json",
            at: None,
            kind: LoadErrorKind::Read,
            says: &["include \"nope.json\"", "roles/nope.json: no such file"],
        },
    );
    check(
        "syntax error in an included file names that file",
        &[
            ("c.json", r#"{"include": ["a.toml"]}"#),
            ("a.toml", "x = 1\n"),
        ],
        "c.json",
        syntax("a.toml", 1, 1, &["unknown field `x`"]),
    );
    check(
        "cycle",
        &[
            ("c.json", r#"{"include": ["a.json"]}"#),
            ("a.json", r#"{"include": ["b.toml"]}"#),
            ("b.toml", "include = [\"a.json\"]\n"),
        ],
        "c.json",
        Want {
            file: "b.toml",
            at: None,
            kind: LoadErrorKind::Cycle,
            says: &["include \"a.json\" makes a cycle: $DIR/a.json -> $DIR/b.toml -> $DIR/a.json"],
        },
    );
    check(
        "self include",
        &[("c.json", r#"{"include": ["./c.json"]}"#)],
        "c.json",
        Want {
            file: "c.json",
            at: None,
            kind: LoadErrorKind::Cycle,
            says: &["makes a cycle: $DIR/c.json -> $DIR/c.json"],
        },
    );
}

#[test]
fn conflicts_name_both_files() {
    check(
        "sibling files differ",
        &[
            ("c.json", r#"{"include": ["a.json", "b.json"]}"#),
            ("a.json", r#"{"files": {"/etc/motd": {"content": "a"}}}"#),
            ("b.json", r#"{"files": {"/etc/motd": {"content": "b"}}}"#),
        ],
        "c.json",
        conflict(
            "a.json",
            &["files./etc/motd: declared differently in $DIR/a.json and in $DIR/b.json"],
        ),
    );
    check(
        "sibling packages differ",
        &[
            ("c.json", r#"{"include": ["a.json", "b.json"]}"#),
            ("a.json", r#"{"packages": {"apt": ["htop"]}}"#),
            ("b.json", r#"{"packages": {"apt": ["htop=3.2"]}}"#),
        ],
        "c.json",
        conflict(
            "a.json",
            &["packages.apt.htop: declared differently", "$DIR/b.json"],
        ),
    );
    check(
        "sibling hosts differ",
        &[
            ("c.json", r#"{"include": ["a.json", "b.toml"]}"#),
            ("a.json", r#"{"host": "a"}"#),
            ("b.toml", "host = \"b\"\n"),
        ],
        "c.json",
        conflict("a.json", &["host: declared differently", "$DIR/b.toml"]),
    );
    check(
        "sibling services differ",
        &[
            ("c.json", r#"{"include": ["a.json", "b.json"]}"#),
            ("a.json", r#"{"services": {"x.service": {}}}"#),
            (
                "b.json",
                r#"{"services": {"x.service": {"enable": false}}}"#,
            ),
        ],
        "c.json",
        conflict(
            "a.json",
            &["services.x.service: declared differently", "$DIR/b.json"],
        ),
    );
    check(
        "same relative source in two directories differs",
        &[
            ("c.json", r#"{"include": ["a/r.json", "b/r.json"]}"#),
            ("a/r.json", r#"{"files": {"/f": {"source": "f"}}}"#),
            ("a/f", "same"),
            ("b/r.json", r#"{"files": {"/f": {"source": "f"}}}"#),
            ("b/f", "same"),
        ],
        "c.json",
        conflict(
            "a/r.json",
            &["files./f: declared differently", "$DIR/b/r.json"],
        ),
    );
    check(
        "one path in two sections",
        &[
            (
                "c.json",
                r#"{"include": ["a.json"], "directories": {"/srv/x": {}}}"#,
            ),
            ("a.json", r#"{"files": {"/srv/x": {"content": ""}}}"#),
        ],
        "c.json",
        conflict(
            "a.json",
            &[
                "/srv/x is declared under both files (in $DIR/a.json) and directories (in $DIR/c.json)",
            ],
        ),
    );
    check(
        "path under a file",
        &[
            (
                "c.json",
                r#"{"include": ["a.json"], "directories": {"/etc/motd/x": {}}}"#,
            ),
            ("a.json", r#"{"files": {"/etc/motd": {"content": ""}}}"#),
        ],
        "c.json",
        conflict(
            "c.json",
            &["directories./etc/motd/x lies under files./etc/motd (declared in $DIR/a.json)"],
        ),
    );
    check(
        "path under a symlink",
        &[(
            "c.json",
            r#"{"symlinks": {"/opt": "/srv"}, "trees": {"/opt/app/www": {"source": "."}}}"#,
        )],
        "c.json",
        conflict("c.json", &["trees./opt/app/www lies under symlinks./opt"]),
    );
}

#[test]
fn conflict_error_carries_the_other_file() {
    let f = Fixture::new(&[
        ("c.json", r#"{"include": ["a.json", "b.json"]}"#),
        ("a.json", r#"{"symlinks": {"/l": "a"}}"#),
        ("b.json", r#"{"symlinks": {"/l": "b"}}"#),
    ]);
    let e = f.load("c.json").unwrap_err();
    assert_eq!(e.file, f.path("a.json"));
    assert_eq!(e.other_file, Some(f.path("b.json")));
}

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
