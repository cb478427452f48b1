//! The public face: build nodes, install packages, play apps, move virtual time.

use crate::bindings::wit::{
    Address, Capability, LazyLoadBlob, OnExit, ProcessId, Request, SendErrorKind,
};
use crate::host::{self, Body, Runtime, Script, Shared};
use crate::http_server::{HttpReply, HttpServer, WsFrame, HTTP_TIMEOUT_S};
use crate::ids::{self, messaging_cap, network_cap};
use crate::kernel::{
    app_response, AppMessage, AppSpec, Crash, EmuConfig, LogLine, Node, Proc, ProcKind, Reply,
    World,
};
use crate::package::{manifest_cap, OnExitSpec, Package};
use crate::sqlite::SqliteModule;
use crate::vfs::{drive_cap, Vfs};
use anyhow::{anyhow, bail, Context as _, Result};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use wasmtime::component::Component;

/// The process id of the app [`Emulator::boot`] installs on every node.
pub const DEFAULT_APP: &str = "app:emu:p2p-patterns.os";

/// Several Hyperware nodes in one process, running real components.
pub struct Emulator {
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    /// Compiled components by (node, process id).
    components: Mutex<HashMap<(String, String), Component>>,
    /// Rust-written processes (host unit tests) by (node, process id).
    scripts: Mutex<HashMap<(String, String), Script>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    dir: PathBuf,
    cache_dir: Mutex<Option<PathBuf>>,
}

fn unique_dir() -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "p2p-emu-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ))
}

