//! Copying a generation's closure from one remote to another.
//!
//! The closure is the manifest, every node under its root, and every
//! file's content (`objects/`, or `secrets/<recipient>/` for a secret).
//! The walk goes one level of the tree at a time, asking the destination
//! which of that level's nodes it has in one [`Transport::has`] per 1,000
//! keys, then which objects, and moves only what is missing.
//!
//! Writes go in the order that keeps both sides consistent if the process
//! dies at any point: objects, then nodes deepest first (a node arrives
//! after everything under it), then the `.deb` record, then the
//! manifest; the caller moves a ref last. A ref therefore never names a generation the remote does not
//! wholly hold, and a rerun moves only what the killed run had not.

use std::collections::HashSet;

use serde::Serialize;
use sysgen_generations::manifest::{Entry, Manifest, Node, NodeId};
use sysgen_generations::{GenerationId, Progress};

use crate::debs::Record;
use crate::{Error, Transport, layout};

/// How many keys one `has` asks about.
pub const HAS_BATCH: usize = 1000;

/// Which side to read nodes from when both have them: the local one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Source,
    Destination,
}

/// A named point where a crash test makes the process abort (SIGABRT, as
/// good as a kill): after `after` writes of `step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub step: Step,
    pub after: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Objects,
    Nodes,
    Manifest,
    Ref,
}

impl Fault {
    /// `objects:N`, `nodes:N`, `manifest:0`, `ref:0`.
    pub fn parse(s: &str) -> Option<Fault> {
        let (step, n) = s.split_once(':')?;
        let step = match step {
            "objects" => Step::Objects,
            "nodes" => Step::Nodes,
            "manifest" => Step::Manifest,
            "ref" => Step::Ref,
            _ => return None,
        };
        Some(Fault {
            step,
            after: n.parse().ok()?,
        })
    }
}

/// Aborts the process when `fault` names this step and count.
pub fn hit(fault: Option<Fault>, step: Step, done: u64) {
    if let Some(f) = fault
        && f.step == step
        && f.after == done
    {
        std::process::abort();
    }
}

pub struct SyncOptions<'a> {
    /// The recipient id the secrets are (to be) encrypted to; `None` when
    /// the generation must have no secrets.
    pub recipient: Option<&'a str>,
    pub read_nodes_from: Side,
    /// The generation's `.deb` record, if it has one: its objects travel
    /// with the files', and it arrives before the manifest.
    pub packages: Option<&'a Record>,
    pub progress: &'a dyn Progress,
    pub fault: Option<Fault>,
}

/// What a sync moved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// File contents written (objects and secrets).
    pub objects: u64,
    /// Of which secrets.
    pub secrets: u64,
    pub nodes: u64,
    pub manifests: u64,
    /// Bytes written, as they travel (compressed objects, encrypted secrets).
    pub bytes: u64,
    /// File contents the destination already had.
    pub objects_present: u64,
}

