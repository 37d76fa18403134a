//! The shortest end-to-end path: switch, change, rollback, on a real temp root.

use serde_json::json;
use sysgen_tests::TestEnv;

#[test]
fn switch_change_rollback_restores_the_whole_tree() {
    let env = TestEnv::new();
    let before = env.tree();
    let c1 = env.config(
        "c1.json",
        json!({ "files": { "/etc/motd": { "content": "one\n" } } }),
    );
    env.run(&["switch", c1.to_str().unwrap()]).ok();
    let gen1 = env.tree();
    assert!(gen1.contains("/etc/motd file 0644"), "{gen1}");
    let c2 = env.config(
        "c2.json",
        json!({ "files": { "/etc/issue": { "content": "two\n" } } }),
    );
    env.run(&["switch", c2.to_str().unwrap()]).ok();
    assert!(!env.at("/etc/motd").exists());
    env.run(&["rollback"]).ok();
    assert_eq!(env.tree(), gen1);
    env.run(&["rollback"]).ok();
    env.run(&["rollback"]).ok();
    assert_ne!(env.tree(), before);
}