impl Emulator {
    pub fn new(cfg: EmuConfig) -> Result<Emulator> {
        let rt = host::runtime()?;
        let dir = unique_dir();
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Emulator {
            shared: Arc::new(Shared {
                world: Mutex::new(World::new(cfg)),
                sched: Condvar::new(),
                clock: Arc::new(AtomicU64::new(0)),
            }),
            rt,
            components: Mutex::new(HashMap::new()),
            scripts: Mutex::new(HashMap::new()),
            threads: Mutex::new(Vec::new()),
            dir,
            cache_dir: Mutex::new(None),
        })
    }

    /// Nodes `names`, each with `package` installed and the [`DEFAULT_APP`] granting every
    /// process of the package messaging. Compiled components are cached next to the zip.
    pub fn boot(cfg: EmuConfig, zip: &Path, names: &[&str]) -> Result<Emulator> {
        let package = Package::from_zip_file(zip)?;
        let emu = Emulator::new(cfg)?;
        if let Some(dir) = zip.parent() {
            emu.set_cache_dir(dir.join("emu-cache"));
        }
        let ours: Vec<String> = package
            .manifest
            .iter()
            .map(|e| package.process_id(&e.process_name).to_string())
            .collect();
        for name in names {
            emu.add_node(name)?;
            emu.install(name, &package)?;
            emu.add_app(name, DEFAULT_APP, AppSpec::granting(&ours))?;
        }
        Ok(emu)
    }

    /// Where compiled components are kept between runs.
    pub fn set_cache_dir(&self, dir: PathBuf) {
        *self.cache_dir.lock().unwrap() = Some(dir);
    }

    fn lock(&self) -> MutexGuard<'_, World> {
        self.shared.lock()
    }

    /// Add a node, up from now (its networking comes up `boot_offline_ms` later).
    pub fn add_node(&self, name: &str) -> Result<()> {
        if name.is_empty() || name.contains('@') || name == "our" {
            bail!("{name:?} is not a node name");
        }
        let mut w = self.lock();
        if w.nodes.contains_key(name) {
            bail!("node {name} exists already");
        }
        let node = Node {
            name: name.to_string(),
            up: true,
            incarnation: 1,
            net_ready_at: w.now + w.cfg.boot_offline_ms,
            group: 0,
            // Bundled processes the emulator plays: sign:sign:sys (not public, no
            // networking), holding messaging on itself only, as installed by Hyperdrive.
            procs: vec![Proc {
                id: ids::sign_pid(),
                kind: ProcKind::Builtin,
                public: false,
                caps: vec![messaging_cap(name, &ids::sign_pid())],
                life: None,
                stopped: false,
                backoff: None,
            }],
            state: BTreeMap::new(),
            sqlite: SqliteModule::new(self.dir.join(name).join("sqlite")),
            vfs: Vfs::default(),
            http: HttpServer::default(),
        };
        w.nodes.insert(name.to_string(), node);
        Ok(())
    }

    /// Install a package on a node as app-store does: first every process gets its
    /// requested capabilities (and `network` if it asks for networking), then, in manifest
    /// order, each one's grants are applied and it is started.
    pub fn install(&self, node: &str, package: &Package) -> Result<()> {
        let cache = self.cache_dir.lock().unwrap().clone();
        let mut compiled = Vec::new();
        for e in &package.manifest {
            let c = self
                .rt
                .component(package.wasm(e), cache.as_deref())
                .with_context(|| e.process_wasm_path.to_string())?;
            compiled.push(c);
        }
        let mut w = self.lock();
        if !w.nodes.contains_key(node) {
            bail!("no node {node}");
        }
        // app-store unpacks the zip into the package's drive `/<package>/pkg`, and every
        // process of the package may read and write it.
        let drive = format!("/{}/pkg", package.id());
        {
            let n = w.nodes.get_mut(node).expect("checked");
            for (name, bytes) in &package.files {
                n.vfs.write(&format!("{drive}/{name}"), bytes.clone());
            }
        }
        let vfs_addr = Address::new(node, ids::vfs_pid());
        for (e, c) in package.manifest.iter().zip(compiled) {
            let pid = package.process_id(&e.process_name);
            let on_exit = match &e.on_exit {
                OnExitSpec::None => OnExit::None,
                OnExitSpec::Restart => OnExit::Restart,
                OnExitSpec::Requests(v) => {
                    bail!("{pid}: on_exit Requests in a manifest ({v}) are not supported here")
                }
            };
            let mut caps = vec![messaging_cap(node, &pid)];
            if e.request_networking {
                caps.push(network_cap(node));
            }
            for kind in ["read", "write"] {
                caps.push(Capability {
                    issuer: vfs_addr.clone(),
                    params: drive_cap(kind, &drive),
                });
            }
            for v in &e.request_capabilities {
                let (_, cap) = manifest_cap(node, v).with_context(|| format!("{pid}"))?;
                if !caps.contains(&cap) {
                    caps.push(cap);
                }
            }
            w.end_life(node, &pid);
            let n = w.nodes.get_mut(node).expect("checked");
            n.procs.retain(|p| p.id != pid);
            n.procs.push(Proc {
                id: pid.clone(),
                kind: ProcKind::Wasm { on_exit },
                public: e.public,
                caps,
                life: None,
                stopped: false,
                backoff: None,
            });
            self.components
                .lock()
                .unwrap()
                .insert((node.to_string(), pid.to_string()), c);
        }
        for e in &package.manifest {
            let pid = package.process_id(&e.process_name);
            for v in &e.grant_capabilities {
                grant(&mut w, node, &pid, v)?;
            }
            if w.nodes[node].up {
                w.start_process(node, &pid);
            }
        }
        drop(w);
        Ok(())
    }

    #[cfg(test)]
    /// Install a process whose body is Rust code calling the host functions (for the host's
    /// unit tests), with the given capabilities (plus messaging on itself), and start it.
    pub(crate) fn install_script(
        &self,
        node: &str,
        process: &str,
        public: bool,
        on_exit: OnExit,
        caps: Vec<Capability>,
        script: Script,
    ) -> Address {
        let pid = ProcessId::parse(process).expect("valid process id");
        self.scripts
            .lock()
            .unwrap()
            .insert((node.to_string(), pid.to_string()), script);
        let mut w = self.lock();
        w.end_life(node, &pid);
        let n = w.nodes.get_mut(node).expect("node exists");
        n.procs.retain(|p| p.id != pid);
        let mut all = vec![messaging_cap(node, &pid)];
        all.extend(caps);
        n.procs.push(Proc {
            id: pid.clone(),
            kind: ProcKind::Wasm { on_exit },
            public,
            caps: all,
            life: None,
            stopped: false,
            backoff: None,
        });
        if w.nodes[node].up {
            w.start_process(node, &pid);
        }
        Address::new(node, pid)
    }

    /// Add an app the test plays, at `node@process`. Returns its address.
    pub fn add_app(&self, node: &str, process: &str, spec: AppSpec) -> Result<Address> {
        let pid = ProcessId::parse(process)?;
        let mut w = self.lock();
        if !w.nodes.contains_key(node) {
            bail!("no node {node}");
        }
        let mut caps = vec![messaging_cap(node, &pid)];
        if spec.request_networking {
            caps.push(network_cap(node));
        }
        for t in &spec.request_capabilities {
            caps.push(messaging_cap(node, &ProcessId::parse(t)?));
        }
        let grants = spec.grants.clone();
        let public = spec.public;
        w.end_life(node, &pid);
        let n = w.nodes.get_mut(node).expect("checked");
        n.procs.retain(|p| p.id != pid);
        n.procs.push(Proc {
            id: pid.clone(),
            kind: ProcKind::App {
                spec,
                inbox: Vec::new(),
                pending: BTreeMap::new(),
            },
            public,
            caps,
            life: None,
            stopped: false,
            backoff: None,
        });
        for g in grants {
            let grantee = ProcessId::parse(&g)?;
            if let Some(p) = w.nodes.get_mut(node).and_then(|n| n.proc_mut(&grantee)) {
                p.add_cap(messaging_cap(node, &pid));
            }
        }
        if w.nodes[node].up {
            w.start_process(node, &pid);
        }
        Ok(Address::new(node, pid))
    }

    /// `node@name:<package of our processes>` for a process of the p2p-patterns package.
    pub fn ours(node: &str, name: &str) -> Address {
        Address::new(
            node,
            ProcessId::new(name, "p2p-patterns", "p2p-patterns.os"),
        )
    }

    /// The default app of `node`.
    pub fn app(node: &str) -> Address {
        Address::new(node, ProcessId::parse(DEFAULT_APP).expect("valid"))
    }

    // ----------------------------------------------------------------------------------
    // Time.

    /// Virtual ms since the emulator started.
    pub fn now(&self) -> u64 {
        self.lock().now
    }

    /// Let `ms` of virtual time pass.
    pub fn run_for(&self, ms: u64) {
        let t = self.now() + ms;
        self.run_until(t);
    }

    /// Run everything due up to virtual time `t`.
    pub fn run_until(&self, t: u64) {
        let mut w = self.lock();
        loop {
            w = self.run_ready(w);
            let Some((&(at, seq), _)) = w.events.iter().next() else {
                break;
            };
            if at > t {
                break;
            }
            let ev = w.events.remove(&(at, seq)).expect("exists");
            self.advance(&mut w, at);
            w.handle(ev);
        }
        self.advance(&mut w, t);
        drop(self.run_ready(w));
    }

    fn advance(&self, w: &mut World, t: u64) {
        if t > w.now {
            w.now = t;
            self.shared.clock.store(t, Ordering::SeqCst);
        }
    }

    /// Run events until `done` holds (checked after each event), at most until `deadline`.
    fn run_while(&self, deadline: u64, mut done: impl FnMut(&World) -> bool) -> bool {
        let mut w = self.lock();
        loop {
            w = self.run_ready(w);
            if done(&w) {
                return true;
            }
            let Some((&(at, seq), _)) = w.events.iter().next() else {
                return false;
            };
            if at > deadline {
                return false;
            }
            let ev = w.events.remove(&(at, seq)).expect("exists");
            self.advance(&mut w, at);
            w.handle(ev);
        }
    }

    /// Start threads for new lives, then give the turn to every runnable process in order
    /// until none is left.
    fn run_ready<'a>(&'a self, mut w: MutexGuard<'a, World>) -> MutexGuard<'a, World> {
        loop {
            for (node, pid, gen) in std::mem::take(&mut w.to_spawn) {
                let key = (node.clone(), pid.to_string());
                let script = self.scripts.lock().unwrap().get(&key).cloned();
                if let Some(wasm) = w.spawned_wasm.remove(&key).filter(|_| script.is_none()) {
                    let cache = self.cache_dir.lock().unwrap().clone();
                    match self.rt.component(&wasm, cache.as_deref()) {
                        Ok(c) => {
                            self.components.lock().unwrap().insert(key.clone(), c);
                        }
                        Err(e) => {
                            w.exited(&node, &pid, gen, Some(format!("p2p-emu: {e:#}")));
                            continue;
                        }
                    }
                }
                let component = self.components.lock().unwrap().get(&key).cloned();
                let body = match (script, component) {
                    (Some(s), _) => Body::Script(s),
                    (None, Some(c)) => Body::Component(c),
                    (None, None) => {
                        let why = Some("p2p-emu: no compiled component".to_string());
                        w.exited(&node, &pid, gen, why);
                        continue;
                    }
                };
                let shared = self.shared.clone();
                let rt = self.rt.clone();
                let name = format!("{pid}@{node}");
                let handle = std::thread::Builder::new()
                    .name(name)
                    .stack_size(16 << 20)
                    .spawn(move || host::run_life(shared, rt, body, node, pid, gen))
                    .expect("spawning a process thread");
                self.threads.lock().unwrap().push(handle);
            }
            let Some(key) = w.ready.pop_front() else {
                return w;
            };
            let (node, pid, gen) = key.clone();
            let Some(life) = w.life(&node, &pid, gen) else {
                continue;
            };
            if !life.runnable() {
                continue;
            }
            let cv = life.cv.clone();
            w.running = Some(key.clone());
            cv.notify_all();
            let started = Instant::now();
            let limit = Duration::from_secs(w.cfg.watchdog_s);
            while w.running.as_ref() == Some(&key) {
                let (g, _) = self
                    .shared
                    .sched
                    .wait_timeout(w, Duration::from_millis(500))
                    .unwrap_or_else(|p| p.into_inner());
                w = g;
                if w.running.as_ref() == Some(&key) && started.elapsed() > limit {
                    let msg = format!(
                        "p2p-emu: {pid} on {node} ran {} s without yielding (a busy loop? \
                         virtual time does not move while a process runs)",
                        limit.as_secs()
                    );
                    drop(w);
                    panic!("{msg}");
                }
            }
        }
    }

    // ----------------------------------------------------------------------------------
    // Apps.

    fn app_send(
        &self,
        from: &Address,
        to: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        timeout_s: Option<u64>,
    ) -> Result<u64> {
        let mut w = self.lock();
        let gen = w
            .nodes
            .get(&from.node)
            .and_then(|n| n.proc(&from.process))
            .filter(|p| p.is_app())
            .and_then(|p| p.life.as_ref())
            .map(|l| l.gen)
            .ok_or_else(|| anyhow!("{from} is not a running app"))?;
        let request = Request {
            inherit: false,
            expects_response: timeout_s,
            body,
            metadata: None,
            capabilities: vec![],
        };
        let blob = blob.map(|bytes| LazyLoadBlob { mime: None, bytes });
        Ok(w.send_request(from, gen, to, request, None, blob))
    }

    /// A request from app `from` to `to`, awaited (virtual time runs until the answer or the
    /// timeout).
    pub fn request(
        &self,
        from: &Address,
        to: &Address,
        body: impl Into<Vec<u8>>,
        timeout_s: u64,
    ) -> Result<Reply, SendErrorKind> {
        self.request_with_blob(from, to, body, None, timeout_s)
    }

    pub fn request_with_blob(
        &self,
        from: &Address,
        to: &Address,
        body: impl Into<Vec<u8>>,
        blob: Option<Vec<u8>>,
        timeout_s: u64,
    ) -> Result<Reply, SendErrorKind> {
        let id = self
            .start_request(from, to, body, blob, timeout_s)
            .unwrap_or_else(|e| panic!("{e:#}"));
        self.wait_outcome(id, timeout_s * 1000 + 1)
            .unwrap_or(Err(SendErrorKind::Timeout))
    }

    /// Send a request from app `from` without waiting; its outcome comes with
    /// [`Emulator::outcome`] / [`Emulator::wait_outcome`] under the returned id.
    pub fn start_request(
        &self,
        from: &Address,
        to: &Address,
        body: impl Into<Vec<u8>>,
        blob: Option<Vec<u8>>,
        timeout_s: u64,
    ) -> Result<u64> {
        self.app_send(from, to, body.into(), blob, Some(timeout_s))
    }

    /// The outcome of an app request, if it came (taken: a second call says `None`).
    pub fn outcome(&self, id: u64) -> Option<Result<Reply, SendErrorKind>> {
        self.lock().app_outcomes.remove(&id)
    }

    /// Run until the outcome of app request `id` comes, for at most `max_ms` of virtual
    /// time.
    pub fn wait_outcome(&self, id: u64, max_ms: u64) -> Option<Result<Reply, SendErrorKind>> {
        let deadline = self.now() + max_ms;
        self.run_while(deadline, |w| w.app_outcomes.contains_key(&id));
        self.outcome(id)
    }

    /// A request without `expects_response` from app `from` (nothing comes back).
    pub fn send(&self, from: &Address, to: &Address, body: impl Into<Vec<u8>>) -> Result<()> {
        self.app_send(from, to, body.into(), None, None).map(|_| ())
    }

    /// Requests that reached an app so far.
    pub fn app_inbox(&self, app: &Address) -> Vec<AppMessage> {
        let w = self.lock();
        match w
            .nodes
            .get(&app.node)
            .and_then(|n| n.proc(&app.process))
            .map(|p| &p.kind)
        {
            Some(ProcKind::App { inbox, .. }) => inbox.clone(),
            _ => vec![],
        }
    }

    /// Answer request `id` that reached app `app` (one without `auto_reply`).
    pub fn app_reply(&self, app: &Address, id: u64, body: impl Into<Vec<u8>>) -> Result<()> {
        let mut w = self.lock();
        let km = match w
            .nodes
            .get_mut(&app.node)
            .and_then(|n| n.proc_mut(&app.process))
            .map(|p| &mut p.kind)
        {
            Some(ProcKind::App { pending, .. }) => pending
                .remove(&id)
                .ok_or_else(|| anyhow!("{app} has no unanswered request {id}"))?,
            _ => bail!("{app} is not an app"),
        };
        w.route(app_response(&km, body.into()));
        drop(w);
        Ok(())
    }

    // ----------------------------------------------------------------------------------
    // The browser: HTTP and WebSocket through a node's http-server.

    /// `method path_and_query` to `node`'s http-server as its logged-in owner would send it
    /// (`path_and_query` starts with `/<process id>`), run until answered.
    pub fn http(
        &self,
        node: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> HttpReply {
        self.http_as(node, method, path_and_query, headers, body.into(), true)
    }

    /// [`Emulator::http`] from a browser that is logged in or not.
    pub fn http_as(
        &self,
        node: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        logged_in: bool,
    ) -> HttpReply {
        self.http_full(
            node,
            method,
            path_and_query,
            headers,
            body,
            logged_in,
            false,
        )
    }

    /// [`Emulator::http`] from the owner's browser on another machine (not loopback):
    /// `local_only` bindings answer 403.
    pub fn http_remote(
        &self,
        node: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: impl Into<Vec<u8>>,
    ) -> HttpReply {
        self.http_full(
            node,
            method,
            path_and_query,
            headers,
            body.into(),
            true,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn http_full(
        &self,
        node: &str,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
        logged_in: bool,
        remote: bool,
    ) -> HttpReply {
        let handle = self.lock().http_request(
            node,
            method,
            path_and_query,
            headers,
            body,
            logged_in,
            remote,
        );
        let deadline = self.now() + HTTP_TIMEOUT_S * 1000 + 1;
        self.run_while(deadline, |w| w.http_outcomes.contains_key(&handle));
        self.lock()
            .http_outcomes
            .remove(&handle)
            .unwrap_or_else(|| HttpReply::plain(504, "no answer"))
    }

    /// Open a WebSocket to `path` (`/<process id>/...`) on `node`; returns its channel id.
    pub fn ws_open(&self, node: &str, path: &str) -> Result<u32> {
        let ch = self.lock().ws_open(node, path).map_err(|e| anyhow!(e))?;
        self.run_for(0);
        Ok(ch)
    }

    /// Send a frame (`kind`: `"Text"` or `"Binary"`) from the client of `channel`.
    pub fn ws_send(
        &self,
        node: &str,
        channel: u32,
        kind: &str,
        data: impl Into<Vec<u8>>,
    ) -> Result<()> {
        self.lock()
            .ws_send(node, channel, kind, data.into())
            .map_err(|e| anyhow!(e))?;
        self.run_for(0);
        Ok(())
    }

    /// The client closes `channel`.
    pub fn ws_close(&self, node: &str, channel: u32) -> Result<()> {
        self.lock()
            .ws_close(node, channel)
            .map_err(|e| anyhow!(e))?;
        self.run_for(0);
        Ok(())
    }

    /// Frames the process pushed to the client of `channel` so far, and whether the
    /// channel is still open.
    pub fn ws_frames(&self, node: &str, channel: u32) -> (Vec<WsFrame>, bool) {
        self.lock()
            .nodes
            .get(node)
            .and_then(|n| n.http.channels.get(&channel))
            .map(|c| (c.frames.clone(), c.open))
            .unwrap_or_default()
    }

    /// Write a file into `node`'s vfs (what kit's setup writes through the node's RPC).
    pub fn write_file(&self, node: &str, path: &str, bytes: Vec<u8>) {
        if let Some(n) = self.lock().nodes.get_mut(node) {
            n.vfs.write(path, bytes);
        }
    }

    /// A file in `node`'s vfs (`/<package>/<drive>/...`).
    pub fn vfs_file(&self, node: &str, path: &str) -> Option<Vec<u8>> {
        self.lock().nodes.get(node)?.vfs.read(path).cloned()
    }

    // ----------------------------------------------------------------------------------
    // Faults.

    /// Stop a process (no on_exit); it stays stopped across node restarts until started.
    pub fn kill_process(&self, node: &str, process: &ProcessId) -> Result<()> {
        let mut w = self.lock();
        let p = w
            .nodes
            .get_mut(node)
            .and_then(|n| n.proc_mut(process))
            .ok_or_else(|| anyhow!("no process {process} on {node}"))?;
        p.stopped = true;
        w.end_life(node, process);
        Ok(())
    }

    /// Start a process again (a new life: in-memory state is gone; set-state and sqlite
    /// are kept).
    pub fn start_process(&self, node: &str, process: &ProcessId) -> Result<()> {
        let mut w = self.lock();
        let n = w.nodes.get(node).ok_or_else(|| anyhow!("no node {node}"))?;
        if n.proc(process).is_none() {
            bail!("no process {process} on {node}");
        }
        if !n.up {
            bail!("node {node} is down");
        }
        w.end_life(node, process);
        w.start_process(node, process);
        Ok(())
    }

    /// The node crashes: every process dies, open transactions are lost, messages to it are
    /// dropped; others see Offline after the connect timeout.
    pub fn kill_node(&self, node: &str) -> Result<()> {
        let mut w = self.lock();
        let n = w
            .nodes
            .get_mut(node)
            .ok_or_else(|| anyhow!("no node {node}"))?;
        n.up = false;
        n.sqlite.close_all();
        // Bindings and connections live in the running http-server.
        let pending: Vec<u64> = n.http.pending.values().copied().collect();
        n.http = HttpServer::default();
        for handle in pending {
            w.http_outcomes
                .insert(handle, HttpReply::plain(503, "the node went down"));
        }
        let n = w.nodes.get_mut(node).expect("checked");
        let pids: Vec<ProcessId> = n.procs.iter().map(|p| p.id.clone()).collect();
        for pid in pids {
            w.end_life(node, &pid);
        }
        Ok(())
    }

    /// Boot a node that was killed: a new incarnation, its processes start in install
    /// order, and its networking is down for `boot_offline_ms`.
    pub fn start_node(&self, node: &str) -> Result<()> {
        let mut w = self.lock();
        let now = w.now;
        let offline = w.cfg.boot_offline_ms;
        let n = w
            .nodes
            .get_mut(node)
            .ok_or_else(|| anyhow!("no node {node}"))?;
        if n.up {
            bail!("node {node} is up");
        }
        n.up = true;
        n.incarnation += 1;
        n.net_ready_at = now + offline;
        let pids: Vec<ProcessId> = n
            .procs
            .iter()
            .filter(|p| !p.stopped)
            .map(|p| p.id.clone())
            .collect();
        for pid in pids {
            w.start_process(node, &pid);
        }
        Ok(())
    }

    /// Split the nodes into groups that cannot reach each other (nodes not named form one
    /// more group).
    pub fn partition(&self, groups: &[&[&str]]) {
        let mut w = self.lock();
        for n in w.nodes.values_mut() {
            n.group = u32::MAX;
        }
        for (i, g) in groups.iter().enumerate() {
            for name in *g {
                if let Some(n) = w.nodes.get_mut(*name) {
                    n.group = i as u32;
                }
            }
        }
    }

    pub fn heal(&self) {
        for n in self.lock().nodes.values_mut() {
            n.group = 0;
        }
    }

    // ----------------------------------------------------------------------------------
    // Inspection.

    pub fn networking_up(&self, node: &str) -> bool {
        let w = self.lock();
        w.nodes
            .get(node)
            .is_some_and(|n| n.up && w.now >= n.net_ready_at)
    }

    /// Run until every node's networking is up.
    pub fn run_until_networking(&self) {
        let t = {
            let w = self.lock();
            w.nodes.values().map(|n| n.net_ready_at).max().unwrap_or(0)
        };
        self.run_until(t);
    }

    pub fn is_running(&self, node: &str, process: &ProcessId) -> bool {
        let w = self.lock();
        w.nodes
            .get(node)
            .and_then(|n| n.proc(process))
            .is_some_and(|p| p.life.is_some())
    }

    /// Processes that crashed so far, with their panic messages.
    pub fn crashes(&self) -> Vec<Crash> {
        self.lock().crashes.clone()
    }

    /// Fails with every crash's message if any process crashed.
    pub fn assert_no_crashes(&self) {
        let crashes = self.crashes();
        if !crashes.is_empty() {
            let lines: Vec<String> = crashes
                .iter()
                .map(|c| {
                    format!(
                        "{} on {} at {} ms: {}",
                        c.process,
                        c.node,
                        c.at,
                        crate::kernel::one_line(&c.message)
                    )
                })
                .collect();
            panic!("processes crashed:\n{}", lines.join("\n"));
        }
    }

    /// Everything printed so far.
    pub fn logs(&self) -> Vec<LogLine> {
        self.lock().log_lines()
    }

    /// What a process saved with set-state.
    pub fn state(&self, node: &str, process: &ProcessId) -> Option<Vec<u8>> {
        self.lock()
            .nodes
            .get(node)
            .and_then(|n| n.state.get(&process.to_string()).cloned())
    }

    pub fn capabilities(&self, node: &str, process: &ProcessId) -> Vec<Capability> {
        self.lock()
            .nodes
            .get(node)
            .and_then(|n| n.proc(process))
            .map(|p| p.caps.clone())
            .unwrap_or_default()
    }

    /// Where this emulator keeps its nodes' files (sqlite databases).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn with_world<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        f(&mut self.lock())
    }
}

fn grant(w: &mut World, node: &str, pid: &ProcessId, v: &serde_json::Value) -> Result<()> {
    // A string: that process gets messaging on `pid`; an object: a capability issued by
    // `pid` with those params.
    let (grantee, cap) = match v {
        serde_json::Value::String(s) => (ProcessId::parse(s)?, messaging_cap(node, pid)),
        serde_json::Value::Object(o) => {
            let process = o
                .get("process")
                .and_then(|p| p.as_str())
                .ok_or_else(|| anyhow!("grant {v} has no \"process\""))?;
            let params = o.get("params").cloned().unwrap_or(serde_json::Value::Null);
            (
                ProcessId::parse(process)?,
                Capability {
                    issuer: Address::new(node, pid.clone()),
                    params: params.to_string(),
                },
            )
        }
        _ => bail!("grant {v} is neither a process id nor an object"),
    };
    if let Some(p) = w.nodes.get_mut(node).and_then(|n| n.proc_mut(&grantee)) {
        p.add_cap(cap);
    }
    Ok(())
}

impl Drop for Emulator {
    fn drop(&mut self) {
        {
            let mut w = self.lock();
            let all: Vec<(String, ProcessId)> = w
                .nodes
                .values()
                .flat_map(|n| n.procs.iter().map(|p| (n.name.clone(), p.id.clone())))
                .collect();
            for (node, pid) in all {
                w.end_life(&node, &pid);
            }
            for n in w.nodes.values_mut() {
                n.sqlite.close_all();
            }
        }
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
