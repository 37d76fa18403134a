//! The table of bad configurations `bad_input.rs` runs: each with the
//! strings its error must hold.

/// One bad configuration.
pub struct Case {
    pub name: &'static str,
    /// Files written under cfg/ (name, text); the first is the one run.
    pub files: &'static [(&'static str, &'static str)],
    /// Every string the error message must hold (file names, line:column,
    /// the declared path, a word saying what is wrong).
    pub want: &'static [&'static str],
}

pub const CASES: &[Case] = &[
    Case {
        name: "JSON syntax error",
        files: &[(
            "c.json",
            "{\n  \"files\": {\n    \"/etc/motd\": { \"content\": \"x\" },\n  }\n}\n",
        )],
        want: &["c.json:4:"],
    },
    Case {
        name: "TOML syntax error",
        files: &[(
            "c.toml",
            "[files.\"/etc/motd\"]\ncontent = \"x\"\nmode = \"0644\n",
        )],
        want: &["c.toml:3:"],
    },
    Case {
        name: "unknown top-level key",
        files: &[("c.json", "{\n  \"sysgen\": 1,\n  \"filez\": {}\n}\n")],
        want: &["c.json:3:", "filez"],
    },
    Case {
        name: "unknown top-level key (TOML)",
        files: &[("c.toml", "sysgen = 1\n\n[filez]\n")],
        want: &["c.toml:3:", "filez"],
    },
    Case {
        name: "unknown key in a file entry",
        files: &[(
            "c.json",
            "{\n \"files\": {\n  \"/etc/motd\": {\n   \"content\": \"x\",\n   \"colour\": \"red\"\n  }\n }\n}\n",
        )],
        want: &["c.json:5:", "colour"],
    },
    Case {
        name: "mode as a number",
        files: &[(
            "c.json",
            "{\n \"files\": {\n  \"/etc/motd\": {\n   \"content\": \"x\",\n   \"mode\": 644\n  }\n }\n}\n",
        )],
        want: &["c.json:5:"],
    },
    Case {
        name: "content as a number",
        files: &[(
            "c.json",
            "{\n \"files\": {\n  \"/etc/motd\": {\n   \"content\": 42\n  }\n }\n}\n",
        )],
        want: &["c.json:4:"],
    },
    Case {
        name: "mode as a number (TOML)",
        files: &[(
            "c.toml",
            "[files.\"/etc/motd\"]\ncontent = \"x\"\nmode = 644\n",
        )],
        want: &["c.toml:3:"],
    },
    Case {
        name: "format version 2",
        files: &[(
            "c.json",
            "{\n \"sysgen\": 2,\n \"files\": { \"/etc/motd\": { \"content\": \"x\" } }\n}\n",
        )],
        want: &["c.json", "version", "2"],
    },
    Case {
        name: "relative path",
        files: &[(
            "c.json",
            r#"{ "files": { "etc/motd": { "content": "x" } } }"#,
        )],
        want: &["c.json", "etc/motd"],
    },
    Case {
        name: "trailing slash",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/motd/": { "content": "x" } } }"#,
        )],
        want: &["c.json", "/etc/motd/"],
    },
    Case {
        name: "a . component",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/./motd": { "content": "x" } } }"#,
        )],
        want: &["c.json", "/etc/./motd"],
    },
    Case {
        name: "a .. component",
        files: &[("c.json", r#"{ "directories": { "/srv/../etc/app": {} } }"#)],
        want: &["c.json", "/srv/../etc/app"],
    },
    Case {
        name: "an empty component",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc//motd": { "content": "x" } } }"#,
        )],
        want: &["c.json", "/etc//motd"],
    },
    Case {
        name: "/ itself",
        files: &[(
            "c.json",
            r#"{ "directories": { "/": { "mode": "0755" } } }"#,
        )],
        want: &["c.json", "directories./"],
    },
    Case {
        name: "a path in a service's restart_on that is not normalized",
        files: &[(
            "c.json",
            r#"{ "services": { "nginx.service": { "restart_on": ["/etc/nginx/"] } } }"#,
        )],
        want: &["c.json", "/etc/nginx/"],
    },
    Case {
        name: "a path inside the state directory",
        files: &[(
            "c.json",
            r#"{ "files": { "/var/lib/sysgen/x": { "content": "x" } } }"#,
        )],
        want: &["c.json", "/var/lib/sysgen/x"],
    },
    Case {
        name: "the state directory itself",
        files: &[("c.json", r#"{ "directories": { "/var/lib/sysgen": {} } }"#)],
        want: &["c.json", "/var/lib/sysgen"],
    },
    Case {
        name: "a file above the state directory",
        files: &[(
            "c.json",
            r#"{ "files": { "/var/lib": { "content": "x" } } }"#,
        )],
        want: &["c.json", "/var/lib"],
    },
    Case {
        name: "the same path in two sections",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/x": { "content": "x" } }, "directories": { "/etc/x": {} } }"#,
        )],
        want: &["c.json", "/etc/x", "files", "directories"],
    },
    Case {
        name: "the same path in two sections of two files",
        files: &[
            (
                "c.json",
                r#"{ "include": ["roles/r.json"], "symlinks": { "/etc/x": "/y" } }"#,
            ),
            (
                "roles/r.json",
                r#"{ "files": { "/etc/x": { "content": "x" } } }"#,
            ),
        ],
        want: &["c.json", "r.json", "/etc/x"],
    },
    Case {
        name: "a path under a declared file",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/motd": { "content": "x" }, "/etc/motd/y": { "content": "y" } } }"#,
        )],
        want: &["c.json", "/etc/motd/y", "/etc/motd"],
    },
    Case {
        name: "a path under a declared symlink",
        files: &[(
            "c.json",
            r#"{ "symlinks": { "/etc/l": "/tmp" }, "directories": { "/etc/l/d": {} } }"#,
        )],
        want: &["c.json", "/etc/l/d", "/etc/l"],
    },
    Case {
        name: "a tree under a declared file",
        files: &[
            (
                "c.json",
                r#"{ "files": { "/srv": { "content": "x" } }, "trees": { "/srv/www": { "source": "site" } } }"#,
            ),
            ("site/index.html", "hi\n"),
        ],
        want: &["c.json", "/srv/www", "/srv"],
    },
    Case {
        name: "both content and source",
        files: &[
            (
                "c.json",
                r#"{ "files": { "/etc/motd": { "content": "x", "source": "motd" } } }"#,
            ),
            ("motd", "m\n"),
        ],
        want: &["c.json", "/etc/motd", "content", "source"],
    },
    Case {
        name: "neither content nor source",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/motd": { "mode": "0644" } } }"#,
        )],
        want: &["c.json", "/etc/motd", "content", "source"],
    },
    Case {
        name: "a missing source file",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/motd": { "source": "files/nope" } } }"#,
        )],
        want: &["c.json", "/etc/motd", "files/nope"],
    },
    Case {
        name: "a source that is a directory",
        files: &[
            (
                "c.json",
                r#"{ "files": { "/etc/motd": { "source": "files" } } }"#,
            ),
            ("files/x", "x\n"),
        ],
        want: &["c.json", "/etc/motd", "files"],
    },
    Case {
        name: "bad mode 0999",
        files: &[(
            "c.json",
            "{ \"files\": {\n  \"/etc/motd\": { \"content\": \"x\", \"mode\": \"0999\" } } }",
        )],
        want: &["c.json:2:", "0999"],
    },
    Case {
        name: "bad directory mode",
        files: &[(
            "c.json",
            "{ \"directories\": {\n  \"/srv/app\": { \"mode\": \"rwxr-xr-x\" } } }",
        )],
        want: &["c.json:2:", "rwxr-xr-x"],
    },
    Case {
        name: "an owner not in the root's /etc/passwd",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/motd": { "content": "x", "owner": "nosuchuser" } } }"#,
        )],
        want: &["c.json", "/etc/motd", "nosuchuser"],
    },
    Case {
        name: "a group not in the root's /etc/group",
        files: &[(
            "c.json",
            r#"{ "directories": { "/srv/app": { "group": "nosuchgroup" } } }"#,
        )],
        want: &["c.json", "/srv/app", "nosuchgroup"],
    },
    Case {
        name: "an include cycle",
        files: &[
            ("c.json", r#"{ "include": ["a.json"] }"#),
            (
                "a.json",
                r#"{ "include": ["b.json"], "files": { "/etc/a": { "content": "a" } } }"#,
            ),
            ("b.json", r#"{ "include": ["a.json"] }"#),
        ],
        want: &["a.json", "b.json", "cycle"],
    },
    Case {
        name: "a file including itself",
        files: &[("c.json", r#"{ "include": ["c.json"] }"#)],
        want: &["c.json", "cycle"],
    },
    Case {
        name: "a missing include",
        files: &[("c.json", r#"{ "include": ["roles/none.json"] }"#)],
        want: &["c.json", "roles/none.json"],
    },
    Case {
        name: "a syntax error in an included file",
        files: &[
            ("c.json", r#"{ "include": ["roles/r.json"] }"#),
            (
                "roles/r.json",
                "{\n  \"files\": {\n    \"/etc/x\": { \"content\": }\n  }\n}\n",
            ),
        ],
        want: &["roles/r.json:3:"],
    },
    Case {
        name: "two sibling includes declaring one file differently",
        files: &[
            (
                "c.json",
                r#"{ "include": ["roles/r1.json", "roles/r2.json"] }"#,
            ),
            (
                "roles/r1.json",
                r#"{ "files": { "/etc/motd": { "content": "one" } } }"#,
            ),
            (
                "roles/r2.json",
                r#"{ "files": { "/etc/motd": { "content": "two" } } }"#,
            ),
        ],
        want: &["r1.json", "r2.json", "/etc/motd"],
    },
    Case {
        name: "two sibling includes declaring one directory differently",
        files: &[
            ("c.json", r#"{ "include": ["r1.json", "r2.toml"] }"#),
            (
                "r1.json",
                r#"{ "directories": { "/srv/app": { "mode": "0750" } } }"#,
            ),
            ("r2.toml", "[directories.\"/srv/app\"]\nmode = \"0700\"\n"),
        ],
        want: &["r1.json", "r2.toml", "/srv/app"],
    },
    Case {
        name: "an unsupported extension",
        files: &[("c.yaml", "files:\n  /etc/motd:\n    content: x\n")],
        want: &["c.yaml", ".json"],
    },
    Case {
        name: "an include with an unsupported extension",
        files: &[
            ("c.json", r#"{ "include": ["r.yaml"] }"#),
            ("r.yaml", "files: {}\n"),
        ],
        want: &["c.json", "r.yaml"],
    },
    Case {
        name: "a missing tree source",
        files: &[(
            "c.json",
            r#"{ "trees": { "/srv/www": { "source": "site-missing" } } }"#,
        )],
        want: &["c.json", "/srv/www", "site-missing"],
    },
    Case {
        name: "a tree source that is a file",
        files: &[
            (
                "c.json",
                r#"{ "trees": { "/srv/www": { "source": "site" } } }"#,
            ),
            ("site", "not a dir\n"),
        ],
        want: &["c.json", "/srv/www", "site"],
    },
    Case {
        name: "packages declared on a root without apt",
        files: &[("c.json", r#"{ "packages": { "apt": ["nginx"] } }"#)],
        want: &["c.json", "packages.apt", "has no /usr/bin/apt-get"],
    },
    Case {
        name: "one zfs dataset at two paths",
        files: &[(
            "c.json",
            r#"{ "datasets": { "/a": { "type": "zfs", "name": "tank/a" }, "/b": { "type": "zfs", "name": "tank/a" } } }"#,
        )],
        want: &["c.json", "datasets./b", "tank/a", "also declared at /a"],
    },
    Case {
        name: "a unit name without a unit suffix",
        files: &[(
            "c.json",
            r#"{ "services": { "nginx": { "enable": true } } }"#,
        )],
        want: &["c.json", "services.nginx", "not a unit name", ".service"],
    },
    Case {
        name: "a unit name with two @",
        files: &[("c.json", r#"{ "services": { "a@b@c.service": {} } }"#)],
        want: &["c.json", "services.a@b@c.service", "one @"],
    },
    Case {
        name: "a check timeout without a check",
        files: &[(
            "c.json",
            r#"{ "services": { "a.service": { "check_timeout": 10 } } }"#,
        )],
        want: &["c.json", "services.a.service.check_timeout", "add check"],
    },
    Case {
        name: "a check timeout that is not a number",
        files: &[(
            "c.json",
            r#"{ "services": { "a.service": { "check": "true", "check_timeout": "10s" } } }"#,
        )],
        want: &["c.json:1:", "invalid type: string \"10s\""],
    },
    Case {
        name: "a bad package name",
        files: &[("c.json", r#"{ "packages": { "apt": ["Nginx"] } }"#)],
        want: &["c.json", "Nginx"],
    },
    // Issue 11, item 12: a control character would forge lines in the plan
    // ("remove file /etc/passwd") or reach the terminal as an escape.
    Case {
        name: "a newline in a declared path",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/x\nremove file /etc/passwd": { "content": "x" } } }"#,
        )],
        want: &["c.json", "files./etc/x\\nremove", "control character"],
    },
    Case {
        name: "an escape sequence in a declared path",
        files: &[(
            "c.json",
            r#"{ "directories": { "/srv/\u001b[31mred": {} } }"#,
        )],
        want: &[
            "c.json",
            "directories./srv/\\u{1b}[31mred",
            "control character",
        ],
    },
    Case {
        name: "a control character in a symlink target",
        files: &[("c.json", r#"{ "symlinks": { "/etc/l": "/x\ny" } }"#)],
        want: &["c.json", "symlinks./etc/l", "control character"],
    },
    // Issue 11, item 10: (uid_t)-1 is "unchanged" to chown, never an owner.
    Case {
        name: "owner 4294967295",
        files: &[(
            "c.json",
            r#"{ "files": { "/etc/o": { "content": "x", "owner": 4294967295 } } }"#,
        )],
        want: &["c.json:1:", "4294967295", "at most 4294967294"],
    },
    Case {
        name: "group \"4294967295\"",
        files: &[(
            "c.json",
            r#"{ "directories": { "/srv/o": { "group": "4294967295" } } }"#,
        )],
        want: &["c.json:1:", "at most 4294967294"],
    },
    // Issue 12: every error points at file:line:column, semantic ones too,
    // with the line and a caret, and "did you mean" for a near miss.
    Case {
        name: "a key written with a hyphen",
        files: &[(
            "c.json",
            "{\n  \"services\": {\n    \"a.service\": { \"restart-on\": [\"/etc/a\"] }\n  }\n}\n",
        )],
        want: &[
            "c.json:3:20: unknown field `restart-on`",
            "^^^^^^^^^^^^",
            "help: did you mean `restart_on`?",
        ],
    },
    Case {
        name: "a misspelt section (TOML)",
        files: &[("c.toml", "[service.\"a.service\"]\nenable = true\n")],
        want: &[
            "c.toml:1:2: unknown field `service`",
            "did you mean `services`?",
        ],
    },
    Case {
        name: "a misspelt unit suffix",
        files: &[("c.toml", "[services.\"nginx.servce\"]\nenable = true\n")],
        want: &[
            "c.toml:1:11: services.nginx.servce: not a unit name",
            "did you mean `nginx.service`?",
        ],
    },
    Case {
        name: "a misspelt dataset type",
        files: &[(
            "c.json",
            "{\n  \"datasets\": {\n    \"/srv/d\": { \"type\": \"brtfs\" }\n  }\n}\n",
        )],
        want: &[
            "c.json:3:25: unknown variant `brtfs`",
            "did you mean `btrfs`?",
        ],
    },
    Case {
        name: "a decimal mode in TOML",
        files: &[(
            "c.toml",
            "[files.\"/etc/motd\"]\ncontent = \"x\"\nmode = 644\n",
        )],
        want: &["c.toml:3:8: invalid mode 644", "0o1204", "0o644"],
    },
    Case {
        name: "a rule past syntax points at its key",
        files: &[(
            "c.json",
            "{\n  \"services\": {\n    \"a.service\": { \"check_timeout\": 5 }\n  }\n}\n",
        )],
        want: &[
            "c.json:3:20: services.a.service.check_timeout: there is no check to time",
            "3 |     \"a.service\": { \"check_timeout\": 5 }",
            "^^^^^^^^^^^^^^^",
            "help: add check or remove check_timeout",
        ],
    },
    Case {
        name: "a path rule points at the path (TOML)",
        files: &[("c.toml", "[directories.\"/srv/app/\"]\nmode = \"0750\"\n")],
        want: &["c.toml:1:14: directories./srv/app/: path must not end with /"],
    },
    Case {
        name: "an owner the root does not have points at its entry",
        files: &[(
            "c.json",
            "{\n  \"files\": {\n    \"/etc/o\": { \"content\": \"x\", \"owner\": \"nobody-here\" }\n  }\n}\n",
        )],
        want: &[
            "c.json: files./etc/o: user \"nobody-here\" does not exist",
            "c.json:3:33\n",
            "help: create it first or give a number",
        ],
    },
];
