//! Hostile input for every decoder of untrusted bytes: the configuration
//! loader (`sysgen_schema::load`, JSON and TOML), the node and manifest
//! decoders with the tree walk over what they decode, and the journal.
//! Whatever the bytes, each must return (an error for bad input), never
//! panic or overflow its stack.
//!
//! Each property runs a bounded number of cases so the file finishes in
//! seconds in CI. Two corpora feed them: `tests/fuzz-corpus/<decoder>/`
//! holds seeds (real files sysgen wrote, and inputs chosen to hurt: deep
//! nesting, huge numbers, NUL bytes), each decoded as is and mutated; and
//! proptest records any failing case in `tests/fuzz-corpus/proptest-regressions.txt`,
//! replayed first on every run (commit it with the fix).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Map, Value};
use sysgen_generations::journal::Journal;
use sysgen_generations::manifest::{self, Entry, Manifest, Node, NodeEntry, NodeId};
use sysgen_schema::{EntryPath, LoadOptions};
use sysgen_store::Hash;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fuzz-corpus");

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fuzz-corpus/proptest-regressions.txt"
        )))),
        ..Config::default()
    }
}

/// The seed files of one decoder, sorted by name.
fn seeds(decoder: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(CORPUS).join(decoder);
    let mut out: Vec<(PathBuf, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("corpus entry").path();
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (p, bytes)
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

// ------------------------------------------------------------ generators

/// Keys and strings the decoders give meaning to, with hostile paths and
/// names among them, so random documents get past the first checks.
const WORDS: &[&str] = &[
    "sysgen",
    "host",
    "include",
    "files",
    "directories",
    "symlinks",
    "trees",
    "packages",
    "datasets",
    "services",
    "content",
    "source",
    "mode",
    "owner",
    "group",
    "secret",
    "type",
    "snapshot",
    "name",
    "apt",
    "enable",
    "restart_on",
    "reload_on",
    "check",
    "timeout",
    "btrfs",
    "zfs",
    "directory",
    "pool/data",
    "root",
    "0",
    "0644",
    "0755",
    "07777",
    "99999",
    "-1",
    "www-data",
    "nginx=1.0",
    "app.service",
    "/etc/motd",
    "/etc",
    "/srv/data",
    "/var/lib/sysgen",
    "/var/lib/sysgen/x",
    "/",
    "//x",
    "/a/../b",
    "/a/./b",
    "/a/",
    "relative",
    "",
    ".",
    "..",
    "a/b",
    "\u{0}",
    "/a\u{0}b",
    "/a\nb",
    "é",
    "site",
    "token",
    "inc.json",
    "inc.toml",
    "missing.json",
    "../outside.json",
    // node and manifest fields
    "entry",
    "tree",
    "file",
    "dir",
    "symlink",
    "hash",
    "size",
    "uid",
    "gid",
    "target",
    // journal fields
    "version",
    "how",
    "from",
    "to",
    "to_number",
    "started_at",
    "plan",
    "steps",
    "ledger_add",
    "ledger_remove",
    "op",
    "path",
    "why",
    "make_dir",
    "put_file",
    "put_symlink",
    "remove",
    "activate",
    "deactivate",
    "service",
    "package",
    "dataset",
    "number",
    "id",
    "was",
    "kind",
];

fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(WORDS).prop_map(str::to_owned),
        1 => any::<String>(),
        1 => "[0-9a-f]{64}",
        1 => Just("x".repeat(300)),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        Just(Value::from(u32::MAX)),
        Just(Value::from(u64::from(u32::MAX) + 1)),
        (-1e300f64..1e300).prop_map(Value::from),
        (0u32..0o10000).prop_map(Value::from),
    ]
}

