//! Packaging like a Debian tool: completions that a real bash completes
//! with, man pages that man(1) renders, `--help` with examples and the
//! global options under their own heading, and the `.deb` built by
//! `scripts/build-deb` installed into a scratch Debian root, where the
//! binary runs and `systemctl --root` enables the verify timer.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use sysgen_tests::packages::DebEnv;
use sysgen_tests::{Run, TestEnv, cannot_run, s};

/// The commands this test knows to have examples (others may be added
/// by other work; each new one should bring its own).
const COMMANDS: [&str; 16] = [
    "build",
    "switch",
    "rollback",
    "diff",
    "list",
    "status",
    "verify",
    "gc",
    "pin",
    "unpin",
    "recover",
    "schema",
    "completions",
    "man",
    "init",
    "adopt",
];

fn sysgen(args: &[&str]) -> Run {
    Run::from(
        Command::new(TestEnv::sysgen_bin())
            .args(args)
            .output()
            .expect("run sysgen"),
    )
}

fn run(cmd: &mut Command) -> Run {
    Run::from(
        cmd.output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}")),
    )
}

#[test]
fn completions_complete_commands_and_options_in_a_real_bash() {
    let script = sysgen(&["completions", "bash"]).ok().stdout;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sysgen.bash");
    fs::write(&file, &script).expect("write the script");
    // What bash offers after `sysgen sw` and after `sysgen adopt --`.
    // As bash calls a completion function: the words so far, the one
    // being completed and the one before it.
    let ask = |words: &str| {
        let w: Vec<&str> = words.split(' ').collect();
        let (cur, prev) = (w[w.len() - 1], w[w.len() - 2]);
        run(Command::new("bash").arg("-c").arg(format!(
            "source {}; COMP_WORDS=({words}); COMP_CWORD={}; COMP_LINE='{words}'; \
             COMP_POINT=${{#COMP_LINE}}; _sysgen sysgen {cur} {prev}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            s(&file),
            w.len() - 1
        )))
        .ok()
        .stdout
    };
    assert_eq!(ask("sysgen sw").trim(), "switch");
    let adopt: Vec<String> = ask("sysgen adopt --").lines().map(str::to_owned).collect();
    for opt in ["--into", "--packages", "--units", "--root", "--json"] {
        assert!(adopt.iter().any(|o| o == opt), "{opt} in {adopt:?}");
    }
    // The shell is one of a fixed list: another is a usage error.
    let bad = sysgen(&["completions", "tcsh"]).expect(2);
    assert!(bad.stderr.contains("bash"), "{}", bad.stderr);
}

#[test]
fn completions_for_every_shell_name_every_command_and_json_holds_the_same_script() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = sysgen(&["completions", shell]).ok().stdout;
        for cmd in COMMANDS {
            assert!(script.contains(cmd), "{shell} lacks {cmd}");
        }
        let doc = sysgen(&["--json", "completions", shell]).ok().json();
        assert_eq!(doc["shell"], shell);
        assert_eq!(doc["script"].as_str(), Some(script.as_str()), "{shell}");
    }
    // -q silences messages, not the output asked for.
    let quiet = sysgen(&["-q", "completions", "bash"]).ok().stdout;
    assert_eq!(quiet, sysgen(&["completions", "bash"]).ok().stdout);
}

