//! `http://` and `https://`: a read-only remote, any web server publishing
//! a directory a `file://` push wrote (the same layout). `has` asks with
//! HEAD, `get` with GET; 404 is absence. Writing is refused.

use std::time::Duration;

use ureq::Agent;

use crate::layout::check_key;
use crate::{Error, Swap, Transport};

/// Objects are a root's files; no single one is expected over this.
const MAX_BODY: u64 = 16 * 1024 * 1024 * 1024;

pub struct HttpTransport {
    url: String,
    base: String,
    agent: Agent,
}

impl HttpTransport {
    pub fn open(url: &str) -> Result<HttpTransport, Error> {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Ok(HttpTransport {
            url: url.to_owned(),
            base: url.trim_end_matches('/').to_owned(),
            agent,
        })
    }

    fn url_of(&self, key: &str) -> Result<String, Error> {
        check_key(key)?;
        Ok(format!("{}/{key}", self.base))
    }

    fn read_only(&self, key: &str) -> Error {
        Error::remote(
            &self.url,
            key,
            "an http(s) remote is read-only; push to file://, ssh:// or s3://",
        )
    }
}

impl Transport for HttpTransport {
    fn describe(&self) -> String {
        self.url.clone()
    }

    fn has(&self, keys: &[String]) -> Result<Vec<bool>, Error> {
        keys.iter()
            .map(|k| {
                let resp = self
                    .agent
                    .head(&self.url_of(k)?)
                    .call()
                    .map_err(|e| Error::remote(&self.url, k, e))?;
                match resp.status().as_u16() {
                    200..=299 => Ok(true),
                    404 | 410 => Ok(false),
                    s => Err(Error::remote(&self.url, k, format!("HTTP status {s}"))),
                }
            })
            .collect()
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        let mut resp = self
            .agent
            .get(&self.url_of(key)?)
            .call()
            .map_err(|e| Error::remote(&self.url, key, e))?;
        match resp.status().as_u16() {
            200..=299 => resp
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map(Some)
                .map_err(|e| Error::remote(&self.url, key, e)),
            404 | 410 => Ok(None),
            s => Err(Error::remote(&self.url, key, format!("HTTP status {s}"))),
        }
    }

    fn put(&self, key: &str, _bytes: &[u8]) -> Result<(), Error> {
        Err(self.read_only(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, Error> {
        Err(Error::remote(
            &self.url,
            prefix,
            "an http(s) remote cannot list its keys",
        ))
    }

    fn swap(&self, key: &str, _expected: Option<&[u8]>, _new: &[u8]) -> Result<Swap, Error> {
        Err(self.read_only(key))
    }
}
