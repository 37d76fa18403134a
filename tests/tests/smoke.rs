//! The shortest end-to-end path: switch, change, rollback, on a real temp root.

use serde_json::json;
use sysgen_tests::TestEnv;

/// The tree `base` plus `extra` lines of `dump_tree`, in its order (by path).
fn with(base: &str, extra: &[&str]) -> String {
    let mut lines: Vec<&str> = base.lines().chain(extra.iter().copied()).collect();
    lines.sort_unstable_by_key(|l| l.split(' ').next().unwrap_or_default());
    lines.join("\n")
}

#[test]
fn switch_change_rollback_restores_the_whole_tree() {
    let env = TestEnv::new();
    let before = env.tree();
    // The parents of the state directory (/var/lib/sysgen, itself left out
    // of the tree), made by the first command that opens it.
    let before = with(&before, &["/var dir 0755 0:0", "/var/lib dir 0755 0:0"]);
    let motd = format!(
        "/etc/motd file 0644 0:0 {}",
        blake3::hash(b"one\n").to_hex()
    );
    let issue = format!(
        "/etc/issue file 0644 0:0 {}",
        blake3::hash(b"two\n").to_hex()
    );
    let gen1 = with(&before, &[&motd]);
    let gen2 = with(&before, &[&issue]);

    let c1 = env.config(
        "c1.json",
        json!({ "files": { "/etc/motd": { "content": "one\n" } } }),
    );
    env.switch(&c1);
    assert_eq!(env.tree(), gen1, "generation 1");

    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/issue": { "content": "two\n" } } }),
    );
    env.switch(&c2);
    assert_eq!(env.tree(), gen2, "generation 2: /etc/motd left with c1");

    // Rollback goes to the generation active before: back and forth.
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), gen1, "first rollback: generation 1");
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), gen2, "second rollback: generation 2");
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), gen1, "third rollback: generation 1");
}
