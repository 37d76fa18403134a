//! Templates (`files.<path>.template`) with `vars`, host facts and
//! `secrets` (issue #13): each variable-override rule, host facts read from
//! a real Debian root, strict undefined errors with file, line and column,
//! `diff` naming the template and what changed, and a secret that never
//! shows in any output or any world-readable file.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a failed test with its message"
)]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::json;
use sysgen_tests::packages::DebEnv;
use sysgen_tests::{Run, TestEnv, entries_under, s, stored_frame};

/// The rendered file of `path` on the root.
fn rendered(env: &TestEnv, path: &str) -> String {
    fs::read_to_string(env.at(path)).unwrap()
}

fn id_of(r: &Run) -> String {
    r.json()["id"].as_str().unwrap().to_owned()
}

/// The id `build` gives `cfg`.
fn build_id(env: &TestEnv, cfg: &Path) -> String {
    id_of(&env.run(&["--json", "build", s(cfg)]).ok())
}

/// No generation was built: the state directory is absent, or lists none.
#[track_caller]
fn no_generation(env: &TestEnv) {
    if env.state().exists() {
        let l = env.run(&["--json", "list"]).json();
        assert_eq!(l["generations"], json!([]), "{l}");
    }
}

// ---- variables: nearest wins

/// top.json includes roles/web.json and roles/db.json, which both include
/// roles/base.toml (a diamond). `port`: base 80, web 8080 (web overrides
/// base), `name`: base, overridden by top two levels up; `only_base`:
/// declared in base alone; `shared`: declared equal by both siblings.
fn override_world(env: &TestEnv) -> PathBuf {
    env.write_cfg(
        "roles/app.conf.j2",
        "port={{ port }}\nname={{ name }}\nbase={{ only_base | tojson }}\nshared={{ shared }}\nlist={{ list | join(',') }}\n",
    );
    // TOML and JSON share one data model: variables too.
    env.write_cfg(
        "roles/base.toml",
        "[vars]\nport = 80\nname = \"base\"\nonly_base = true\nlist = [1, 2]\n",
    );
    env.config(
        "roles/web.json",
        json!({"include": ["base.toml"], "vars": {"port": 8080, "shared": "same"},
               "files": {"/etc/app.conf": {"source": "app.conf.j2", "template": true}}}),
    );
    env.config(
        "roles/db.json",
        json!({"include": ["base.toml"], "vars": {"shared": "same"}}),
    );
    env.config(
        "top.json",
        json!({"include": ["roles/web.json", "roles/db.json"], "vars": {"name": "top"}}),
    )
}

#[test]
fn the_nearest_declaration_of_a_variable_wins() {
    let env = TestEnv::new();
    let top = override_world(&env);
    env.switch(&top);
    assert_eq!(
        rendered(&env, "/etc/app.conf"),
        "port=8080\nname=top\nbase=true\nshared=same\nlist=1,2\n",
        "web overrides base, top overrides base through two levels, a diamond counts once, equal siblings agree"
    );
    // The including file alone decides: without top's override, base's name.
    let web = env.cfg().join("roles/web.json");
    env.switch(&web);
    assert_eq!(
        rendered(&env, "/etc/app.conf"),
        "port=8080\nname=base\nbase=true\nshared=same\nlist=1,2\n"
    );
}

#[test]
fn siblings_that_disagree_on_a_variable_are_refused_until_a_parent_decides() {
    let env = TestEnv::new();
    let top = override_world(&env);
    env.config(
        "roles/db.json",
        json!({"include": ["base.toml"], "vars": {"shared": "other"}}),
    );
    let before = env.tree();
    let r = env.run(&["build", s(&top)]).expect(2);
    for want in [
        "vars.shared",
        "web.json",
        "db.json",
        "neither file includes the other",
    ] {
        assert!(
            r.stderr.contains(want),
            "{want} missing from:\n{}",
            r.stderr
        );
    }
    assert_eq!(env.tree(), before, "a refused build changes nothing");
    // The file that includes both settles it.
    env.config(
        "top.json",
        json!({"include": ["roles/web.json", "roles/db.json"], "vars": {"name": "top", "shared": "top"}}),
    );
    env.switch(&top);
    assert!(rendered(&env, "/etc/app.conf").contains("shared=top\n"));
}

