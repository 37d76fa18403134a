//! apt's own output under `-v`: each line of the transaction (unpacking,
//! setting up, removing) shown as apt prints it, under the step; without
//! `-v` and with `--json` none of it. The real apt and dpkg of a scratch
//! Debian root (`sysgen_tests::packages`), offline.

use serde_json::json;
use sysgen_tests::packages::{DebEnv, Pkg};

#[test]
fn apt_output_is_shown_under_verbose_only() {
    let d = DebEnv::new();
    d.build(&Pkg {
        files: &[("/usr/share/sg-shown/s.txt", "shown\n")],
        ..Pkg::new("sg-shown", "1.0")
    });
    d.publish();
    let cfg = |name: &str, apt: &[&str]| {
        d.env
            .config(name, json!({ "packages": { "apt": apt }, "files": { "/etc/motd": { "content": "hi\n" } } }))
            .display()
            .to_string()
    };
    let with = cfg("with.json", &["sg-shown"]);
    let without = cfg("without.json", &[]);
    let v = d.env.run(&["-v", "switch", &with]).ok().stdout;
    let lines: Vec<&str> = v.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.starts_with("    ") && l.contains(needle))
            .unwrap_or_else(|| panic!("no apt line with {needle:?} in:\n{v}"))
    };
    let (unpack, setup) = (at("Unpacking sg-shown"), at("Setting up sg-shown"));
    let done = lines
        .iter()
        .position(|l| l.contains("is active"))
        .expect("summary");
    assert!(unpack < setup && setup < done, "{v}");
    let quiet = d.env.run(&["switch", &without]).ok().stdout;
    assert!(!quiet.contains("Removing sg-shown"), "{quiet}");
    let j = d.env.run(&["-v", "--json", "switch", &with]).ok();
    assert!(!j.stdout.contains("Unpacking"), "{}", j.stdout);
    j.json();
    let v = d.env.run(&["-v", "switch", &without]).ok().stdout;
    assert!(v.contains("Removing sg-shown"), "{v}");
}