#[test]
fn man_pages_one_per_command_render_with_their_examples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("man8");
    let doc = sysgen(&["--json", "man", s(&out)]).ok().json();
    let mut written: Vec<String> = fs::read_dir(&out)
        .expect("man dir")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    written.sort();
    let mut listed: Vec<String> = doc["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| p.as_str().expect("name").to_owned())
        .collect();
    listed.sort();
    assert_eq!(written, listed);
    for cmd in COMMANDS {
        assert!(written.contains(&format!("sysgen-{cmd}.8")), "{written:?}");
    }
    assert!(written.contains(&"sysgen.8".to_owned()));
    assert!(!written.iter().any(|p| p.contains("help")), "{written:?}");

    let page = |name: &str| {
        run(Command::new("man")
            .arg("-l")
            .arg(out.join(name))
            .env("MANWIDTH", "120")
            .env("MAN_KEEP_FORMATTING", "0")
            .env("LC_ALL", "C.UTF-8"))
        .ok()
        .stdout
        .chars()
        .fold(String::new(), unstrike)
    };
    let switch = page("sysgen-switch.8");
    for want in [
        "sysgen-switch - Build if needed",
        "GLOBAL OPTIONS",
        "--dry-run",
        "EXAMPLES",
        "sysgen switch web.json --dry-run     print every step the switch would take; change nothing",
        "SEE ALSO",
        "sysgen(8)",
    ] {
        assert!(switch.contains(want), "{want:?} in:\n{switch}");
    }
    let top = page("sysgen.8");
    for want in ["SUBCOMMANDS", "sysgen-adopt(8)", "sysgen init", "EXAMPLES"] {
        assert!(top.contains(want), "{want:?} in:\n{top}");
    }
}

/// Drops grotty's overstrike (bold as `X\bX`, underline as `_\bX`): man
/// writes it into a pipe too.
fn unstrike(mut text: String, c: char) -> String {
    if text.ends_with('\u{8}') {
        text.pop();
        text.pop();
    }
    text.push(c);
    text
}

#[test]
fn help_shows_examples_and_global_options_under_their_own_heading() {
    for cmd in std::iter::once(None).chain(COMMANDS.iter().map(Some)) {
        let args: Vec<&str> = cmd.into_iter().copied().chain(["--help"]).collect();
        let help = sysgen(&args).ok().stdout;
        let at = |what: &str| {
            help.find(what)
                .unwrap_or_else(|| panic!("{cmd:?}: no {what:?} in:\n{help}"))
        };
        let global = at("\nGlobal options:\n");
        let examples = at("\nExamples:\n  sysgen ");
        assert!(global < examples, "{cmd:?}:\n{help}");
        let (local, globals) = (&help[..global], &help[global..examples]);
        // The global options are listed under their heading, and only there.
        for opt in [
            "--root <DIR>",
            "--state-dir <DIR>",
            "--json",
            "--verbose",
            "--quiet",
            "--btrfs <PATH>",
            "--zfs <PATH>",
        ] {
            assert!(
                globals.contains(opt),
                "{cmd:?}: {opt} not under its heading:\n{help}"
            );
            assert!(
                !local.contains(opt),
                "{cmd:?}: {opt} among the command's own:\n{help}"
            );
        }
    }
}

/// The pages `sysgen man` writes (one per command, whatever the commands).
fn man_pages() -> Vec<String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let doc = sysgen(&["--json", "man", s(dir.path())]).ok().json();
    doc["pages"]
        .as_array()
        .expect("pages")
        .iter()
        .map(|p| p.as_str().expect("a name").to_owned())
        .collect()
}

/// `scripts/build-deb`: the release build, its pages and completions, and
/// `cargo deb`. Returns the package, or `None` when cargo-deb is missing.
fn build_deb() -> Option<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if run(Command::new("cargo").args(["deb", "--version"])).code != Some(0) {
        cannot_run(
            "the .deb test",
            "cargo-deb is missing; scripts/test-deps installs it",
        );
        return None;
    }
    let built = run(&mut Command::new(repo.join("scripts/build-deb"))).ok();
    let deb = PathBuf::from(
        built
            .stdout
            .lines()
            .rev()
            .find(|l| l.trim_end().ends_with(".deb"))
            .unwrap_or_else(|| panic!("build-deb named no .deb:\n{}", built.stdout))
            .trim(),
    );
    assert!(deb.is_file(), "{}", deb.display());
    Some(deb)
}