#[test]
fn bad_variable_and_secret_declarations_are_refused_with_their_file() {
    let env = TestEnv::new();
    let cases = [
        (
            json!({"vars": {"host": 1}}),
            "vars.host: \"host\" is reserved",
        ),
        (json!({"vars": {"a-b": 1}}), "vars.a-b: invalid name"),
        (
            json!({"secrets": {"db": {"file": "db.secret"}}}),
            "secrets.db.file: \"db.secret\" is relative",
        ),
        (
            json!({"secrets": {"db": {}}}),
            "secrets.db: neither file nor command is set",
        ),
        (
            json!({"secrets": {"db": {"value": "x"}}}),
            "unknown field `value`",
        ),
        (
            json!({"files": {"/a": {"url": "https://example.org/a", "content": "x", "sha256": "0".repeat(64)}}}),
            "files./a: url is set with content",
        ),
        (
            json!({"files": {"/a": {"url": "https://example.org/a"}}}),
            "a download needs its digest",
        ),
        (
            json!({"files": {"/a": {"url": "ftp://example.org/a", "sha256": "0".repeat(64)}}}),
            "is not an http:// or https:// URL",
        ),
        (
            json!({"files": {"/a": {"url": "https://example.org/a", "sha256": "abc"}}}),
            "files./a.sha256: \"abc\" is not 64 hex digits",
        ),
        (
            json!({"files": {"/a": {"content": "x", "blake3": "0".repeat(64)}}}),
            "sha256 and blake3 check a download; add a url",
        ),
    ];
    for (v, want) in cases {
        let cfg = env.config("bad.json", v);
        let r = env.run(&["build", s(&cfg)]).expect(2);
        assert!(
            // The snippet puts what is wrong first and what to do after
            // `help:`: each part is there.
            r.stderr.contains("bad.json") && want.split("; ").all(|w| r.stderr.contains(w)),
            "{want:?} missing from:\n{}",
            r.stderr
        );
    }
    assert!(!env.state().exists(), "nothing was built");
}

// ---- generation ids and diff

#[test]
fn a_changed_variable_changes_the_generation_and_diff_names_the_template() {
    let env = TestEnv::new();
    env.write_cfg("app.conf.j2", "listen {{ port }}\n");
    let cfg = |port: u32, unused: &str| {
        env.config(
            "c.json",
            json!({"vars": {"port": port, "unused": unused},
                   "files": {"/etc/app.conf": {"source": "app.conf.j2", "template": true},
                             "/etc/motd": {"content": "hi {{ unused }}", "template": false}}}),
        )
    };
    let c = cfg(80, "a");
    let first = build_id(&env, &c);
    env.switch(&c);
    cfg(80, "b");
    assert_eq!(
        build_id(&env, &c),
        first,
        "a variable no template reads does not change the generation"
    );
    cfg(81, "a");
    assert_ne!(build_id(&env, &c), first);
    let d = env.run(&["diff", s(&c)]).ok();
    assert_eq!(
        d.stdout.trim_end(),
        "~ /etc/app.conf  content (template app.conf.j2: var port changed)"
    );
    let j = env.run(&["--json", "diff", s(&c)]).ok().json();
    assert_eq!(
        j["changes"][0]["template"],
        "template app.conf.j2: var port changed"
    );
    // A change of the template's own text says so.
    env.write_cfg("app.conf.j2", "port {{ port }}\n");
    cfg(80, "a");
    let d = env.run(&["diff", s(&c)]).ok();
    assert_eq!(
        d.stdout.trim_end(),
        "~ /etc/app.conf  content (template app.conf.j2: text changed)"
    );
}

// ---- host facts

#[test]
fn host_facts_come_from_the_root() {
    let deb = DebEnv::new();
    let env = &deb.env;
    let tmpl = "{{ host.name }} {{ host.release }} {{ host.codename }} {{ host.arch }}\n";
    let c = env.config(
        "c.json",
        json!({"files": {"/etc/facts": {"content": tmpl, "template": true}}}),
    );
    env.write_root("/etc/hostname", "deb-test\n");
    env.switch(&c);
    let release = fs::read_to_string(env.at("/etc/debian_version")).unwrap();
    let arch = deb.chroot(&["dpkg", "--print-architecture"]);
    assert_eq!(
        rendered(env, "/etc/facts"),
        format!("deb-test {} bookworm {}\n", release.trim(), arch.trim())
    );
    // The configuration's host name wins over the root's /etc/hostname.
    let c = env.config(
        "c.json",
        json!({"host": "deb-test", "files": {"/etc/facts": {"content": "{{ host.name }}\n", "template": true}}}),
    );
    env.write_root("/etc/hostname", "deb-test\n");
    env.switch(&c);
    assert_eq!(rendered(env, "/etc/facts"), "deb-test\n");
}

