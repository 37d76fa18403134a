//! sysgen in a real terminal: `script` (util-linux) runs it on a pseudo
//! terminal and records every byte it writes there. On a terminal the
//! markers are coloured and long jobs draw a progress bar with a rate and
//! an ETA (build, switch, verify, gc); `NO_COLOR` and `--color never` turn colour off (the bar stays,
//! plain); through a pipe there is neither colour nor bar unless `--color
//! always` asks for colour.

use std::process::Command;

use serde_json::json;
use sysgen_tests::{TestEnv, cannot_run, s};

/// Runs `sysgen --root ROOT ARGS` on a pseudo terminal with `vars` set;
/// returns what it wrote there (stdout and stderr together). `None`: no
/// `script` on this machine.
fn on_terminal(env: &TestEnv, args: &[&str], vars: &[(&str, &str)]) -> Option<String> {
    let quote = |a: &str| format!("'{}'", a.replace('\'', r"'\''"));
    let bin = TestEnv::sysgen_bin();
    let mut line = vec![quote(s(&bin)), "--root".into(), quote(s(&env.root()))];
    line.extend(args.iter().map(|a| quote(a)));
    let mut c = Command::new("script");
    c.args(["-qec", &line.join(" "), "/dev/null"])
        .current_dir(env.cfg())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm-256color")
        .env("COLUMNS", "120");
    for (k, v) in vars {
        c.env(k, v);
    }
    let out = match c.output() {
        Ok(o) => o,
        Err(e) => {
            cannot_run(
                "terminal",
                &format!("`script` (util-linux) does not run: {e}"),
            );
            return None;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Every SGR (colour or style) escape in `s`: `ESC [ digits ; … m`.
fn colours(s: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("\x1b[") {
        let tail = &rest[i + 2..];
        let end = tail
            .find(|c: char| !(c.is_ascii_digit() || c == ';'))
            .unwrap_or(tail.len());
        if tail[end..].starts_with('m') {
            found.push(&rest[i..i + 2 + end + 1]);
        }
        rest = &rest[i + 2..];
    }
    found
}

fn setup() -> TestEnv {
    let env = TestEnv::new();
    let one = env.config(
        "one.json",
        json!({ "files": { "/etc/a": { "content": "a\n" }, "/etc/b": { "content": "b\n" } } }),
    );
    env.config(
        "two.json",
        json!({ "files": { "/etc/a": { "content": "A\n" }, "/etc/c": { "content": "c\n" } } }),
    );
    env.switch(&one);
    env
}

#[test]
fn markers_are_coloured_on_a_terminal_and_never_under_no_color() {
    let env = setup();
    let Some(tty) = on_terminal(&env, &["diff", "two.json"], &[]) else {
        return;
    };
    // Green for what comes, red for what goes, yellow for what changes.
    assert!(tty.contains("\x1b[32m+ /etc/c"), "{tty:?}");
    assert!(tty.contains("\x1b[31m- /etc/b"), "{tty:?}");
    assert!(tty.contains("\x1b[33m~ /etc/a"), "{tty:?}");
    for off in [&[("NO_COLOR", "1")][..], &[]] {
        let args: &[&str] = if off.is_empty() {
            &["--color", "never", "diff", "two.json"]
        } else {
            &["diff", "two.json"]
        };
        let plain = on_terminal(&env, args, off).unwrap_or_default();
        assert!(colours(&plain).is_empty(), "{off:?}: {plain:?}");
        assert!(plain.contains("+ /etc/c  file (0644, 2 B)"), "{plain:?}");
    }
    // Through a pipe: plain, unless asked.
    let two = env.cfg().join("two.json");
    let piped = env.run(&["diff", s(&two)]);
    assert!(colours(&piped.stdout).is_empty(), "{:?}", piped.stdout);
    let asked = env.run(&["--color", "always", "diff", s(&two)]);
    assert!(
        asked.stdout.contains("\x1b[32m+ /etc/c"),
        "{:?}",
        asked.stdout
    );
}

#[test]
fn long_jobs_draw_a_progress_bar_with_rate_and_eta_on_a_terminal_only() {
    let env = setup();
    for i in 0..2500 {
        env.write_cfg(&format!("big/d{}/f{i}", i % 10), &format!("{i}\n"));
    }
    env.config(
        "big.json",
        json!({ "trees": { "/srv/big": { "source": "big" } } }),
    );
    let Some(build) = on_terminal(&env, &["build", "big.json"], &[]) else {
        return;
    };
    // `done/total`, the total 2,000 or more: a build learns its total as
    // it lists directories, so its bar may be drawn before it reaches 2500.
    let counted = |l: &str| {
        l.split(' ').any(|w| {
            w.split_once('/').is_some_and(|(done, total)| {
                done.parse::<u64>().is_ok() && total.parse::<u64>().is_ok_and(|t| t >= 2000)
            })
        })
    };
    let bar = |out: &str, what: &str| {
        out.lines()
            .flat_map(|l| l.split('\r'))
            .any(|l| l.contains(what) && counted(l) && l.contains("/s") && l.contains("ETA"))
    };
    assert!(bar(&build, "hashing"), "no hashing bar in {build:?}");
    assert!(
        !colours(&build).is_empty(),
        "the bar is not coloured: {build:?}"
    );
    let plain =
        on_terminal(&env, &["switch", "big.json"], &[("NO_COLOR", "1")]).unwrap_or_default();
    assert!(bar(&plain, "applying"), "no applying bar in {plain:?}");
    assert!(
        colours(&plain).is_empty(),
        "colour under NO_COLOR: {plain:?}"
    );
    // Through a pipe: no bar at all.
    let v = env.run(&["verify"]).ok();
    assert!(v.stderr.is_empty(), "{:?}", v.stderr);
    let on_tty = on_terminal(&env, &["verify"], &[]).unwrap_or_default();
    assert!(bar(&on_tty, "verifying"), "no verifying bar in {on_tty:?}");
    let gc = on_terminal(&env, &["gc", "--dry-run"], &[]).unwrap_or_default();
    assert!(bar(&gc, "scanning store"), "no gc bar in {gc:?}");
}
