//! The wasm side: wasmtime engine, the `hyperware:process/standard` host functions, and the
//! thread that runs one life of one process (its `init`, which loops on `receive`).
//!
//! A process only runs while it holds the turn (`World::running`); a host call that blocks
//! (`receive`, `send-and-await-response`) hands the turn back to the scheduler and waits on
//! the process's own condition variable. Killing a process ends its life in the world; its
//! thread then traps out of the blocked host call and exits.

use crate::bindings::wit::{
    self, Address, Capability, LazyLoadBlob, Message, OnExit, ProcessId, Request, Response,
    SendError, SpawnError,
};
use crate::bindings::ProcessV1;
use crate::kernel::{Incoming, Life, ProcKind, Wait, World};
use anyhow::{anyhow, bail, Context as _, Result};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::p2::{IoView, WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// What the scheduler and the process threads share.
pub(crate) struct Shared {
    pub world: Mutex<World>,
    /// Woken when the running process yields or exits.
    pub sched: Condvar,
    /// Virtual time (ms), read by the WASI clocks.
    pub clock: Arc<AtomicU64>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The engine and linker, shared by every emulator in this test process (components are
/// compiled once per process and cached on disk).
pub(crate) struct Runtime {
    pub engine: Engine,
    pub linker: Linker<HostState>,
    compiled: Mutex<HashMap<[u8; 32], Component>>,
}

pub(crate) fn runtime() -> Result<Arc<Runtime>> {
    static RT: OnceLock<Arc<Runtime>> = OnceLock::new();
    if let Some(rt) = RT.get() {
        return Ok(rt.clone());
    }
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::<HostState>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    ProcessV1::add_to_linker(&mut linker, |s: &mut HostState| s)?;
    let rt = Arc::new(Runtime {
        engine,
        linker,
        compiled: Mutex::new(HashMap::new()),
    });
    Ok(RT.get_or_init(|| rt).clone())
}

impl Runtime {
    /// The compiled component for these bytes: from memory, from `cache_dir`, or compiled
    /// (and then written to `cache_dir`).
    pub fn component(&self, bytes: &[u8], cache_dir: Option<&Path>) -> Result<Component> {
        let key: [u8; 32] = Sha256::digest(bytes).into();
        let mut compiled = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = compiled.get(&key) {
            return Ok(c.clone());
        }
        let file = cache_dir.map(|d| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.engine.precompile_compatibility_hash().hash(&mut h);
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            d.join(format!("{hex}-{:016x}.cwasm", h.finish()))
        });
        let mut component = None;
        if let Some(file) = file.as_ref().filter(|f| f.is_file()) {
            // SAFETY: the file was written by `Component::serialize` of this same engine
            // configuration (its name carries the compatibility hash); a file that does not
            // load is compiled again.
            component = unsafe { Component::deserialize_file(&self.engine, file) }.ok();
        }
        let component = match component {
            Some(c) => c,
            None => {
                let c = Component::new(&self.engine, bytes).context("compiling the component")?;
                if let (Some(file), Ok(ser)) = (&file, c.serialize()) {
                    if let Some(dir) = file.parent() {
                        let _ = std::fs::create_dir_all(dir);
                    }
                    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
                    if std::fs::write(&tmp, ser).is_ok() {
                        let _ = std::fs::rename(&tmp, file);
                    }
                }
                c
            }
        };
        compiled.insert(key, component.clone());
        Ok(component)
    }
}

struct VirtualWall {
    clock: Arc<AtomicU64>,
    base_ms: u64,
}

impl HostWallClock for VirtualWall {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.base_ms + self.clock.load(Ordering::SeqCst))
    }
}

struct VirtualMono {
    clock: Arc<AtomicU64>,
    base_ms: u64,
}

impl HostMonotonicClock for VirtualMono {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        (self.base_ms + self.clock.load(Ordering::SeqCst)) * 1_000_000
    }
}

/// The store data of one process life.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    shared: Arc<Shared>,
    node: String,
    pid: ProcessId,
    gen: u64,
    cv: Arc<Condvar>,
    our: Address,
}

impl IoView for HostState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

const KILLED: &str = "p2p-emu: process killed";

fn seed_for(seed: u64, node: &str, pid: &ProcessId, gen: u64) -> u64 {
    let d = Sha256::digest(format!("{seed}/{node}/{pid}/{gen}").as_bytes());
    u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
}