// ---- strict undefined, with the location

#[test]
fn undefined_names_are_errors_with_file_line_and_column() {
    let env = TestEnv::new();
    env.write_cfg(
        "tmpl/app.conf.j2",
        "# app\nport={{ port }}\nname = {{ nmae }}\n",
    );
    let c = env.config(
        "c.json",
        json!({"vars": {"port": 1, "name": "x"},
               "files": {"/etc/app.conf": {"source": "tmpl/app.conf.j2", "template": true}}}),
    );
    // The state directory the first build opens is all that appears.
    let r = env.run(&["build", s(&c)]).expect(2);
    let before = env.tree();
    assert!(
        r.stderr
            .contains("tmpl/app.conf.j2:3:11: undefined: `nmae`"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("files./etc/app.conf"), "{}", r.stderr);
    // Inline content: the configuration file, the key, the line and column.
    let c = env.config(
        "c.json",
        json!({"files": {"/etc/motd": {"content": "a\nb {{ host.nope }}\n", "template": true}}}),
    );
    let r = env.run(&["build", s(&c)]).expect(2);
    assert!(
        r.stderr
            .contains("c.json: files./etc/motd: content line 2, column 6: undefined: `host.nope`")
            && r.stderr.contains("host facts: host.name"),
        "{}",
        r.stderr
    );
    // A syntax error has its place too.
    let c = env.config(
        "c.json",
        json!({"files": {"/etc/motd": {"content": "{% if %}\n", "template": true}}}),
    );
    let r = env.run(&["build", s(&c)]).expect(2);
    assert!(r.stderr.contains("content line 1, column"), "{}", r.stderr);
    assert!(r.stderr.contains("syntax error"), "{}", r.stderr);
    // An unknown secret is undefined as well.
    let c = env.config(
        "c.json",
        json!({"files": {"/etc/motd": {"content": "{{ secrets.none }}", "template": true}}}),
    );
    let r = env.run(&["build", s(&c)]).expect(2);
    assert!(
        r.stderr.contains("undefined: `secrets.none`"),
        "{}",
        r.stderr
    );
    assert_eq!(env.tree(), before, "nothing changed on the root");
    no_generation(&env);
}

// ---- secrets

const DB_PASS: &str = "pw-Tq7Zr2Kx9Lm4Vn8B";
const API_KEY: &str = "key-Hc3Wd6Js1Pf5Qa0Y";

/// A secret file outside `cfg/` (the configuration's repository), 0600.
fn secret_file(dir: &Path, value: &str) -> PathBuf {
    let p = dir.join("db.secret");
    fs::write(&p, format!("{value}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn secret_world(env: &TestEnv, outside: &Path, pass: &str, mode: Option<&str>) -> PathBuf {
    let file = secret_file(outside, pass);
    let mut db = json!({"content": "user=app\npassword={{ secrets.db }}\nkey={{ secrets.api }}\n", "template": true});
    if let Some(m) = mode {
        db["mode"] = json!(m);
    }
    env.config(
        "c.json",
        json!({"secrets": {"db": {"file": s(&file)},
                           "api": {"command": format!("printf '%s\\n' {API_KEY}")}},
               "vars": {"user": "app"},
               "files": {"/etc/app/db.conf": db,
                         "/etc/app/public.conf": {"content": "user={{ user }}\n", "template": true}}}),
    )
}

/// No file that others may read, under the root and the state directory,
/// holds `value` (as text or as the store keeps it).
#[track_caller]
fn no_world_readable_copy(env: &TestEnv, value: &str) {
    let needles = [value.as_bytes().to_vec(), stored_frame(value.as_bytes())];
    for (p, md) in entries_under(&env.root()) {
        if !md.is_file() || md.mode() & 0o004 == 0 {
            continue;
        }
        let bytes = fs::read(&p).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} (mode {:04o}) holds the secret",
                p.display(),
                md.mode() & 0o7777
            );
        }
    }
}