/// Copies generation `id` from `src` to `dst`, moving only what `dst`
/// lacks, in the order the module comment gives.
pub fn sync_generation(
    src: &dyn Transport,
    dst: &dyn Transport,
    id: &GenerationId,
    opts: &SyncOptions<'_>,
) -> Result<Moved, Error> {
    let mkey = layout::manifest(id);
    let manifest_present = has_all(dst, std::slice::from_ref(&mkey))?[0];
    let mbytes = if manifest_present && opts.read_nodes_from == Side::Destination {
        fetch(dst, &mkey)?
    } else {
        fetch(src, &mkey)?
    };
    let manifest: Manifest = serde_json::from_slice(&mbytes)
        .map_err(|e| Error::corrupt(&src.describe(), &mkey, format!("not a manifest: {e}")))?;

    // Walk the tree level by level; keep the bytes of missing nodes.
    let mut seen: HashSet<NodeId> = HashSet::new();
    let mut level = vec![manifest.root];
    seen.insert(manifest.root);
    let mut missing_levels: Vec<Vec<(String, Vec<u8>)>> = Vec::new();
    let mut contents: Vec<String> = Vec::new();
    let mut seen_contents: HashSet<String> = HashSet::new();
    while !level.is_empty() {
        let keys: Vec<String> = level.iter().map(layout::node).collect();
        let present = has_all(dst, &keys)?;
        let mut next = Vec::new();
        let mut missing = Vec::new();
        for (key, here) in keys.into_iter().zip(present) {
            let from = if here && opts.read_nodes_from == Side::Destination {
                dst
            } else {
                src
            };
            let bytes = fetch(from, &key)?;
            let node = Node::decode(&bytes)
                .map_err(|e| Error::corrupt(&from.describe(), &key, format!("not a node: {e}")))?;
            for e in &node.entries {
                if let Some(t) = e.tree
                    && seen.insert(t)
                {
                    next.push(t);
                }
                if let Entry::File { hash, secret, .. } = &e.entry {
                    let k = if *secret {
                        let r = opts.recipient.ok_or_else(|| {
                            Error::Invalid(format!(
                                "generation {} has secret files ({} among them); they are published only encrypted to the host's ssh key: give --recipient",
                                id.short(),
                                e.name
                            ))
                        })?;
                        layout::secret(r, hash)
                    } else {
                        layout::object(hash)
                    };
                    if seen_contents.insert(k.clone()) {
                        contents.push(k);
                    }
                }
            }
            if !here {
                missing.push((key, bytes));
            }
        }
        missing_levels.push(missing);
        level = next;
    }

    if let Some(r) = opts.packages {
        for h in &r.objects {
            let k = layout::object(h);
            if seen_contents.insert(k.clone()) {
                contents.push(k);
            }
        }
    }
    let mut moved = Moved::default();
    let mut need = Vec::new();
    for chunk in contents.chunks(HAS_BATCH) {
        let present = has_all(dst, chunk)?;
        for (k, here) in chunk.iter().zip(present) {
            if here {
                moved.objects_present += 1;
            } else {
                need.push(k.clone());
            }
        }
    }

    // Secrets first, one at a time: one the destination cannot decrypt
    // (the wrong host) fails the sync before anything else is written.
    need.sort_by_key(|k| !k.starts_with("secrets/"));
    let split = need.partition_point(|k| k.starts_with("secrets/"));
    let (secrets, public) = need.split_at(split);
    opts.progress.start("objects", need.len() as u64);
    for key in secrets {
        let n = copy_one(src, dst, key)?;
        moved.objects += 1;
        moved.secrets += 1;
        moved.bytes += n;
        opts.progress.advance(1);
        hit(opts.fault, Step::Objects, moved.objects);
    }
    // The rest by several workers, so that a remote's latency overlaps;
    // one when a crash test names a step, so that the count is exact.
    let workers = if opts.fault.is_some() { 1 } else { WORKERS };
    if workers == 1 {
        for key in public {
            moved.bytes += copy_one(src, dst, key)?;
            moved.objects += 1;
            opts.progress.advance(1);
            hit(opts.fault, Step::Objects, moved.objects);
        }
    } else {
        let (objects, bytes) = copy_parallel(src, dst, public, workers, opts.progress)?;
        moved.objects += objects;
        moved.bytes += bytes;
    }
    opts.progress.finish();
    // Deepest first: a node arrives after every node under it.
    for level in missing_levels.iter().rev() {
        for (key, bytes) in level {
            dst.put(key, bytes)?;
            moved.nodes += 1;
            moved.bytes += bytes.len() as u64;
            hit(opts.fault, Step::Nodes, moved.nodes);
        }
    }
    if let Some(r) = opts.packages {
        let key = layout::packages(&r.hash);
        if !has_all(dst, std::slice::from_ref(&key))?[0] {
            dst.put(&key, &r.bytes)?;
            moved.bytes += r.bytes.len() as u64;
        }
    }
    if !manifest_present {
        dst.put(&mkey, &mbytes)?;
        moved.manifests = 1;
        moved.bytes += mbytes.len() as u64;
    }
    hit(opts.fault, Step::Manifest, moved.manifests);
    Ok(moved)
}

/// How many objects move at once outside crash tests.
pub const WORKERS: usize = 8;

/// Moves one key; returns the bytes moved.
fn copy_one(src: &dyn Transport, dst: &dyn Transport, key: &str) -> Result<u64, Error> {
    let bytes = fetch(src, key)?;
    dst.put(key, &bytes)?;
    Ok(bytes.len() as u64)
}

/// Moves `keys` with `workers` threads; stops at the first error (the
/// others finish the key they hold). Returns objects and bytes moved.
fn copy_parallel(
    src: &dyn Transport,
    dst: &dyn Transport,
    keys: &[String],
    workers: usize,
    progress: &dyn Progress,
) -> Result<(u64, u64), Error> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let (objects, bytes) = (AtomicU64::new(0), AtomicU64::new(0));
    let failed: Mutex<Option<Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..workers.min(keys.len()) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(key) = keys.get(i) else { break };
                    // A worker's panic poisons nothing it half-changed.
                    let mut f = failed.lock().unwrap_or_else(|e| e.into_inner());
                    if f.is_some() {
                        break;
                    }
                    drop(f);
                    match copy_one(src, dst, key) {
                        Ok(n) => {
                            objects.fetch_add(1, Ordering::Relaxed);
                            bytes.fetch_add(n, Ordering::Relaxed);
                            progress.advance(1);
                        }
                        Err(e) => {
                            f = failed.lock().unwrap_or_else(|e| e.into_inner());
                            f.get_or_insert(e);
                            break;
                        }
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        Some(e) => Err(e),
        None => Ok((objects.into_inner(), bytes.into_inner())),
    }
}

/// Which of `keys` `t` has, asked in batches of [`HAS_BATCH`].
pub fn has_all(t: &dyn Transport, keys: &[String]) -> Result<Vec<bool>, Error> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(HAS_BATCH) {
        let got = t.has(chunk)?;
        if got.len() != chunk.len() {
            return Err(Error::remote(
                &t.describe(),
                &chunk[0],
                format!("answered {} of {} keys asked", got.len(), chunk.len()),
            ));
        }
        out.extend(got);
    }
    Ok(out)
}

/// The bytes under `key`, checked against its hash; missing is an error
/// naming the remote and the key.
pub fn fetch(t: &dyn Transport, key: &str) -> Result<Vec<u8>, Error> {
    let name = t.describe();
    let bytes = t
        .get(key)?
        .ok_or_else(|| Error::remote(&name, key, "missing (the remote is incomplete)"))?;
    layout::verify(&name, key, &bytes)?;
    Ok(bytes)
}