impl HostState {
    /// Virtual time (for scripts in the unit tests).
    #[cfg(test)]
    pub(crate) fn now(&self) -> u64 {
        self.shared.clock.load(Ordering::SeqCst)
    }

    fn me(&self) -> (String, ProcessId, u64) {
        (self.node.clone(), self.pid.clone(), self.gen)
    }

    fn life<'w>(&self, w: &'w mut World) -> wasmtime::Result<&'w mut Life> {
        w.life_mut(&self.node, &self.pid, self.gen)
            .ok_or_else(|| anyhow!(KILLED))
    }

    /// Give the turn back and wait until the scheduler hands it to us again (after setting
    /// `wait`); returns at once if what we wait for is already here.
    fn block<'a>(
        &self,
        mut w: MutexGuard<'a, World>,
        wait: Wait,
    ) -> wasmtime::Result<MutexGuard<'a, World>> {
        let me = self.me();
        {
            let life = self.life(&mut w)?;
            life.wait = wait;
            if life.runnable() {
                life.wait = Wait::Running;
                return Ok(w);
            }
        }
        if w.running.as_ref() == Some(&me) {
            w.running = None;
        }
        self.shared.sched.notify_all();
        loop {
            w = self.cv.wait(w).unwrap_or_else(|p| p.into_inner());
            self.life(&mut w)?;
            if w.running.as_ref() == Some(&me) {
                self.life(&mut w)?.wait = Wait::Running;
                return Ok(w);
            }
        }
    }
}

/// Hand a mailbox entry to the process as Hyperdrive's `kernel_message_to_process_receive`
/// does: blobs become the current blob, requests that want an answer become the prompting
/// message, and an answer restores the prompt saved when its request was sent.
/// What `receive` returns (the WIT's shape).
type Received = Result<(Address, Message), (SendError, Option<Vec<u8>>)>;

#[allow(clippy::result_large_err)]
fn take(life: &mut Life, m: Incoming) -> Received {
    match m {
        Ok(km) => {
            match &km.blob {
                Some(b) => {
                    life.last_blob = Some(b.clone());
                    life.last_blobbed = true;
                }
                None => life.last_blobbed = false,
            }
            match km.message.clone() {
                Message::Request(req) => {
                    if req.expects_response.is_some() || km.rsvp.is_some() {
                        let mut prompt = km.clone();
                        prompt.blob = None;
                        life.prompting = Some(prompt);
                    }
                    Ok((km.source, Message::Request(req)))
                }
                Message::Response((resp, _theirs)) => {
                    // The sender's context never travels: ours comes from the kernel.
                    let ctx = life.contexts.remove(&km.id);
                    let context = match ctx {
                        Some(ctx) => {
                            life.prompting = ctx.prompting;
                            ctx.context
                        }
                        None => None,
                    };
                    Ok((km.source, Message::Response((resp, context))))
                }
            }
        }
        Err(e) => {
            life.last_blobbed = false;
            let context = match life.contexts.remove(&e.id) {
                Some(ctx) => {
                    life.prompting = ctx.prompting;
                    ctx.context
                }
                None => None,
            };
            Err((e.error, context))
        }
    }
}