/// Random JSON documents, their object keys drawn mostly from [`WORDS`].
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        word().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((word(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// TOML-like text: tokens of the language in random order, so the parser
/// meets unbalanced brackets, odd quoting, dotted and repeated keys.
fn toml_text() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        word().prop_map(|w| format!("{w:?}")),
        prop::sample::select(WORDS).prop_map(str::to_owned),
        prop::sample::select(
            &[
                "[",
                "]",
                "[[",
                "]]",
                "{",
                "}",
                "=",
                ",",
                ".",
                "\n",
                " ",
                "\"",
                "'",
                "'''",
                "\"\"\"",
                "#",
                "true",
                "1979-05-27T07:32:00Z",
                "0o755",
                "0x1F",
                "inf",
                "nan",
                "1e400",
                "[files.\"/etc/motd\"]\n",
                "content = ",
                "include = [",
                "\\u0000",
                "\\",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|n| n.to_string()),
    ];
    prop::collection::vec(token, 0..40).prop_map(|t| t.concat())
}

/// A mutation of a JSON document: one value, anywhere in it, replaced.
fn mutate(doc: &Value, at: usize, with: Value) -> Value {
    fn pointers(v: &Value, here: String, out: &mut Vec<String>) {
        out.push(here.clone());
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    pointers(x, format!("{here}/{i}"), out);
                }
            }
            Value::Object(o) => {
                for (k, x) in o {
                    let k = k.replace('~', "~0").replace('/', "~1");
                    pointers(x, format!("{here}/{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut all = Vec::new();
    pointers(doc, String::new(), &mut all);
    let mut out = doc.clone();
    if let Some(slot) = out.pointer_mut(&all[at % all.len()]) {
        *slot = with;
    }
    out
}

/// Random bytes, or a seed with a few bytes overwritten, cut or repeated.
fn bytes_near(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (
            Just(seed),
            prop::collection::vec((any::<usize>(), any::<u8>()), 0..8),
            any::<usize>()
        )
            .prop_map(|(mut b, flips, cut)| {
                for (i, x) in flips {
                    if !b.is_empty() {
                        let n = b.len();
                        b[i % n] = x;
                    }
                }
                b.truncate(cut % (b.len() + 1));
                b
            }),
    ]
}

// ------------------------------------------------------------ the loader

/// A configuration directory with what random configurations may name:
/// sources, a tree, includes in both formats.
struct ConfigDir {
    dir: tempfile::TempDir,
}

impl ConfigDir {
    fn new() -> ConfigDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        fs::create_dir_all(d.join("site/sub")).expect("mkdir site");
        fs::write(d.join("site/a"), "a\n").expect("write");
        fs::write(d.join("site/sub/b"), "b\n").expect("write");
        std::os::unix::fs::symlink("a", d.join("site/l")).expect("symlink");
        fs::write(d.join("token"), "t\n").expect("write");
        fs::write(
            d.join("inc.json"),
            r#"{"files": {"/etc/motd": {"content": "inc\n"}}}"#,
        )
        .expect("write");
        fs::write(d.join("inc.toml"), "include = [\"inc.json\"]\n").expect("write");
        ConfigDir { dir }
    }

    /// Loads `bytes` as `name`: whatever it holds, an answer and no panic.
    /// An error names a file, as SPEC §2 promises.
    fn load(&self, name: &str, bytes: &[u8]) {
        let path = self.dir.path().join(name);
        fs::write(&path, bytes).expect("write config");
        let opts = LoadOptions {
            reserved: vec![EntryPath::parse("/var/lib/sysgen").expect("path")],
        };
        if let Err(e) = sysgen_schema::load(&path, &opts) {
            let msg = e.to_string();
            assert!(
                msg.contains(".json") || msg.contains(".toml") || msg.contains(name),
                "an error that names no file: {msg}"
            );
        }
    }
}

#[test]
fn every_config_seed_loads_or_is_an_error() {
    let d = ConfigDir::new();
    for (p, bytes) in seeds("config") {
        let name = p.file_name().expect("name").to_string_lossy().into_owned();
        d.load(&name, &bytes);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_json_configurations_load_or_are_errors(v in json()) {
        let d = ConfigDir::new();
        d.load("c.json", v.to_string().as_bytes());
    }

    #[test]
    fn random_toml_text_loads_or_is_an_error(t in toml_text()) {
        let d = ConfigDir::new();
        d.load("c.toml", t.as_bytes());
    }

    #[test]
    fn mutated_configurations_load_or_are_errors(at in any::<usize>(), with in json()) {
        let d = ConfigDir::new();
        let seed = fs::read(Path::new(CORPUS).join("config/every-section.json")).expect("seed");
        let doc: Value = serde_json::from_slice(&seed).expect("the seed is JSON");
        d.load("c.json", mutate(&doc, at, with).to_string().as_bytes());
    }

    #[test]
    fn random_bytes_load_or_are_errors(b in prop::collection::vec(any::<u8>(), 0..256)) {
        let d = ConfigDir::new();
        d.load("c.json", &b);
        d.load("c.toml", &b);
    }
}

// ------------------------------------------------------ nodes and manifests

/// Decodes `bytes` as a node; a node that decodes re-encodes to bytes that
/// decode to it again, and walking it (alone: its subtrees are missing)
/// is an answer, not a panic.
fn check_node(bytes: &[u8]) {
    let Ok(node) = Node::decode(bytes) else {
        return;
    };
    let again = Node::decode(&node.encode().expect("encodes")).expect("an encoded node decodes");
    assert_eq!(again, node);
    let id = Node::id_of(&node.encode().expect("encodes"));
    let source: BTreeMap<NodeId, Node> = [(id, node)].into();
    let _ = manifest::walk(&source, id);
    let _ = manifest::diff(&source, Some(id), None);
}

fn check_manifest(bytes: &[u8]) {
    let Ok(m) = serde_json::from_slice::<Manifest>(bytes) else {
        return;
    };
    let again: Manifest =
        serde_json::from_slice(&m.encode().expect("encodes")).expect("an encoded manifest decodes");
    assert_eq!(again, m);
    assert_eq!(again.id().expect("an id"), m.id().expect("an id"));
}

/// A random tree of nodes with real ids (as the database, which checks
/// them, would give), whose names and entries may be anything a damaged
/// or forged database holds: empty, `.`, `..`, slashes, NUL, duplicates,
/// unsorted, a directory without its tree or a file with one.
#[derive(Debug, Clone)]
struct RawNode(Vec<(String, Entry, Option<RawNode>)>);

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (
            any::<u64>(),
            any::<u32>(),
            any::<Option<u32>>(),
            any::<bool>()
        )
            .prop_map(|(size, mode, uid, secret)| Entry::File {
                hash: Hash::of(&size.to_le_bytes()),
                size,
                mode,
                uid,
                gid: uid,
                secret,
                xattrs: Default::default(),
                link: None,
            }),
        any::<Option<u32>>().prop_map(|mode| Entry::Dir {
            mode,
            uid: None,
            gid: None,
            xattrs: Default::default(),
        }),
        word().prop_map(|target| Entry::Symlink {
            target,
            uid: None,
            gid: None
        }),
    ]
}

fn raw_node() -> impl Strategy<Value = RawNode> {
    let name = prop_oneof![
        3 => prop::sample::select(&["a", "b", "c"][..]).prop_map(str::to_owned),
        1 => word(),
    ];
    let leaf = prop::collection::vec((name.clone(), entry(), Just(None)), 0..4).prop_map(RawNode);
    leaf.prop_recursive(5, 40, 4, move |inner| {
        prop::collection::vec((name.clone(), entry(), prop::option::of(inner)), 0..4)
            .prop_map(RawNode)
    })
}

/// Stores `n` and its subtrees in `into`; returns its id.
fn store(n: &RawNode, into: &mut BTreeMap<NodeId, Node>) -> NodeId {
    let node = Node {
        entries: n
            .0
            .iter()
            .map(|(name, entry, sub)| NodeEntry {
                name: name.clone(),
                entry: entry.clone(),
                tree: sub.as_ref().map(|s| store(s, into)),
            })
            .collect(),
    };
    let id = Node::id_of(&node.encode().expect("encodes"));
    into.insert(id, node);
    id
}

#[test]
fn every_node_and_manifest_seed_decodes() {
    for (p, bytes) in seeds("node") {
        assert!(Node::decode(&bytes).is_ok(), "{}", p.display());
        check_node(&bytes);
    }
    for (p, bytes) in seeds("manifest") {
        assert!(
            serde_json::from_slice::<Manifest>(&bytes).is_ok(),
            "{}",
            p.display()
        );
        check_manifest(&bytes);
    }
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_nodes_decode_or_are_errors(b in bytes_near(seeds("node")[0].1.clone()), v in json()) {
        check_node(&b);
        check_node(v.to_string().as_bytes());
    }

    #[test]
    fn mutated_nodes_decode_or_are_errors(at in any::<usize>(), with in json()) {
        for (_, bytes) in seeds("node") {
            let doc: Value = serde_json::from_slice(&bytes).expect("a seed node is JSON");
            check_node(mutate(&doc, at, with.clone()).to_string().as_bytes());
        }
    }

    #[test]
    fn random_manifests_decode_or_are_errors(
        b in bytes_near(seeds("manifest")[0].1.clone()),
        at in any::<usize>(),
        with in json(),
    ) {
        check_manifest(&b);
        let doc: Value = serde_json::from_slice(&seeds("manifest")[0].1).expect("JSON");
        check_manifest(mutate(&doc, at, with).to_string().as_bytes());
    }

    /// Walking and diffing forged trees: every path that comes out is a
    /// valid one (a bad name is an error), sorted, and nothing panics.
    #[test]
    fn forged_trees_walk_and_diff_or_are_errors(a in raw_node(), b in raw_node()) {
        let mut src = BTreeMap::new();
        let ia = store(&a, &mut src);
        let ib = store(&b, &mut src);
        if let Ok(all) = manifest::walk(&src, ia) {
            for (p, _) in &all {
                let reparsed = EntryPath::parse(p.as_str());
                prop_assert_eq!(reparsed.as_ref(), Ok(p));
            }
            prop_assert!(all.windows(2).all(|w| w[0].0 <= w[1].0));
        }
        if let Ok(changes) = manifest::diff(&src, Some(ia), Some(ib)) {
            prop_assert!(changes.windows(2).all(|w| w[0].path() <= w[1].path()));
        }
        prop_assert!(manifest::diff(&src, Some(ia), Some(ia)).is_ok_and(|c| c.is_empty()));
    }
}

// ------------------------------------------------------------ the journal

/// Reads `bytes` as a journal; one that reads is written and read back
/// the same.
fn check_journal(bytes: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("journal.json");
    fs::write(&path, bytes).expect("write");
    let Ok(Some(j)) = Journal::read(&path) else {
        return;
    };
    let v = serde_json::to_value(&j).expect("a journal serializes");
    j.write(&path).expect("rewrite");
    let back = Journal::read(&path).expect("read again").expect("present");
    assert_eq!(serde_json::to_value(&back).expect("serializes"), v);
}

#[test]
fn every_journal_seed_is_decoded_without_panic() {
    // Not asserted to read: a seed written by an older plan format may be
    // refused, which is an answer too.
    for (_, bytes) in seeds("journal") {
        check_journal(&bytes);
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_journals_read_or_are_errors(b in bytes_near(seeds("journal")[0].1.clone())) {
        check_journal(&b);
    }

    #[test]
    fn mutated_journals_read_or_are_errors(at in any::<usize>(), with in json()) {
        for (_, bytes) in seeds("journal") {
            let doc: Value = serde_json::from_slice(&bytes).expect("a seed journal is JSON");
            check_journal(mutate(&doc, at, with.clone()).to_string().as_bytes());
        }
    }
}
