//! The README's tour is `scripts/demo` (its datasets step
//! `scripts/demo-datasets`, its last `scripts/demo-adopt`; the packages and
//! users steps, which need a Debian root, are here): run them against the binary under test, so the
//! documented example keeps working, and check that every console block of
//! README.md and docs/datasets.md is, whole, what the commands print.

use std::path::Path;
use std::process::Command;

use sysgen_tests::packages::{DebEnv, Pkg};
use sysgen_tests::{TestEnv, run_demo_script};

#[test]
fn the_readme_demo_runs_and_ends_on_the_rolled_back_generation() {
    let stdout = run_demo_script("demo");
    // After the change, the admin's own motd is back; after rollback, sysgen's.
    let after_change = stdout
        .find("the admin's own motd")
        .expect("restored motd shown");
    let after_rollback = stdout[after_change..]
        .find("Welcome to web1")
        .expect("rolled back motd shown");
    assert!(after_rollback > 0);
    assert!(
        stdout.contains("ok: the root matches generation 1"),
        "{stdout}"
    );
    assert!(stdout.contains("deleted generation 2"), "{stdout}");
    // The service step: enabled offline, runtime steps reported as skipped.
    assert!(
        stdout.contains("enable app.service: newly declared")
            && stdout.contains("skip start app.service")
            && stdout.contains("skipped 3 runtime steps"),
        "{stdout}"
    );
    assert!(stdout.contains("\napp.service\n"), "{stdout}");
    // The template step: the secret is rendered into a file, never printed.
    assert!(
        stdout.contains("inline template: var db_host changed")
            && !stdout.contains("correct horse"),
        "{stdout}"
    );
}

/// 2026-11-23 12:02:18 UTC, the date the README shows: the tours run with
/// the clock pinned (`SYSGEN_NOW`), so `list` prints the same every time.
const NOW: &str = "1795435338";

/// One command line of a console transcript and what it printed.
#[derive(Debug, Clone, PartialEq)]
struct Said {
    command: String,
    output: String,
}

impl std::fmt::Display for Said {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "$ {}", self.command)?;
        if !self.output.is_empty() {
            writeln!(f, "{}", self.output)?;
        }
        Ok(())
    }
}

/// Splits a transcript at its `$ ` lines. Blank lines that end an output
/// only separate commands, so they are dropped; text before the first
/// command is not part of any.
fn commands(text: &str) -> Vec<Said> {
    let mut out: Vec<Said> = Vec::new();
    for line in text.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            out.push(Said {
                command: command.to_owned(),
                output: String::new(),
            });
        } else if let Some(last) = out.last_mut() {
            last.output.push_str(line);
            last.output.push('\n');
        }
    }
    for s in &mut out {
        let kept = s.output.trim_end_matches('\n').len();
        s.output.truncate(kept);
        s.output = unsized_gc(&s.output);
    }
    out
}

/// `gc`'s bytes to free, left out of the comparison: in the packages tour
/// they were 1.1 KiB in one run and 1.2 KiB in the next (same objects, same
/// count; the cause is not yet found, see the session 9 closing note).
fn unsized_gc(output: &str) -> String {
    const AT: &str = "store objects (";
    match output.find(AT).map(|i| i + AT.len()) {
        Some(from) => match output[from..].find(')') {
            Some(len) => format!("{}…{}", &output[..from], &output[from + len..]),
            None => output.to_owned(),
        },
        None => output.to_owned(),
    }
}