impl wit::Host for HostState {
    fn print_to_terminal(&mut self, verbosity: u8, message: String) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        w.print(&self.node, &self.pid.to_string(), verbosity, message);
        Ok(())
    }

    fn our(&mut self) -> wasmtime::Result<Address> {
        Ok(self.our.clone())
    }

    fn get_on_exit(&mut self) -> wasmtime::Result<OnExit> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let p = w.nodes[&self.node].proc(&self.pid).expect("alive");
        match &p.kind {
            ProcKind::Wasm { on_exit, .. } => Ok(on_exit.clone()),
            ProcKind::App { .. } | ProcKind::Builtin => Ok(OnExit::None),
        }
    }

    fn set_on_exit(&mut self, new: OnExit) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let node = w.nodes.get_mut(&self.node).expect("node");
        if let Some(ProcKind::Wasm { on_exit, .. }) = node.proc_mut(&self.pid).map(|p| &mut p.kind)
        {
            *on_exit = new;
        }
        Ok(())
    }

    fn get_state(&mut self) -> wasmtime::Result<Option<Vec<u8>>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let state = w.nodes[&self.node]
            .state
            .get(&self.pid.to_string())
            .cloned();
        // Hyperdrive asks state:distro:sys and keeps the answer as "the current message":
        // afterwards `has-blob` says whether there was a state, while `get-blob` returns the
        // blob received before.
        self.life(&mut w)?.last_blobbed = state.is_some();
        Ok(state)
    }

    fn set_state(&mut self, bytes: Vec<u8>) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?.last_blobbed = false;
        w.nodes
            .get_mut(&self.node)
            .expect("node")
            .state
            .insert(self.pid.to_string(), bytes);
        Ok(())
    }

    fn clear_state(&mut self) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?.last_blobbed = false;
        w.nodes
            .get_mut(&self.node)
            .expect("node")
            .state
            .remove(&self.pid.to_string());
        Ok(())
    }

    fn spawn(
        &mut self,
        name: Option<String>,
        wasm_path: String,
        on_exit: OnExit,
        request_capabilities: Vec<Capability>,
        grant_capabilities: Vec<(ProcessId, String)>,
        public: bool,
    ) -> wasmtime::Result<Result<ProcessId, SpawnError>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        Ok(w.spawn(
            &self.node,
            &self.pid,
            name,
            &wasm_path,
            on_exit,
            request_capabilities,
            grant_capabilities,
            public,
        ))
    }

    fn save_capabilities(&mut self, caps: Vec<Capability>) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let p = w
            .nodes
            .get_mut(&self.node)
            .and_then(|n| n.proc_mut(&self.pid))
            .expect("alive");
        for c in caps {
            p.add_cap(c);
        }
        Ok(())
    }

    fn drop_capabilities(&mut self, caps: Vec<Capability>) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let p = w
            .nodes
            .get_mut(&self.node)
            .and_then(|n| n.proc_mut(&self.pid))
            .expect("alive");
        p.caps.retain(|c| !caps.contains(c));
        Ok(())
    }

    fn our_capabilities(&mut self) -> wasmtime::Result<Vec<Capability>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        Ok(w.nodes[&self.node]
            .proc(&self.pid)
            .expect("alive")
            .caps
            .clone())
    }

    fn receive(
        &mut self,
    ) -> wasmtime::Result<Result<(Address, Message), (SendError, Option<Vec<u8>>)>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        loop {
            let life = self.life(&mut w)?;
            if let Some(m) = life.mailbox.pop_front() {
                return Ok(take(life, m));
            }
            w = self.block(w, Wait::Receive)?;
        }
    }

    fn has_blob(&mut self) -> wasmtime::Result<bool> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        Ok(self.life(&mut w)?.last_blobbed)
    }

    fn get_blob(&mut self) -> wasmtime::Result<Option<LazyLoadBlob>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        let life = self.life(&mut w)?;
        Ok(if life.last_blobbed {
            life.last_blob.clone()
        } else {
            None
        })
    }

    fn last_blob(&mut self) -> wasmtime::Result<Option<LazyLoadBlob>> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        Ok(self.life(&mut w)?.last_blob.clone())
    }

    fn send_request(
        &mut self,
        target: Address,
        request: Request,
        context: Option<Vec<u8>>,
        blob: Option<LazyLoadBlob>,
    ) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        w.send_request(&self.our, self.gen, &target, request, context, blob);
        Ok(())
    }

    fn send_requests(
        &mut self,
        requests: Vec<(Address, Request, Option<Vec<u8>>, Option<LazyLoadBlob>)>,
    ) -> wasmtime::Result<()> {
        for (target, request, context, blob) in requests {
            self.send_request(target, request, context, blob)?;
        }
        Ok(())
    }

    fn send_response(
        &mut self,
        response: Response,
        blob: Option<LazyLoadBlob>,
    ) -> wasmtime::Result<()> {
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        w.send_response(&self.our, self.gen, response, blob);
        Ok(())
    }

    fn send_and_await_response(
        &mut self,
        target: Address,
        request: Request,
        blob: Option<LazyLoadBlob>,
    ) -> wasmtime::Result<Result<(Address, Message), SendError>> {
        if request.expects_response.is_none() {
            bail!(
                "kernel: got invalid send_and_await_response() Request from {}: must expect response",
                self.pid
            );
        }
        let resolved = crate::kernel::resolve_our(&target, &self.node);
        if resolved == self.our {
            bail!(
                "kernel: got invalid send_and_await_response() Request from and to {}: cannot await a Request to `our`: will deadlock",
                self.our
            );
        }
        let shared = self.shared.clone();
        let mut w = shared.lock();
        self.life(&mut w)?;
        let id = w.send_request(&self.our, self.gen, &target, request, None, blob);
        loop {
            let life = self.life(&mut w)?;
            let pos = life
                .mailbox
                .iter()
                .position(|m| crate::kernel::incoming_id(m) == Some(id));
            if let Some(pos) = pos {
                let m = life.mailbox.remove(pos).expect("found");
                return match take(life, m) {
                    Ok((addr, Message::Response(r))) => Ok(Ok((addr, Message::Response(r)))),
                    Ok((_, Message::Request(_))) => {
                        Err(anyhow!("fatal: received Request instead of Response"))
                    }
                    Err((e, _)) => Ok(Err(e)),
                };
            }
            w = self.block(w, Wait::Await(id))?;
        }
    }
}

