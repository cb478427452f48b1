//! The WASM runner: process_lib's message loop around [`Driver`]. Everything with a decision
//! in it lives in the pure driver and in [`crate::host::execute`]; this file only converts
//! values and calls the kernel.
//!
//! Clocks: `wall` is the system clock; `mono` is `std::time::Instant` (WASI's monotonic
//! clock) measured from process start, so a wall clock that steps back never stalls a timer.
//!
//! Storage: keyed records live in a table of the node's `sqlite:distro:sys` database
//! `<process>` of our package (the manifest requests `sqlite:distro:sys`); keys are stored
//! hex-encoded (ordered like the bytes), values base64. A batch is one sqlite transaction,
//! written with blocking requests before the runner carries out the next call.

use crate::api::ApiError;
use crate::driver::{Driver, KernelEvent};
use crate::host::{execute, Host};
use crate::ids::Address;
use crate::service::{Millis, Now, Records, SendErrorKind, Service};
use base64::Engine as _;
use hyperware_process_lib as pl;
use hyperware_process_lib::sqlite::Sqlite;
use std::hash::{BuildHasher, Hasher};
use std::time::Instant;

const DB_TIMEOUT_S: u64 = 30;

fn wall_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A random seed from the host (std's RandomState is seeded from WASI random).
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(wall_ms());
    h.finish()
}

fn to_ours(a: &pl::Address) -> Result<Address, ApiError> {
    Address::parse(&a.to_string())
        .map_err(|e| ApiError::bad_request(format!("unusable source address: {e}")))
}

fn from_kernel(a: &pl::Address) -> Address {
    Address::from_kernel(a.node(), a.process(), a.package(), a.publisher())
}

fn to_pl(a: &Address) -> pl::Address {
    pl::Address::new(
        a.node.as_str(),
        pl::ProcessId::new(
            Some(&a.process.process),
            &a.process.package,
            &a.process.publisher,
        ),
    )
}

struct NodeHost {
    db: Option<Sqlite>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl NodeHost {
    fn open(our: &pl::Address) -> NodeHost {
        let db = match pl::sqlite::open(our.package_id(), our.process(), Some(DB_TIMEOUT_S)) {
            Ok(db) => db,
            Err(e) => {
                // Running without durable storage would acknowledge writes it cannot keep:
                // stop here with the reason (Hyperware restarts the process with backoff).
                panic!(
                    "storage unavailable (sqlite:distro:sys): {e}; the package manifest must \
                     request the \"sqlite:distro:sys\" capability"
                );
            }
        };
        if let Err(e) = db.write(
            "CREATE TABLE IF NOT EXISTS records (k TEXT PRIMARY KEY, v TEXT NOT NULL)".into(),
            vec![],
            None,
        ) {
            panic!("storage: creating the records table failed: {e}");
        }
        NodeHost { db: Some(db) }
    }

    fn load(&self) -> Records {
        let mut out = Records::new();
        let Some(db) = &self.db else { return out };
        match db.read("SELECT k, v FROM records".into(), vec![]) {
            Ok(rows) => {
                for row in rows {
                    let k = row
                        .get("k")
                        .and_then(|v| v.as_str())
                        .and_then(|s| hex::decode(s).ok());
                    let v = row
                        .get("v")
                        .and_then(|v| v.as_str())
                        .and_then(|s| b64().decode(s).ok());
                    if let (Some(k), Some(v)) = (k, v) {
                        out.insert(k, v);
                    }
                }
            }
            Err(e) => pl::print_to_terminal(0, &format!("storage: loading records failed: {e}")),
        }
        out
    }
}

impl Host for NodeHost {
    fn send_request(
        &mut self,
        target: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
    ) {
        let mut req = pl::Request::to(to_pl(target)).body(body);
        if let Some(b) = blob {
            req = req.blob_bytes(b);
        }
        if let Some(t) = expects_response {
            req = req.expects_response(t);
        }
        if let Some(c) = context {
            req = req.context(c);
        }
        if let Err(e) = req.send() {
            pl::print_to_terminal(0, &format!("send to {target} failed to build: {e}"));
        }
    }

    fn send_response(&mut self, body: Vec<u8>, blob: Option<Vec<u8>>) {
        let mut r = pl::Response::new().body(body);
        if let Some(b) = blob {
            r = r.blob_bytes(b);
        }
        if let Err(e) = r.send() {
            pl::print_to_terminal(0, &format!("response failed to build: {e}"));
        }
    }