/// Runs `scripts/NAME` with the clock pinned and returns its commands, the
/// scratch root (the only unstable text) written `$ROOT` as the docs do.
fn tour(name: &str) -> Vec<Said> {
    let scratch = tempfile::tempdir().expect("temp dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let out = Command::new("bash")
        .arg(&script)
        .env("SYSGEN", TestEnv::sysgen_bin())
        .env("TMPDIR", scratch.path())
        .env("SYSGEN_NOW", NOW)
        // Dates are local time: the README's are in UTC.
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("run scripts/{name}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "scripts/{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let root = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("scratch root: "))
        .unwrap_or_else(|| {
            panic!("scripts/{name} does not start with its scratch root:\n{stdout}")
        });
    // The closing line is a note to people, not a command's output.
    let body = stdout
        .rsplit_once("\ndemo done; ")
        .map_or(&*stdout, |(body, _)| body);
    commands(&body.replace(root, "$ROOT"))
}

/// The text of every ```console block of a Markdown file.
fn console_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut open: Option<String> = None;
    for line in markdown.lines() {
        match open.as_mut() {
            None if line.trim() == "```console" => open = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(open.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a ```console block is not closed");
    blocks
}

fn render(said: &[Said]) -> String {
    said.iter()
        .map(Said::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every console block of `doc` must be a run of consecutive commands of
/// one of the tours, each with exactly its output. On a mismatch, shows
/// the block next to the tour's commands that come closest.
fn check_blocks(doc: &str, tours: &[Vec<Said>]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let blocks = console_blocks(&text);
    assert!(!blocks.is_empty(), "{doc} has no console block");
    for block in blocks {
        let want = commands(&block);
        assert!(
            !want.is_empty(),
            "{doc}: a console block without a command:\n{block}"
        );
        // The closest run: the most leading commands equal (the first of
        // equals, so a block is shown against the earliest candidate).
        let mut best: Option<(usize, &[Said])> = None;
        for run in tours.iter().flat_map(|t| t.windows(want.len())) {
            let same = run.iter().zip(&want).take_while(|(a, b)| a == b).count();
            if run[0].command == want[0].command && best.is_none_or(|(most, _)| same > most) {
                best = Some((same, run));
            }
        }
        let (_, best) = best.unwrap_or_else(|| {
            panic!(
                "{doc}: no tour runs `{}`; every console block must come from a tour of this test:\n{block}",
                want[0].command
            )
        });
        assert_eq!(
            render(&want),
            render(best),
            "{doc}: a console block is not what the commands print (left: the doc, right: the tour)"
        );
    }
}

/// A tour on a copy of the cached Debian root (`$DEB` in the docs): its
/// commands run there, as typed, and are recorded with what they print.
struct DebTour {
    d: DebEnv,
    said: Vec<Said>,
}

impl DebTour {
    fn new() -> DebTour {
        DebTour {
            d: DebEnv::new(),
            said: Vec::new(),
        }
    }

    /// `sysgen --root $DEB ARGS`, run in the configuration's directory.
    fn sysgen(&mut self, args: &[&str]) {
        let mut cmd = Command::new(TestEnv::sysgen_bin());
        cmd.arg("--root").arg(self.d.env.root()).args(args);
        self.record(format!("sysgen --root $DEB {}", args.join(" ")), cmd);
    }

    /// A shell command line, shown as written; `$DEB` is the root.
    fn shell(&mut self, line: &str) {
        let mut cmd = Command::new("bash");
        cmd.args(["-c", line]).env("DEB", self.d.env.root());
        self.record(line.to_owned(), cmd);
    }

    fn record(&mut self, command: String, mut cmd: Command) {
        let out = cmd
            .current_dir(self.d.env.cfg())
            .env("SYSGEN_NOW", NOW)
            .env("TZ", "UTC")
            .output()
            .unwrap_or_else(|e| panic!("run {command}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{command} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The scratch root is the only unstable text: written `$DEB`.
        let root = self.d.env.root().display().to_string();
        self.said.push(Said {
            command,
            output: unsized_gc(&stdout.trim_end_matches('\n').replace(&root, "$DEB")),
        });
    }
}

/// The README's packages step, which needs apt: the cached Debian root
/// whose only apt source is a local repository of test packages with the
/// names, versions and dependency the README shows. nginx-common has a
/// conffile, and nginx keeps state in /var/lib/nginx (made by its
/// postinst, deleted by its postrm on purge, as Debian's do).
fn packages_tour() -> Vec<Said> {
    let mut t = DebTour::new();
    let d = &t.d;
    d.build(&Pkg::new("hello", "2.10-3"));
    d.build(&Pkg {
        depends: "nginx-common",
        files: &[("/usr/sbin/nginx", "#!/bin/sh\n")],
        postinst: Some("mkdir -p /var/lib/nginx/body"),
        postrm: Some(r#"if [ "$1" = purge ]; then rm -rf /var/lib/nginx; fi"#),
        ..Pkg::new("nginx", "1.22.1-9")
    });
    d.build(&Pkg {
        files: &[("/etc/nginx/nginx.conf", "worker_processes auto;\n")],
        conffiles: &["/etc/nginx/nginx.conf"],
        ..Pkg::new("nginx-common", "1.22.1-9")
    });
    d.publish();
    let config = |d: &DebEnv, apt: &[&str]| {
        d.env.config(
            "web.json",
            serde_json::json!({
                "files": { "/etc/motd": { "content": "Welcome to web1\n" } },
                "packages": { "apt": apt },
            }),
        );
    };
    config(&t.d, &["hello", "nginx"]);
    t.sysgen(&["switch", "web.json"]);
    t.shell("echo 'worker_connections 64;' >> $DEB/etc/nginx/nginx.conf");
    config(&t.d, &["hello"]);
    t.sysgen(&["switch", "web.json"]);
    t.shell("cat $DEB/etc/nginx/nginx.conf");
    t.shell("ls $DEB/var/lib/nginx");
    t.sysgen(&["gc", "--keep", "1", "--dry-run"]);
    t.sysgen(&["rollback"]);
    t.shell("cat $DEB/etc/nginx/nginx.conf");
    t.said
}

/// The README's users step, which needs the root's shadow tools: a group,
/// a user in it with a file of theirs, then the user leaving.
fn users_tour() -> Vec<Said> {
    let mut t = DebTour::new();
    t.d.env.write_cfg(
        "team.json",
        r#"{
  "groups": { "dev": {} },
  "users": { "alice": { "groups": ["dev"], "shell": "/bin/bash", "comment": "Alice" } },
  "files": { "/home/alice/.plan": { "content": "ship the tour\n", "owner": "alice", "group": "dev" } }
}
"#,
    );
    t.shell("cat team.json");
    t.sysgen(&["switch", "team.json", "--dry-run"]);
    t.sysgen(&["switch", "team.json"]);
    t.shell("grep alice $DEB/etc/passwd $DEB/etc/group");
    t.shell("chroot $DEB stat -c '%U:%G %a %n' /home/alice /home/alice/.plan");
    t.d.env.write_cfg("bare.json", "{ \"sysgen\": 1 }\n");
    t.sysgen(&["switch", "bare.json"]);
    t.shell("ls -A $DEB/home $DEB/home/.sysgen-homes/alice");
    t.sysgen(&["list"]);
    t.sysgen(&["gc", "--keep", "1", "--dry-run"]);
    t.said
}

#[test]
fn every_console_block_of_the_docs_is_what_the_tours_print() {
    let tours = [
        tour("demo"),
        tour("demo-datasets"),
        packages_tour(),
        users_tour(),
        tour("demo-adopt"),
    ];
    // After a change of output, the docs are brought up to date from what
    // the tours really print: SYSGEN_DEMO_TRANSCRIPTS=DIR writes each here.
    if let Some(dir) = std::env::var_os("SYSGEN_DEMO_TRANSCRIPTS") {
        for (name, said) in ["demo", "demo-datasets", "packages", "users", "demo-adopt"]
            .iter()
            .zip(&tours)
        {
            let path = Path::new(&dir).join(format!("{name}.txt"));
            std::fs::write(&path, render(said))
                .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        }
    }
    check_blocks("README.md", &tours);
    check_blocks("docs/datasets.md", &tours);
}

#[test]
fn a_transcript_splits_into_commands_and_their_output() {
    let said = commands("scratch root: /x\n\n$ a\none\n\ntwo\n\n$ b\n$ c\nthree\n");
    let want = [("a", "one\n\ntwo"), ("b", ""), ("c", "three")];
    assert_eq!(said.len(), want.len(), "{said:?}");
    for (s, (command, output)) in said.iter().zip(want) {
        assert_eq!((s.command.as_str(), s.output.as_str()), (command, output));
    }
    let blocks = console_blocks("x\n```console\n$ a\n```\n```sh\n$ b\n```\n");
    assert_eq!(blocks, ["$ a\n"]);
}