/// A process written in Rust against the host functions (unit tests of the host).
pub(crate) type Script = Arc<dyn Fn(&mut HostState) -> wasmtime::Result<()> + Send + Sync>;

/// What a life runs: a component's `init`, or a script.
pub(crate) enum Body {
    Component(Component),
    Script(Script),
}

/// Run one life of a process on this thread: wait for the first turn, instantiate, call
/// `init`, and report how it ended.
pub(crate) fn run_life(
    shared: Arc<Shared>,
    rt: Arc<Runtime>,
    body: Body,
    node: String,
    pid: ProcessId,
    gen: u64,
) {
    let me = (node.clone(), pid.clone(), gen);
    let (cv, seed, wall_base) = {
        let mut w = shared.lock();
        let Some(life) = w.life(&node, &pid, gen) else {
            return;
        };
        let cv = life.cv.clone();
        loop {
            if w.life(&node, &pid, gen).is_none() {
                return;
            }
            if w.running.as_ref() == Some(&me) {
                break;
            }
            w = cv.wait(w).unwrap_or_else(|p| p.into_inner());
        }
        w.life_mut(&node, &pid, gen).expect("alive").wait = Wait::Running;
        (cv, w.cfg.seed, w.cfg.wall_clock_base_ms)
    };
    let stderr = MemoryOutputPipe::new(4 << 20);
    let our = Address::new(&node, pid.clone());
    let result = (|| -> Result<()> {
        let s = seed_for(seed, &node, &pid, gen);
        let mono_base = s % 1_000_000_000;
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .wall_clock(VirtualWall {
                clock: shared.clock.clone(),
                base_ms: wall_base,
            })
            .monotonic_clock(VirtualMono {
                clock: shared.clock.clone(),
                base_ms: mono_base,
            })
            .secure_random(ChaCha8Rng::seed_from_u64(s))
            .insecure_random(ChaCha8Rng::seed_from_u64(s ^ 0x5eed))
            .insecure_random_seed(u128::from(s))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            shared: shared.clone(),
            node: node.clone(),
            pid: pid.clone(),
            gen,
            cv: cv.clone(),
            our: our.clone(),
        };
        match body {
            Body::Component(component) => {
                let mut store = Store::new(&rt.engine, state);
                let bindings = ProcessV1::instantiate(&mut store, &component, &rt.linker)
                    .context("instantiating the component")?;
                bindings.call_init(&mut store, &our.to_string())?;
            }
            Body::Script(script) => {
                let mut state = state;
                let run = std::panic::AssertUnwindSafe(|| script(&mut state));
                match std::panic::catch_unwind(run) {
                    Ok(r) => r?,
                    Err(p) => {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_else(|| "a panic".into());
                        bail!("script panicked: {msg}");
                    }
                }
            }
        }
        Ok(())
    })();
    let mut w = shared.lock();
    if w.life(&node, &pid, gen).is_none() {
        // Killed (or its node went down): nothing to report.
        return;
    }
    let crash = result.err().map(|e| describe_crash(&e, &stderr));
    w.exited(&node, &pid, gen, crash);
    drop(w);
    shared.sched.notify_all();
}

/// A trap as a message: the panic printed on stderr if there is one, else the trap itself.
fn describe_crash(e: &anyhow::Error, stderr: &MemoryOutputPipe) -> String {
    let bytes = stderr.contents();
    let text = String::from_utf8_lossy(&bytes);
    let tail: String = {
        let t = text.trim();
        let start = t.len().saturating_sub(5000);
        let start = (start..t.len())
            .find(|&i| t.is_char_boundary(i))
            .unwrap_or(t.len());
        t[start..].to_string()
    };
    // The trap itself, without the wasm backtrace anyhow's alternate form appends.
    let trap = e.root_cause().to_string();
    if tail.is_empty() {
        trap
    } else {
        format!("{tail} [{trap}]")
    }
}