#[track_caller]
fn no_leak(what: &str, r: &Run, values: &[&str]) {
    for v in values {
        let h = blake3::hash(format!("user=app\npassword={v}\nkey={API_KEY}\n").as_bytes())
            .to_hex()
            .to_string();
        for f in [v.to_string(), h[..12].to_owned(), h] {
            assert!(
                !r.stdout.contains(&f) && !r.stderr.contains(&f),
                "{what} shows {f:?}:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
    }
}

#[test]
fn a_file_that_uses_a_secret_is_secret_everywhere() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let c = secret_world(&env, outside.path(), DB_PASS, None);
    let values = [DB_PASS, API_KEY];
    for args in [
        vec!["build", s(&c)],
        vec!["--json", "build", s(&c)],
        vec!["switch", "--dry-run", s(&c)],
        vec!["--json", "switch", "--dry-run", s(&c)],
        vec!["-v", "switch", s(&c)],
        vec!["list"],
        vec!["status"],
        vec!["verify"],
        vec!["--json", "verify"],
    ] {
        let r = env.run(&args).ok();
        no_leak(&args.join(" "), &r, &values);
    }
    assert_eq!(
        rendered(&env, "/etc/app/db.conf"),
        format!("user=app\npassword={DB_PASS}\nkey={API_KEY}\n")
    );
    let md = fs::metadata(env.at("/etc/app/db.conf")).unwrap();
    assert_eq!(
        md.mode() & 0o7777,
        0o600,
        "a file that read a secret is 0600"
    );
    let md = fs::metadata(env.at("/etc/app/public.conf")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o644, "one that did not stays public");
    no_world_readable_copy(&env, DB_PASS);
    no_world_readable_copy(&env, API_KEY);

    // A new value: the diff names the secret, never its value.
    let c = secret_world(&env, outside.path(), "pw-Second-Value-77", None);
    for args in [
        vec!["diff", s(&c)],
        vec!["--json", "diff", s(&c)],
        vec!["-v", "switch", s(&c)],
        vec!["diff", "1", "2"],
        vec!["--json", "rollback", "--dry-run"],
    ] {
        let r = env.run(&args).ok();
        no_leak(
            &args.join(" "),
            &r,
            &[DB_PASS, "pw-Second-Value-77", API_KEY],
        );
        if args[0] == "diff" {
            assert!(
                r.stdout.contains("secret db changed")
                    || r.stdout.contains("secrets api, db changed"),
                "{}",
                r.stdout
            );
        }
    }
    no_world_readable_copy(&env, "pw-Second-Value-77");
}

#[test]
fn a_secret_file_with_a_mode_others_can_read_is_refused() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let c = secret_world(&env, outside.path(), DB_PASS, Some("0644"));
    let r = env.run(&["build", s(&c)]).expect(2);
    assert!(
        r.stderr.contains("files./etc/app/db.conf: the template reads secrets.api, secrets.db but its mode 0644 lets anyone read the file"),
        "{}",
        r.stderr
    );
    no_leak("build", &r, &[DB_PASS]);
    // A mode for the group alone is the admin's choice.
    let c = secret_world(&env, outside.path(), DB_PASS, Some("0640"));
    env.switch(&c);
    let md = fs::metadata(env.at("/etc/app/db.conf")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
}

#[test]
fn secrets_must_be_private_outside_the_repository_or_come_from_a_command_that_works() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let tmpl = json!({"content": "{{ secrets.db }}", "template": true});
    let with = |secret: serde_json::Value| {
        env.config(
            "c.json",
            json!({"secrets": {"db": secret}, "files": {"/etc/db": tmpl}}),
        )
    };
    // Readable by others.
    let f = secret_file(outside.path(), DB_PASS);
    fs::set_permissions(&f, fs::Permissions::from_mode(0o644)).unwrap();
    let r = env
        .run(&["build", s(&with(json!({"file": s(&f)})))])
        .expect(2);
    assert!(
        r.stderr.contains("mode 0644 lets others read or change it")
            && r.stderr.contains("help: run chmod 600"),
        "{}",
        r.stderr
    );
    // Inside the configuration's repository (here: its directory).
    let inside = env.write_cfg("db.secret", DB_PASS);
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).unwrap();
    let r = env
        .run(&["build", s(&with(json!({"file": s(&inside)})))])
        .expect(2);
    assert!(
        r.stderr
            .contains("lies inside the configuration repository"),
        "{}",
        r.stderr
    );
    // Inside a git repository above the configuration.
    fs::create_dir_all(outside.path().join("repo/.git")).unwrap();
    fs::create_dir_all(outside.path().join("repo/conf")).unwrap();
    let in_repo = outside.path().join("repo/secret");
    fs::write(&in_repo, DB_PASS).unwrap();
    fs::set_permissions(&in_repo, fs::Permissions::from_mode(0o600)).unwrap();
    let cfg = outside.path().join("repo/conf/c.json");
    fs::write(
        &cfg,
        json!({"secrets": {"db": {"file": s(&in_repo)}}, "files": {"/etc/db": tmpl}}).to_string(),
    )
    .unwrap();
    let r = env.run(&["build", s(&cfg)]).expect(2);
    assert!(
        r.stderr.contains(&format!(
            "inside the configuration repository {}",
            outside.path().join("repo").display()
        )),
        "{}",
        r.stderr
    );
    // Missing.
    let r = env
        .run(&["build", s(&with(json!({"file": "/nonexistent/db.secret"})))])
        .expect(2);
    assert!(
        r.stderr.contains("/nonexistent/db.secret: no such file"),
        "{}",
        r.stderr
    );
    // A command that leaves a process behind holding its output: the value
    // is read when the command exits, not when the last holder lets go.
    let started = std::time::Instant::now();
    let c = with(json!({"command": "printf 'tok-Bg-1'; sleep 5 &"}));
    env.switch(&c);
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert_eq!(rendered(&env, "/etc/db"), "tok-Bg-1");
    // A command that fails: its status and stderr.
    let r = env
        .run(&[
            "build",
            s(&with(json!({"command": "echo vault sealed >&2; exit 3"}))),
        ])
        .expect(2);
    assert!(
        r.stderr
            .contains("secrets.db: the command failed (exit status: 3): vault sealed"),
        "{}",
        r.stderr
    );
    no_leak("build", &r, &[DB_PASS]);
    assert_eq!(
        rendered(&env, "/etc/db"),
        "tok-Bg-1",
        "the failures changed nothing"
    );
}