    fn store(&mut self, ops: &[(Vec<u8>, Option<Vec<u8>>)], _forced: bool) -> Result<(), String> {
        let Some(db) = &self.db else {
            return Err("no database".into());
        };
        let tx = db.begin_tx().map_err(|e| e.to_string())?;
        for (k, v) in ops {
            let key = serde_json::Value::String(hex::encode(k));
            match v {
                Some(v) => db.write(
                    "INSERT OR REPLACE INTO records (k, v) VALUES (?, ?)".into(),
                    vec![key, serde_json::Value::String(b64().encode(v))],
                    Some(tx),
                ),
                None => db.write(
                    "DELETE FROM records WHERE k = ?".into(),
                    vec![key],
                    Some(tx),
                ),
            }
            .map_err(|e| e.to_string())?;
        }
        db.commit_tx(tx).map_err(|e| e.to_string())
    }

    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(db) = &self.db else {
            return Err("no database".into());
        };
        let rows = db
            .read(
                "SELECT v FROM records WHERE k = ?".into(),
                vec![serde_json::Value::String(hex::encode(key))],
            )
            .map_err(|e| e.to_string())?;
        Ok(rows
            .first()
            .and_then(|r| r.get("v"))
            .and_then(|v| v.as_str())
            .and_then(|s| b64().decode(s).ok()))
    }

    fn set_state(&mut self, state: &[u8]) {
        pl::set_state(state);
    }

    fn print(&mut self, verbosity: u8, message: &str) {
        pl::print_to_terminal(verbosity, message);
    }
}

/// Serve the package's page (`pkg/ui`, built from `ui/` by `cargo xtask build`) under this
/// process's path with process_lib's `serve_ui`, behind the node's login. Keep the returned
/// server for the life of the process. A package without a page only logs that.
pub fn serve_ui() -> pl::http::server::HttpServer {
    use pl::http::server::{HttpBindingConfig, HttpServer};
    let mut server = HttpServer::new(5);
    match server.serve_ui("ui", vec!["/"], HttpBindingConfig::default()) {
        Ok(()) => pl::print_to_terminal(2, "serving the page (pkg/ui)"),
        Err(e) => pl::print_to_terminal(1, &format!("no page served: {e}")),
    }
    server
}

/// Run `core` as this process until the process is killed.
pub fn run<S: Service>(our: pl::Address, make: impl FnOnce(Address) -> S) {
    let started = Instant::now();
    let now = || Now {
        mono: started.elapsed().as_millis() as Millis,
        wall: wall_ms(),
    };
    let mut host = NodeHost::open(&our);
    let records = host.load();
    let ours = from_kernel(&our);
    let mut driver = Driver::new(ours.clone(), make(ours));
    let persisted = pl::get_state();
    let mut calls = driver.start(now(), persisted, records, seed());
    calls.extend(driver.web_bindings(now()));
    if let Err(e) = execute(&mut driver, &mut host, now(), calls) {
        panic!("storage write failed at start: {e}");
    }
    loop {
        let message = pl::await_message();
        let blob = pl::get_blob().map(|b| b.bytes);
        let event = match message {
            Ok(pl::Message::Request {
                source,
                expects_response,
                body,
                ..
            }) => match to_ours(&source) {
                Ok(source) => KernelEvent::Request {
                    source,
                    expects_response,
                    body,
                    blob,
                },
                Err(e) => {
                    let calls = driver.reject(expects_response.is_some(), e);
                    let _ = execute(&mut driver, &mut host, now(), calls);
                    continue;
                }
            },
            Ok(pl::Message::Response {
                source,
                body,
                context,
                ..
            }) => KernelEvent::Response {
                // Answers to our own requests: the kernel vouches for the address.
                source: from_kernel(&source),
                body,
                blob,
                context,
            },
            Err(e) => {
                let kind = if e.kind().is_offline() {
                    SendErrorKind::Offline
                } else {
                    SendErrorKind::Timeout
                };
                KernelEvent::SendError {
                    kind,
                    target: from_kernel(e.target()),
                    context: e.context,
                }
            }
        };
        let t = now();
        let calls = driver.step(t, event);
        if let Err(e) = execute(&mut driver, &mut host, t, calls) {
            // What the core believes is now ahead of the disk: restart from the disk
            // (on_exit = Restart) rather than go on and tell anyone it is done.
            panic!("storage write failed: {e}; restarting from durable state");
        }
    }
}
