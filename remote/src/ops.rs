//! Push, pull and copy: a generation's closure, its signature and a ref.

use serde::Serialize;
use sysgen_generations::GenerationId;
use sysgen_generations::Progress;
use sysgen_generations::db::AcceptedRef;

use crate::debs::Record;
use crate::local::StateTransport;
use crate::secret::Recipient;
use crate::sign::{HISTORY, HistoryEntry, Key, RefBody, SignedRef, verify_manifest};
use crate::sync::{Fault, Side, Step, SyncOptions, fetch, hit, sync_generation};
use crate::{Error, Moved, Swap, Transport, layout};

pub struct PushRequest<'a> {
    pub generation: GenerationId,
    /// `hosts/NAME`, `roles/NAME` or `channels/NAME`, checked with
    /// [`layout::ref_key`]; `None`: only the closure and its signature.
    pub ref_name: Option<&'a str>,
    pub key: &'a Key,
    pub recipient: Option<&'a Recipient>,
    pub now: i64,
    pub progress: &'a dyn Progress,
    pub fault: Option<Fault>,
}

#[derive(Debug, Serialize)]
pub struct PushOutcome {
    pub generation: String,
    #[serde(rename = "ref")]
    pub ref_name: Option<String>,
    /// The ref's new sequence number.
    pub seq: Option<u64>,
    pub moved: Moved,
}

/// Publishes a generation of the local state `src` to `dst`: its closure
/// (secrets encrypted to `recipient`), the manifest's signature, then the
/// ref, moved by compare-and-swap from what it held.
pub fn push(
    src: &StateTransport,
    dst: &dyn Transport,
    req: &PushRequest<'_>,
) -> Result<PushOutcome, Error> {
    let ref_key = req.ref_name.map(layout::ref_key).transpose()?;
    let rid = req.recipient.map(|r| r.id.as_str());
    let debs = crate::debs::record(&src.lock(), &req.generation)?;
    let moved = sync_generation(
        src,
        dst,
        &req.generation,
        &SyncOptions {
            recipient: rid,
            read_nodes_from: Side::Source,
            packages: debs.as_ref(),
            progress: req.progress,
            fault: req.fault,
        },
    )?;
    dst.put(
        &layout::signature(&req.generation, &req.key.public_hex()),
        &req.key.sign_manifest(&req.generation)?,
    )?;
    let mut seq = None;
    if let Some(rk) = &ref_key {
        let old_bytes = dst.get(rk)?;
        let old = match &old_bytes {
            None => None,
            Some(b) => Some(SignedRef::decode(&dst.describe(), rk, b).map_err(|e| {
                Error::remote(
                    &dst.describe(),
                    rk,
                    format!("holds something push will not overwrite ({e}); remove it by hand if it is garbage"),
                )
            })?),
        };
        let mut history = Vec::new();
        if let Some(o) = &old {
            history.push(HistoryEntry {
                seq: o.body.seq,
                time: o.body.time,
                generation: o.body.generation.clone(),
            });
            history.extend(o.body.history.iter().take(HISTORY - 1).cloned());
        }
        let body = RefBody {
            name: rk.clone(),
            seq: old.as_ref().map_or(1, |o| o.body.seq + 1),
            time: req.now,
            generation: req.generation.0.to_hex(),
            recipient: rid.map(str::to_owned),
            packages: debs.as_ref().map(|d| d.hash.to_hex()),
            history,
        };
        let s = body.seq;
        let signed = req.key.sign_ref(body)?;
        hit(req.fault, Step::Ref, 0);
        match dst.swap(rk, old_bytes.as_deref(), &signed.encode()?)? {
            Swap::Done => seq = Some(s),
            Swap::Lost(_) => {
                return Err(Error::Lost {
                    remote: dst.describe(),
                    key: rk.clone(),
                });
            }
        }
    }
    Ok(PushOutcome {
        generation: req.generation.0.to_hex(),
        ref_name: ref_key,
        seq,
        moved,
    })
}

pub struct PullRequest<'a> {
    pub ref_name: &'a str,
    /// The public keys this host trusts (`ed25519:<hex>`).
    pub trusted: &'a [String],
    pub now: i64,
    pub progress: &'a dyn Progress,
    pub fault: Option<Fault>,
}

#[derive(Debug, Serialize)]
pub struct PullOutcome {
    pub generation: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub seq: u64,
    pub signed_by: String,
    pub moved: Moved,
}

/// Reads and checks a ref of `src`: signed by a trusted key, its own name
/// inside, and its manifest signed too.
/// A ref read and checked, with the manifest signature it was checked by.
struct Checked {
    doc: SignedRef,
    /// The ref as the remote holds it (copied as it is).
    bytes: Vec<u8>,
    id: GenerationId,
    sig_key: String,
    sig: Vec<u8>,
    /// The `.deb` record the ref names, fetched and checked.
    debs: Option<Record>,
}