#[test]
fn the_schema_covers_templates_secrets_and_downloads() {
    let env = TestEnv::new();
    let r = env.run(&["schema"]).ok();
    let schema = r.json();
    let props = &schema["properties"];
    assert!(props["vars"].is_object() && props["secrets"].is_object());
    let text = r.stdout;
    for k in [
        "\"template\"",
        "\"url\"",
        "\"sha256\"",
        "\"blake3\"",
        "\"command\"",
    ] {
        assert!(text.contains(k), "{k} missing from the schema");
    }
}

#[test]
fn a_render_error_never_quotes_a_secret() {
    let env = TestEnv::new();
    let outside = tempfile::tempdir().unwrap();
    let file = secret_file(outside.path(), DB_PASS);
    // minijinja names the template an include asks for: here, the secret.
    let c = env.config(
        "c.json",
        json!({"secrets": {"db": {"file": s(&file)}},
               "files": {"/etc/x": {"content": "{% include secrets.db %}", "template": true}}}),
    );
    let r = env.run(&["build", s(&c)]).expect(2);
    assert!(
        r.stderr
            .contains("content line 1, column 4: template not found: tried to include non-existing template \"<secret>\""),
        "{}",
        r.stderr
    );
    let r = env.run(&["--json", "build", s(&c)]).expect(2);
    assert!(!r.stdout.contains(DB_PASS) && !r.stderr.contains(DB_PASS));
    no_generation(&env);
}

#[test]
fn siblings_that_write_a_plain_files_default_mode_or_not_still_agree() {
    let env = TestEnv::new();
    env.config(
        "a.json",
        json!({"files": {"/etc/motd": {"content": "hi\n", "mode": "0644"}}}),
    );
    env.config(
        "b.json",
        json!({"files": {"/etc/motd": {"content": "hi\n"}}}),
    );
    let top = env.config("top.json", json!({"include": ["a.json", "b.json"]}));
    env.switch(&top);
}
