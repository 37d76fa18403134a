//! `apply`, through the public API on a real root and state directory:
//! each kind's steps run in order, every step converges whatever it finds
//! (so a plan run twice, as `recover` does, ends the same), runs of file
//! writes in parallel land whole, the activation commits once, and a step
//! that fails stops the plan there with its error.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use sysgen_generations::apply::{ApplyOptions, apply};
use sysgen_generations::files::{FileStep, Why};
use sysgen_generations::host::Options;
use sysgen_generations::journal::Journal;
use sysgen_generations::kind::Phase;
use sysgen_generations::plan::{Action, Plan, Step};
use sysgen_generations::state::{Access, State};
use sysgen_generations::{GenerationId, NoProgress};
use sysgen_schema::EntryPath;
use sysgen_store::{Area, Hash};

fn p(s: &str) -> EntryPath {
    EntryPath::parse(s).expect("a valid test path")
}

struct World {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    state: State,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        fs::create_dir(&root).expect("mkdir root");
        let state = State::open(&root, &root.join("var/lib/sysgen"), Access::Write)
            .expect("open the state");
        World {
            _dir: dir,
            root,
            state,
        }
    }

    fn put(&self, content: &str, mode: u32, path: &str) -> Step {
        let hash = self
            .state
            .store
            .put_bytes(content.as_bytes(), Area::Public)
            .expect("store");
        Step::new(
            Phase::Create,
            FileStep::PutFile {
                path: p(path),
                why: Why::Add,
                hash,
                size: content.len() as u64,
                mode,
                uid: None,
                gid: None,
                secret: false,
                xattrs: Default::default(),
            },
        )
    }

    fn run(&mut self, journal: &Journal) -> Result<u64, sysgen_generations::Error> {
        let opts = Options::default();
        apply(
            &self.state.root,
            &self.state.store,
            &mut self.state.db,
            journal,
            &ApplyOptions {
                now: 1_700_000_000,
                kinds: &opts,
                fault_after: None,
                progress: &NoProgress,
                how: None,
            },
        )
        .map(|o| o.steps)
        .map_err(|e| e.cause)
    }

    /// The root's entries outside the state directory: path -> what.
    fn tree(&self) -> BTreeMap<String, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
            for e in fs::read_dir(dir).expect("read_dir") {
                let path = e.expect("entry").path();
                let rel = format!("/{}", path.strip_prefix(base).expect("below").display());
                if rel.starts_with("/var") {
                    continue;
                }
                let md = fs::symlink_metadata(&path).expect("lstat");
                let mode = md.permissions().mode() & 0o7777;
                let what = if md.is_dir() {
                    walk(base, &path, out);
                    format!("dir {mode:04o}")
                } else if md.file_type().is_symlink() {
                    format!("link {}", fs::read_link(&path).expect("readlink").display())
                } else {
                    let c = fs::read_to_string(&path).expect("read");
                    format!("file {mode:04o} {c}")
                };
                out.insert(rel, what);
            }
        }
        let mut out = BTreeMap::new();
        walk(&self.root, &self.root, &mut out);
        out
    }
}

fn journal(steps: Vec<Step>, number: u64) -> Journal {
    let id = GenerationId(Hash::of(format!("generation {number}").as_bytes()));
    let plan = Plan {
        steps: Plan::order(steps, Action::Activate { number, id }),
        ..Plan::default()
    };
    Journal::new("switch", None, number, id, 1_700_000_000, plan)
}

fn mkdir(path: &str, mode: u32) -> Step {
    Step::new(
        Phase::Create,
        FileStep::MakeDir {
            path: p(path),
            why: Why::Add,
            mode: Some(mode),
            uid: None,
            gid: None,
            xattrs: Default::default(),
        },
    )
}