fn checked_ref(src: &dyn Transport, rk: &str, trusted: &[String]) -> Result<Checked, Error> {
    let name = src.describe();
    let bytes = src
        .get(rk)?
        .ok_or_else(|| Error::Invalid(format!("{name}: {rk}: no such ref on the remote")))?;
    let doc = SignedRef::decode(&name, rk, &bytes)?;
    doc.verify(&name, rk, trusted)?;
    if doc.body.name != rk {
        return Err(Error::refused(
            &name,
            rk,
            format!(
                "the signed ref names {:?}: a ref copied under another name",
                doc.body.name
            ),
        ));
    }
    let id = doc.generation(&name, rk)?;
    let key_hex = doc.key.trim_start_matches("ed25519:").to_ascii_lowercase();
    let sig_key = layout::signature(&id, &key_hex);
    let sig = src
        .get(&sig_key)?
        .ok_or_else(|| Error::refused(&name, &sig_key, "the generation's manifest is unsigned"))?;
    verify_manifest(&name, &sig_key, &sig, &id, trusted)?;
    let debs = match &doc.body.packages {
        None => None,
        Some(hex) => {
            let h = sysgen_store::Hash::from_hex(hex)
                .map_err(|_| Error::refused(&name, rk, "the packages record is not a hex hash"))?;
            let key = layout::packages(&h);
            Some(Record::parse(&name, &key, &fetch(src, &key)?)?)
        }
    };
    Ok(Checked {
        doc,
        bytes,
        id,
        sig_key,
        sig,
        debs,
    })
}

/// Fetches the generation a ref of `src` names into the local state `dst`,
/// after checking its signatures and that it is not older than the last
/// version of that ref this host accepted.
pub fn pull(
    src: &dyn Transport,
    dst: &StateTransport,
    req: &PullRequest<'_>,
) -> Result<PullOutcome, Error> {
    let rk = layout::ref_key(req.ref_name)?;
    let name = src.describe();
    let Checked {
        doc,
        id,
        sig_key,
        sig,
        debs,
        ..
    } = checked_ref(src, &rk, req.trusted)?;
    if let Some(a) = dst.lock().db.accepted_ref(&rk)? {
        if a.seq > doc.body.seq {
            return Err(Error::refused(
                &name,
                &rk,
                format!(
                    "replayed: version {} is older than version {} this host accepted already",
                    doc.body.seq, a.seq
                ),
            ));
        }
        if a.seq == doc.body.seq && a.generation != id {
            return Err(Error::refused(
                &name,
                &rk,
                format!(
                    "version {} names generation {}, but this host accepted version {} naming {}",
                    doc.body.seq,
                    id.short(),
                    a.seq,
                    a.generation.short()
                ),
            ));
        }
    }
    let moved = sync_generation(
        src,
        dst,
        &id,
        &SyncOptions {
            recipient: doc.body.recipient.as_deref(),
            read_nodes_from: Side::Destination,
            packages: debs.as_ref(),
            progress: req.progress,
            fault: req.fault,
        },
    )?;
    dst.put(&sig_key, &sig)?;
    dst.lock().db.accept_ref(
        &rk,
        &AcceptedRef {
            seq: doc.body.seq,
            generation: id,
            at: req.now,
        },
    )?;
    Ok(PullOutcome {
        generation: id.0.to_hex(),
        ref_name: rk,
        seq: doc.body.seq,
        signed_by: doc.key,
        moved,
    })
}

#[derive(Debug, Serialize)]
pub struct CopyOutcome {
    pub generation: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub seq: u64,
    /// False when the destination held this version already.
    pub moved_ref: bool,
    pub moved: Moved,
}

/// Copies a ref and its generation from `src` to `dst` as they are (the
/// signature travels; secrets stay encrypted). The ref must be signed by
/// a key of `trusted`, and newer than what `dst` holds.
pub fn copy(
    src: &dyn Transport,
    dst: &dyn Transport,
    ref_name: &str,
    trusted: &[String],
    progress: &dyn Progress,
) -> Result<CopyOutcome, Error> {
    let rk = layout::ref_key(ref_name)?;
    let Checked {
        doc,
        bytes,
        id,
        sig_key,
        sig,
        debs,
    } = checked_ref(src, &rk, trusted)?;
    let old = dst.get(&rk)?;
    if let Some(o) = &old {
        let theirs = SignedRef::decode(&dst.describe(), &rk, o)?;
        if theirs.body.seq > doc.body.seq
            || (theirs.body.seq == doc.body.seq && theirs.body.generation != doc.body.generation)
        {
            return Err(Error::refused(
                &dst.describe(),
                &rk,
                format!(
                    "holds version {} of the ref; the source's version {} would move it back",
                    theirs.body.seq, doc.body.seq
                ),
            ));
        }
    }
    let moved = sync_generation(
        src,
        dst,
        &id,
        &SyncOptions {
            recipient: doc.body.recipient.as_deref(),
            read_nodes_from: Side::Destination,
            packages: debs.as_ref(),
            progress,
            fault: None,
        },
    )?;
    dst.put(&sig_key, &sig)?;
    let moved_ref = old.as_deref() != Some(bytes.as_slice());
    if moved_ref {
        match dst.swap(&rk, old.as_deref(), &bytes)? {
            Swap::Done => {}
            Swap::Lost(_) => {
                return Err(Error::Lost {
                    remote: dst.describe(),
                    key: rk,
                });
            }
        }
    }
    Ok(CopyOutcome {
        generation: id.0.to_hex(),
        ref_name: rk,
        seq: doc.body.seq,
        moved_ref,
        moved,
    })
}