#[test]
fn the_deb_installs_into_a_debian_root_runs_and_its_timer_enables() {
    let Some(deb) = build_deb() else { return };
    let deb_env = DebEnv::new();
    let env = &deb_env.env;
    let before = deb_env.tree();
    fs::copy(&deb, env.at("/tmp/sysgen.deb")).expect("copy the .deb into the root");
    deb_env.chroot(&["dpkg", "-i", "/tmp/sysgen.deb"]);

    // What the package holds, exactly.
    let mut files: Vec<String> = deb_env
        .chroot(&["dpkg-query", "-L", "sysgen"])
        .lines()
        .map(str::to_owned)
        .filter(|p| env.at(p).is_file())
        .collect();
    files.sort();
    let mut want: Vec<String> = [
        "/usr/bin/sysgen",
        "/lib/systemd/system/sysgen-verify.service",
        "/lib/systemd/system/sysgen-verify.timer",
        "/lib/systemd/system/sysgen-confirm-check.service",
        "/lib/systemd/system/sysgen-pull.service",
        "/lib/systemd/system/sysgen-pull.timer",
        "/usr/share/bash-completion/completions/sysgen",
        "/usr/share/zsh/vendor-completions/_sysgen",
        "/usr/share/fish/vendor_completions.d/sysgen.fish",
        "/usr/share/doc/sysgen/README.md",
        "/usr/share/doc/sysgen/CHANGELOG.md",
        "/usr/share/doc/sysgen/copyright",
    ]
    .iter()
    .map(|p| p.to_string())
    .chain(
        man_pages()
            .iter()
            .map(|p| format!("/usr/share/man/man8/{p}.gz")),
    )
    .collect();
    want.sort();
    assert_eq!(files, want);

    // The installed binary runs in the root, and its completions are the
    // ones the package ships.
    let version = deb_env.chroot(&["sysgen", "--version"]);
    assert_eq!(
        version.trim(),
        format!("sysgen {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        deb_env.chroot(&["sysgen", "completions", "bash"]),
        fs::read_to_string(env.at("/usr/share/bash-completion/completions/sysgen"))
            .expect("completions")
    );
    let unit =
        fs::read_to_string(env.at("/lib/systemd/system/sysgen-verify.service")).expect("service");
    assert!(
        unit.contains("\nExecStart=/usr/bin/sysgen verify\n"),
        "{unit}"
    );

    // Not enabled by the package; the admin turns it on.
    let systemctl = |args: &[&str]| {
        run(Command::new("systemctl")
            .arg(format!("--root={}", s(&env.root())))
            .args(args))
    };
    assert_eq!(
        systemctl(&["is-enabled", "sysgen-verify.timer"])
            .stdout
            .trim(),
        "disabled"
    );
    systemctl(&["enable", "sysgen-verify.timer"]).ok();
    assert_eq!(
        systemctl(&["is-enabled", "sysgen-verify.timer"])
            .ok()
            .stdout
            .trim(),
        "enabled"
    );
    assert_eq!(
        fs::read_link(env.at("/etc/systemd/system/timers.target.wants/sysgen-verify.timer"))
            .expect("the timer's wants link"),
        Path::new("/lib/systemd/system/sysgen-verify.timer")
    );
    systemctl(&["disable", "sysgen-verify.timer"]).ok();

    // Purged, it leaves the root as it found it.
    deb_env.chroot(&["dpkg", "--purge", "sysgen"]);
    fs::remove_file(env.at("/tmp/sysgen.deb")).expect("rm the .deb");
    // systemctl enable made these directories for the link; disable leaves them.
    for d in [
        "/etc/systemd/system/timers.target.wants",
        "/etc/systemd/system",
        "/etc/systemd",
    ] {
        if env.at(d).is_dir() && !before.contains(&format!("\n{d} dir")) {
            fs::remove_dir(env.at(d)).expect("rm the directory systemctl made");
        }
    }
    assert_eq!(deb_env.tree(), before);

    // Installed again, the packaged binary manages the root it runs on:
    // the first steps of the README, inside the Debian root.
    fs::copy(&deb, env.at("/tmp/sysgen.deb")).expect("copy the .deb into the root");
    deb_env.chroot(&["dpkg", "-i", "/tmp/sysgen.deb"]);
    deb_env.chroot(&["sysgen", "init", "/root/host.toml"]);
    let switched = deb_env.chroot(&["sysgen", "switch", "/root/host.toml"]);
    assert!(switched.starts_with("generation 1 ("), "{switched}");
    assert!(deb_env.chroot(&["sysgen", "verify"]).starts_with("ok: "));
    assert!(env.at("/etc/sysgen-example/app.conf").is_file());
}
