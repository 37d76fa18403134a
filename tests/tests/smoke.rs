//! The shortest end-to-end path: switch, change, rollback, on a real temp root.

use serde_json::json;
use sysgen_tests::{TestEnv, file_line, tree_with};

#[test]
fn switch_change_rollback_restores_the_whole_tree() {
    let env = TestEnv::new();
    // The parents of the state directory (/var/lib/sysgen, itself left out
    // of the tree), made by the first command that opens it.
    let before = tree_with(&env.tree(), &["/var dir 0755 0:0", "/var/lib dir 0755 0:0"]);
    let gen1 = tree_with(&before, &[&file_line("/etc/motd", 0o644, "0:0", b"one\n")]);
    let gen2 = tree_with(&before, &[&file_line("/etc/issue", 0o644, "0:0", b"two\n")]);

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
