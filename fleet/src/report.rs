//! Pull agents' reports: after each `sysgen pull --report`, a host writes
//! what it runs (active generation, drift found by verify, its last
//! failure) to the remote under `reports/HOST`, and `sysgen fleet status
//! REMOTE` reads them all back into one summary.
//!
//! A report is a small JSON document, one mutable key per host, replaced
//! through [`Transport::swap`] (each host is the only writer of its own
//! key, so a lost race is only another run of the same host; it is
//! retried). Reports are not signed: they inform, nothing is ever pulled
//! or switched because of one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sysgen_remote::{Swap, Transport};

/// The prefix of every report's key.
pub const PREFIX: &str = "reports/";
/// 1: the first format.
const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    pub host: String,
    /// When the host wrote it (seconds since the epoch, its clock).
    pub at: i64,
    /// The ref it pulled (`hosts/web-01`, `channels/prod`).
    pub reference: String,
    pub active: Option<Active>,
    /// The paths verify found changed on the root, each with what differs.
    pub drift: Vec<String>,
    /// The last pull or switch that failed, if the last run did.
    pub failure: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Active {
    pub number: u64,
    pub id: String,
}

impl Report {
    pub fn new(host: &str, at: i64, reference: &str) -> Report {
        Report {
            version: VERSION,
            host: host.to_owned(),
            at,
            reference: reference.to_owned(),
            active: None,
            drift: Vec::new(),
            failure: None,
        }
    }
}

/// The key of `host`'s report. Host names are checked by the caller
/// (no `/`, no `..`), as every key is.
pub fn key(host: &str) -> String {
    format!("{PREFIX}{host}")
}

/// Writes (replaces) `report` under `reports/HOST`.
pub fn write(t: &dyn Transport, report: &Report) -> Result<(), sysgen_remote::Error> {
    let k = key(&report.host);
    let bytes = serde_json::to_vec_pretty(report).map_err(|e| sysgen_remote::Error::Remote {
        remote: t.describe(),
        key: k.clone(),
        message: format!("encoding the report: {e}"),
    })?;
    let mut expected = t.get(&k)?;
    for _ in 0..5 {
        match t.swap(&k, expected.as_deref(), &bytes)? {
            Swap::Done => return Ok(()),
            Swap::Lost(now) => expected = now,
        }
    }
    Err(sysgen_remote::Error::Remote {
        remote: t.describe(),
        key: k,
        message: "the report kept changing under this host's writes; is another host writing under the same name?".into(),
    })
}

/// Every host's report, with the ones that could not be read named.
#[derive(Debug, Default, Serialize)]
pub struct Fleet {
    pub hosts: Vec<Report>,
    /// Keys under `reports/` that hold no readable report, and why.
    pub unreadable: BTreeMap<String, String>,
}

impl Fleet {
    /// How many hosts run each generation (by id; `none` for none).
    pub fn by_generation(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for r in &self.hosts {
            let id = r
                .active
                .as_ref()
                .map_or("none".to_owned(), |a| a.id.clone());
            *m.entry(id).or_insert(0) += 1;
        }
        m
    }
}

/// Reads every report under `reports/`.
pub fn collect(t: &dyn Transport) -> Result<Fleet, sysgen_remote::Error> {
    let mut fleet = Fleet::default();
    for k in t.list(PREFIX)? {
        let Some(bytes) = t.get(&k)? else {
            // Listed, then gone: a report being replaced on a store
            // without atomic replacement. Not an error of this fleet.
            continue;
        };
        match serde_json::from_slice::<Report>(&bytes) {
            Ok(r) if r.version == VERSION && key(&r.host) == k => fleet.hosts.push(r),
            Ok(r) if r.version != VERSION => {
                fleet
                    .unreadable
                    .insert(k, format!("report version {} is not {VERSION}", r.version));
            }
            Ok(r) => {
                fleet
                    .unreadable
                    .insert(k, format!("the report names another host, {:?}", r.host));
            }
            Err(e) => {
                fleet.unreadable.insert(k, format!("not a report: {e}"));
            }
        }
    }
    fleet.hosts.sort_by(|a, b| a.host.cmp(&b.host));
    Ok(fleet)
}
