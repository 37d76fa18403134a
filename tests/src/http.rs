//! A small HTTP(S) server for download tests, on 127.0.0.1 only.
//!
//! Plain `std::net` (and rustls for HTTPS), so that a test can make it
//! misbehave on purpose: announce more bytes than it sends, then hang up.
//! It serves one connection at a time, plays an HTTP CONNECT proxy when
//! asked (ureq tunnels http:// URLs too), records every request line, and
//! stops by itself when dropped or after two minutes (or the lifetime a
//! longer test asks for).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the server answers on a path.
#[derive(Clone)]
pub enum Route {
    /// 200 with the whole body.
    Full(Vec<u8>),
    /// 200 announcing the whole body's length, half of it sent, then the
    /// connection closed: a server that dies halfway.
    Half(Vec<u8>),
    /// An error status with a short body.
    Status(u16),
}

type Routes = Arc<Mutex<HashMap<String, Route>>>;

/// How long a server runs unless dropped first: a test that forgot it
/// does not leave it listening.
const LIFETIME: Duration = Duration::from_secs(120);

pub struct Server {
    pub addr: SocketAddr,
    routes: Routes,
    /// Every request line received, in order.
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// "http" or "https".
    scheme: &'static str,
}

impl Server {
    /// A plain HTTP server.
    pub fn start() -> Server {
        Server::spawn(None, LIFETIME)
    }

    /// A plain HTTP server that stops by itself after `lifetime` (for a
    /// test that runs longer than the default two minutes).
    pub fn start_lasting(lifetime: Duration) -> Server {
        Server::spawn(None, lifetime)
    }

    /// An HTTPS server for `localhost` and 127.0.0.1, with a certificate
    /// the CA of `pki` signed.
    pub fn start_tls(pki: &TestPki) -> Server {
        Server::spawn(Some(pki.server_config()), LIFETIME)
    }

    fn spawn(tls: Option<Arc<rustls::ServerConfig>>, lifetime: Duration) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("local addr");
        let routes: Routes = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (r, q, st) = (routes.clone(), requests.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + lifetime;
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).expect("blocking");
                        conn.set_read_timeout(Some(Duration::from_secs(10)))
                            .expect("timeout");
                        match &tls {
                            Some(config) => {
                                let Ok(session) = rustls::ServerConnection::new(config.clone())
                                else {
                                    continue;
                                };
                                serve(rustls::StreamOwned::new(session, conn), &r, &q);
                            }
                            None => serve(conn, &r, &q),
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        Server {
            addr,
            routes,
            requests,
            stop,
            thread: Some(thread),
            scheme,
        }
    }

    pub fn route(&self, path: &str, r: Route) {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_owned(), r);
    }

    /// The URL of `path` on this server, by address (`http://127.0.0.1:N/…`).
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// The request lines received so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests").clone()
    }

    pub fn hits(&self) -> usize {
        self.requests().len()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            // A panic in the server thread has already failed the test's
            // requests; nothing more to report here.
            let _ = t.join();
        }
    }
}

/// Answers one request; after a `CONNECT` (a proxy's tunnel), says yes and
/// answers the request that comes through the tunnel on the same
/// connection. Write errors end the connection: the client hung up.
fn serve<S: Read + Write>(conn: S, routes: &Routes, requests: &Mutex<Vec<String>>) {
    let mut reader = BufReader::new(conn);
    loop {
        let Some(line) = read_head(&mut reader) else {
            return;
        };
        requests.lock().expect("requests").push(line.clone());
        let out = reader.get_mut();
        if line.starts_with("CONNECT ") {
            if out
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .is_err()
            {
                return;
            }
            continue;
        }
        let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
        let route = routes.lock().expect("routes").get(&path).cloned();
        let _ = respond(out, route).and_then(|()| out.flush());
        return;
    }
}

/// The request line of the next request, its headers read and dropped.
fn read_head<S: Read>(reader: &mut BufReader<S>) -> Option<String> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    loop {
        let mut h = String::new();
        match reader.read_line(&mut h) {
            Ok(0) | Err(_) => break,
            Ok(_) if h == "\r\n" => break,
            Ok(_) => {}
        }
    }
    Some(line.trim_end().to_owned())
}

fn respond<S: Write>(out: &mut S, route: Option<Route>) -> std::io::Result<()> {
    let head = |status: &str, len: usize| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n")
    };
    match route {
        Some(Route::Full(body)) => {
            out.write_all(head("200 OK", body.len()).as_bytes())?;
            out.write_all(&body)
        }
        Some(Route::Half(body)) => {
            out.write_all(head("200 OK", body.len()).as_bytes())?;
            out.write_all(&body[..body.len() / 2])
        }
        Some(Route::Status(code)) => {
            out.write_all(head(&format!("{code} Oops"), 4).as_bytes())?;
            out.write_all(b"oops")
        }
        None => {
            out.write_all(head("404 Not Found", 4).as_bytes())?;
            out.write_all(b"none")
        }
    }
}

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, made with the openssl command in a scratch directory.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

impl TestPki {
    /// `None` when the openssl command is missing.
    pub fn make() -> Option<TestPki> {
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let ext = d.join("ext.cnf");
        std::fs::write(
            &ext,
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write ext");
        let steps: [&[&str]; 3] = [
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "2",
                "-subj",
                "/CN=sysgen test CA",
            ],
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
        ];
        for args in steps {
            let out = match Command::new("openssl").args(args).current_dir(d).output() {
                Ok(o) => o,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
                Err(e) => panic!("openssl: {e}"),
            };
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Some(TestPki { dir })
    }

    /// The CA certificate, to trust (`SSL_CERT_FILE`).
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let path = |n: &str| -> PathBuf { self.dir.path().join(n) };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path("server.pem"))
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(path("server.key")).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        Arc::new(config)
    }
}