#[test]
fn a_plan_lands_whole_and_a_second_run_changes_nothing() {
    let mut w = World::new();
    let mut steps = vec![mkdir("/etc", 0o755), mkdir("/etc/app", 0o750)];
    // A run of writes in one directory: the parallel path.
    for i in 0..200 {
        steps.push(w.put(&format!("{i}\n"), 0o644, &format!("/etc/app/f{i:03}")));
    }
    steps.push(Step::new(
        Phase::Create,
        FileStep::PutSymlink {
            path: p("/etc/current"),
            why: Why::Add,
            target: "app".into(),
            uid: None,
            gid: None,
        },
    ));
    let j = journal(steps, 1);
    let n = j.plan.steps.len() as u64;
    assert_eq!(w.run(&j).expect("apply"), n);
    let first = w.tree();
    assert_eq!(first.len(), 203, "{first:?}");
    assert_eq!(first["/etc/app"], "dir 0750");
    assert_eq!(first["/etc/app/f007"], "file 0644 7\n");
    assert_eq!(first["/etc/current"], "link app");
    assert_eq!(w.state.db.active().expect("db").map(|g| g.number), Some(1));
    // Recover runs the journalled plan again from its first step.
    assert_eq!(w.run(&j).expect("apply again"), n);
    assert_eq!(w.tree(), first);
    assert_eq!(
        w.state
            .db
            .generations()
            .expect("db")
            .iter()
            .map(|g| g.number)
            .collect::<Vec<_>>(),
        [1],
        "the activation commits once"
    );
}

#[test]
fn steps_converge_from_what_an_interrupted_plan_left() {
    let mut w = World::new();
    // A file where the plan makes a directory, and a directory (empty)
    // where it writes a file: both give way.
    fs::write(w.root.join("d"), "stray\n").expect("write");
    fs::create_dir(w.root.join("f")).expect("mkdir");
    let steps = vec![mkdir("/d", 0o700), w.put("content\n", 0o600, "/f")];
    w.run(&journal(steps, 1)).expect("apply");
    let t = w.tree();
    assert_eq!(t["/d"], "dir 0700");
    assert_eq!(t["/f"], "file 0600 content\n");
}

#[test]
fn a_directory_still_holding_files_is_kept_and_reported() {
    let mut w = World::new();
    fs::create_dir(w.root.join("keep")).expect("mkdir");
    fs::write(w.root.join("keep/admin.txt"), "mine\n").expect("write");
    let remove = Step::new(
        Phase::Remove,
        FileStep::Remove {
            path: p("/keep"),
            why: Why::Remove,
            kind: "directory".into(),
        },
    );
    let opts = Options::default();
    let j = journal(vec![remove], 1);
    let out = apply(
        &w.state.root,
        &w.state.store,
        &mut w.state.db,
        &j,
        &ApplyOptions {
            now: 0,
            kinds: &opts,
            fault_after: None,
            progress: &NoProgress,
            how: None,
        },
    )
    .expect("apply");
    assert_eq!(out.kept, ["/keep"]);
    assert_eq!(w.tree()["/keep/admin.txt"], "file 0644 mine\n");
}

#[test]
fn a_failing_step_stops_the_plan_before_the_activation() {
    let mut w = World::new();
    // The object of the second write is not in the store.
    let missing = Step::new(
        Phase::Create,
        FileStep::PutFile {
            path: p("/b"),
            why: Why::Add,
            hash: Hash::of(b"never stored"),
            size: 12,
            mode: 0o644,
            uid: None,
            gid: None,
            secret: false,
            xattrs: Default::default(),
        },
    );
    let steps = vec![
        w.put("a\n", 0o644, "/a"),
        missing,
        w.put("c\n", 0o644, "/c"),
    ];
    // Alone, so that it runs on the one-step path (a run of writes fails
    // the same way, in parallel).
    let j = journal(steps[1..2].to_vec(), 1);
    assert!(w.run(&j).is_err());
    assert!(!w.tree().contains_key("/b"), "no half-written file");
    assert_eq!(w.state.db.active().expect("db"), None, "not activated");
    let j = journal(steps, 2);
    assert!(w.run(&j).is_err());
    assert!(!w.tree().contains_key("/b"));
    assert_eq!(w.state.db.active().expect("db"), None);
}
