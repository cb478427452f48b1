//! The pure half of the shared runner: it turns what Hyperware's kernel hands a process
//! ([`KernelEvent`]) into core [`Input`]s, and the core's [`Effect`]s into kernel calls
//! ([`KernelCall`]). The WASM runner only moves values between process_lib and this type;
//! the simulator drives the same type, so both run identical code paths.
//!
//! What it adds on top of the core:
//! - **typed contexts**: a core's context stays here, in a table keyed by an id that is all
//!   the kernel context carries;
//! - **timers** as requests to `timer:distro:sys` (as process_lib's `set_timer` does), with
//!   re-arm and cancel (the kernel has neither: a cancelled timer's answer is ignored);
//! - **the reply rule with replying later**: the kernel answers the *prompting message*,
//!   which is the request being handled, or — while handling the response (or send error) of
//!   a request sent while R was prompting — R again (§6 of the platform notes). The driver
//!   tracks that exactly: it records which request was prompting for every awaited send and
//!   timer, passes a `Reply` for R only while R is the prompt and unanswered, and answers R
//!   with an `Internal` error when the core leaves it with nothing left that could answer it;
//! - **storage ordering**: forced batches go out in effect order, before any later call of
//!   the same step; unforced ones are held and merged into the next write (or flushed by a
//!   driver timer after [`LAZY_FLUSH_MS`]);
//! - **HTTP and WebSocket** through [`crate::http`], and the one local API over HTTP
//!   ([`crate::web`]): a `Reply` to an HTTP request goes out as its HTTP answer (JSON, status
//!   from the error code); requests the core sends the UI caller ([`crate::web::caller`])
//!   become WebSocket frames to every client (at most [`crate::web::MAX_WS_CLIENTS`]) and,
//!   if awaited, are answered `{"Ok":null}` at once, in the same step.

use crate::api::{encode_result, ApiError, ApiResult};
use crate::http::{self, Incoming};
use crate::ids::{Address, NodeId, ProcessId};
use crate::service::{
    Batch, Effect, Expect, Input, Level, Millis, Now, Records, RequestId, SendErrorKind, Service,
};
use crate::web;
use std::collections::{BTreeMap, BTreeSet};

const TAG_SEND: u8 = 1;
const TAG_TIMER: u8 = 2;
const TAG_INTERNAL: u8 = 3;

/// Unforced writes wait at most this long before they are written.
pub const LAZY_FLUSH_MS: Millis = 1_000;
/// Unforced writes are written at once beyond this many bytes.
pub const LAZY_MAX_BYTES: usize = 1 << 20;
/// A request left unanswered this long past its caller's timeout is forgotten (logged).
pub const PENDING_GRACE_MS: Millis = 60_000;

/// What `await_message()` returned, in our id types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Request {
        source: Address,
        expects_response: Option<u64>,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    },
    Response {
        source: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        context: Option<Vec<u8>>,
    },
    SendError {
        kind: SendErrorKind,
        target: Address,
        context: Option<Vec<u8>>,
    },
    /// The host's answer to [`KernelCall::Read`].
    ReadDone { token: u64, value: Option<Vec<u8>> },
}

/// What the process asks of the kernel (and of its storage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCall {
    SendRequest {
        target: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
    },
    /// Answers the current prompting message.
    SendResponse {
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    },
    /// Write these ops in one transaction, durably, before carrying out any later call.
    Store {
        ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        forced: bool,
    },
    /// Read one record; answer with [`KernelEvent::ReadDone`] after the current calls.
    Read {
        key: Vec<u8>,
        token: u64,
    },
    SetState(Vec<u8>),
    Print {
        verbosity: u8,
        message: String,
    },
}

/// The timer process's address on our node.
pub fn timer_address(node: &NodeId) -> Address {
    Address::new(
        node.clone(),
        ProcessId {
            process: "timer".into(),
            package: "distro".into(),
            publisher: "sys".into(),
        },
    )
}

/// Body process_lib's `set_timer` sends: `{"SetTimer": ms}`.
pub fn timer_body(ms: Millis) -> Vec<u8> {
    format!("{{\"SetTimer\":{ms}}}").into_bytes()
}

/// Counters a driver keeps (the simulator and benches read them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Replies the core made that broke the reply rule and were dropped (core bugs).
    pub dropped_replies: u64,
    /// Requests the driver answered with an error because the core left them unanswered.
    pub auto_answered: u64,
    /// Requests still unanswered long after their caller gave up (forgotten).
    pub expired: u64,
    /// Forced and unforced batches the core asked for.
    pub forced_batches: u64,
    pub unforced_batches: u64,
    /// Store calls actually issued (unforced batches are merged into fewer writes).
    pub store_calls: u64,
    pub stored_bytes: u64,
}

#[derive(Debug)]
enum SlotKind<C, T> {
    Send(C),
    Timer(T),
    Read(Vec<u8>, C),
    /// A cancelled or re-armed timer's answer: nothing for the core.
    Stale,
    /// The driver's own lazy-write flush timer.
    Flush,
    /// The answer to an http-server binding.
    Bind(String),
}

#[derive(Debug)]
struct Slot<C, T> {
    kind: SlotKind<C, T>,
    /// The request that was prompting when this was sent: restored when it comes back.
    prompt: Option<RequestId>,
}

#[derive(Debug)]
struct Pending {
    /// Awaited sends, timers and reads made while this request was prompting, still out.
    holds: u32,
    /// When its caller stops waiting (monotonic).
    deadline: Millis,
    http: bool,
}

/// Drives one core.
pub struct Driver<S: Service> {
    our: Address,
    core: S,
    timer: Address,
    http_server: Address,
    next_id: u64,
    /// The kernel's prompting message, as far as replies go.
    prompt: Option<RequestId>,
    pending: BTreeMap<RequestId, Pending>,
    slots: BTreeMap<u64, Slot<S::Ctx, S::Timer>>,
    /// Armed timers: the slot of the kernel timer that will fire it, and its deadline
    /// (monotonic). A later deadline reuses the kernel timer (re-sent when it fires early).
    armed: BTreeMap<S::Timer, (u64, Millis)>,
    lazy: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    lazy_bytes: usize,
    flush_armed: bool,
    stats: DriverStats,
    /// Open WebSocket channels (bounded by [`web::MAX_WS_CLIENTS`]).
    ws_clients: BTreeSet<u32>,
    /// Kernel contexts of awaited sends to the UI caller, answered after the current step.
    loopback: Vec<Vec<u8>>,
}

impl<S: Service> Driver<S> {
    pub fn new(our: Address, core: S) -> Self {
        let timer = timer_address(&our.node);
        let http_server = http::http_server_address(&our.node);
        Driver {
            our,
            core,
            timer,
            http_server,
            next_id: 1,
            prompt: None,
            pending: BTreeMap::new(),
            slots: BTreeMap::new(),
            armed: BTreeMap::new(),
            lazy: Vec::new(),
            lazy_bytes: 0,
            flush_armed: false,
            stats: DriverStats::default(),
            ws_clients: BTreeSet::new(),
            loopback: Vec::new(),
        }
    }

    pub fn our(&self) -> &Address {
        &self.our
    }
    pub fn core(&self) -> &S {
        &self.core
    }
    pub fn core_mut(&mut self) -> &mut S {
        &mut self.core
    }
    pub fn stats(&self) -> &DriverStats {
        &self.stats
    }
    /// Replies the core made that broke the reply rule and were dropped (a core bug).
    pub fn dropped_replies(&self) -> u64 {
        self.stats.dropped_replies
    }
    /// Requests waiting for the core's answer.
    pub fn pending_replies(&self) -> usize {
        self.pending.len()
    }
    /// Timers armed (not cancelled, not fired).
    pub fn armed_timers(&self) -> usize {
        self.armed.len()
    }
    /// Unforced ops not yet written.
    pub fn unwritten_ops(&self) -> usize {
        self.lazy.len()
    }

    /// What a kernel context of ours stands for, e.g. `Timer(Probe)` or `Send(Ctx…)` —
    /// for tests and traces; None if it is not (or no longer) ours.
    pub fn context_label(&self, context: &[u8]) -> Option<String> {
        if context.len() != 9 {
            return None;
        }
        let id = u64::from_le_bytes(context[1..9].try_into().ok()?);
        self.slots.get(&id).map(|s| format!("{:?}", s.kind))
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Start (or restart) with what was persisted.
    pub fn start(
        &mut self,
        now: Now,
        persisted: Option<Vec<u8>>,
        records: Records,
        seed: u64,
    ) -> Vec<KernelCall> {
        self.prompt = None;
        let effects = self.core.handle(
            now,
            Input::Start {
                persisted,
                records,
                seed,
            },
        );
        let mut calls = self.lower(now, effects);
        self.drain_loopback(now, &mut calls);
        calls
    }

    /// The local API's HTTP and WebSocket bindings ([`web::bindings`]) if the core serves it
    /// ([`Service::WEB_API`]), else nothing. A host calls it after every [`Driver::start`]:
    /// the one place they are made, for every core.
    pub fn web_bindings(&mut self, now: Now) -> Vec<KernelCall> {
        if !S::WEB_API {
            return Vec::new();
        }
        self.lower(now, web::bindings())
    }

    /// WebSocket clients open now.
    pub fn ws_clients(&self) -> usize {
        self.ws_clients.len()
    }

    /// Handle one kernel event.
    pub fn step(&mut self, now: Now, event: KernelEvent) -> Vec<KernelCall> {
        let mut calls = self.step_one(now, event);
        self.drain_loopback(now, &mut calls);
        calls
    }

    /// Answer, in order, the awaited sends to the UI caller made during this step (the
    /// answers may lead to more of them: bounded, as each is one the core chose to send).
    fn drain_loopback(&mut self, now: Now, calls: &mut Vec<KernelCall>) {
        let mut rounds = 0;
        while !self.loopback.is_empty() && rounds < 1_000 {
            rounds += 1;
            for context in std::mem::take(&mut self.loopback) {
                let event = KernelEvent::Response {
                    source: web::caller(&self.our.node),
                    body: b"{\"Ok\":null}".to_vec(),
                    blob: None,
                    context: Some(context),
                };
                calls.extend(self.step_one(now, event));
            }
        }
    }

    fn step_one(&mut self, now: Now, event: KernelEvent) -> Vec<KernelCall> {
        let mut calls = self.expire(now);
        let input = match event {
            KernelEvent::Request {
                source,
                expects_response,
                body,
                blob,
            } => {
                let id = RequestId(self.id());
                if expects_response.is_none() {
                    // Nothing may be answered while handling it: the kernel's prompt is then
                    // an older request, or (a forwarded request with an rsvp, which we cannot
                    // see) the sender's — either way not something this input may answer.
                    self.prompt = None;
                }
                if let Some(t) = expects_response {
                    // The kernel makes a request that expects a response the prompt.
                    self.prompt = Some(id);
                    self.pending.insert(
                        id,
                        Pending {
                            holds: 0,
                            deadline: now.mono.saturating_add(t.saturating_mul(1000)),
                            http: false,
                        },
                    );
                }
                if http::is_http_server(&source, &self.our.node) {
                    match http::decode_incoming(&body, blob, &self.our.process.to_string()) {
                        Ok(Incoming::Http(request)) => {
                            if let Some(p) = self.pending.get_mut(&id) {
                                p.http = true;
                            }
                            Some(Input::Http { id, request })
                        }
                        Ok(Incoming::WsOpen { channel, path }) => {
                            if self.ws_clients.len() >= web::MAX_WS_CLIENTS
                                && !self.ws_clients.contains(&channel)
                            {
                                calls.push(print(
                                    Level::Warn,
                                    format!(
                                        "WebSocket {channel} on {path} refused: {} clients open",
                                        self.ws_clients.len()
                                    ),
                                ));
                                // Say why before closing: the page shows it.
                                calls.push(KernelCall::SendRequest {
                                    target: self.http_server.clone(),
                                    body: http::ws_push_body(channel, crate::service::WsKind::Text),
                                    blob: Some(web::refusal_frame(self.core.name())),
                                    expects_response: None,
                                    context: None,
                                });
                                calls.push(self.ws_close(channel));
                                None
                            } else {
                                self.ws_clients.insert(channel);
                                Some(Input::WsOpen { channel, path })
                            }
                        }
                        Ok(Incoming::WsMessage {
                            channel,
                            kind,
                            data,
                        }) => Some(Input::WsMessage {
                            channel,
                            kind,
                            data,
                        }),
                        Ok(Incoming::WsClose { channel }) => {
                            if self.ws_clients.remove(&channel) {
                                Some(Input::WsClose { channel })
                            } else {
                                None
                            }
                        }
                        Ok(Incoming::Ignored) => None,
                        Err(e) => {
                            calls.push(print(Level::Warn, format!("http-server: {e}")));
                            None
                        }
                    }
                } else {
                    Some(Input::Request {
                        id,
                        from: source,
                        body,
                        blob,
                        timeout_s: expects_response,
                    })
                }
            }
            KernelEvent::Response {
                source,
                body,
                blob,
                context,
            } => match self.take_slot(context, now, &mut calls) {
                None => {
                    calls.push(print(
                        Level::Warn,
                        format!("dropping a response from {source} that we did not ask for"),
                    ));
                    None
                }
                Some(SlotKind::Send(ctx)) => Some(Input::Response {
                    from: source,
                    body,
                    blob,
                    ctx,
                }),
                Some(SlotKind::Timer(t)) => Some(Input::Timer(t)),
                Some(SlotKind::Stale) => None,
                // Reads are answered by the host (ReadDone), never through the kernel.
                Some(SlotKind::Read(..)) => None,
                Some(SlotKind::Flush) => {
                    self.on_flush_timer(&mut calls);
                    None
                }
                Some(SlotKind::Bind(path)) => {
                    if serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .is_some_and(|v| v.get("Err").is_some())
                    {
                        calls.push(print(
                            Level::Error,
                            format!(
                                "http-server refused to bind {path}: {}",
                                String::from_utf8_lossy(&body)
                            ),
                        ));
                    }
                    None
                }
            },
            KernelEvent::SendError {
                kind,
                target,
                context,
            } => match self.take_slot(context, now, &mut calls) {
                None => {
                    calls.push(print(
                        Level::Warn,
                        format!("dropping a {kind:?} error for {target} that we did not ask for"),
                    ));
                    None
                }
                Some(SlotKind::Send(ctx)) => Some(Input::SendFailed { kind, target, ctx }),
                Some(SlotKind::Timer(t)) => {
                    // The timer process did not answer in time (on a busy node its answer can
                    // come after its own timeout): fire the timer anyway so the core's
                    // periodic work never stops.
                    calls.push(print(
                        Level::Debug,
                        format!("timer request failed ({kind:?}); firing it now"),
                    ));
                    Some(Input::Timer(t))
                }
                Some(SlotKind::Stale) => None,
                // Reads are answered by the host (ReadDone), never through the kernel.
                Some(SlotKind::Read(..)) => None,
                Some(SlotKind::Flush) => {
                    self.on_flush_timer(&mut calls);
                    None
                }
                Some(SlotKind::Bind(path)) => {
                    calls.push(print(
                        Level::Error,
                        format!("binding {path} failed: http-server {kind:?}"),
                    ));
                    None
                }
            },
            KernelEvent::ReadDone { token, value } => {
                let mut ctx = [TAG_INTERNAL].to_vec();
                ctx.extend_from_slice(&token.to_le_bytes());
                match self.take_slot(Some(ctx), now, &mut calls) {
                    Some(SlotKind::Read(key, ctx)) => Some(Input::Read { key, value, ctx }),
                    _ => {
                        calls.push(print(Level::Warn, "a read answer nobody asked for"));
                        None
                    }
                }
            }
        };
        if let Some(input) = input {
            let effects = self.core.handle(now, input);
            calls.extend(self.lower(now, effects));
        } else {
            calls.extend(self.settle());
        }
        calls
    }

    /// Undecodable source address etc.: answer the caller with an error (if it waits) and log.
    pub fn reject(&mut self, expects_response: bool, error: ApiError) -> Vec<KernelCall> {
        let mut calls = vec![print(Level::Warn, format!("rejecting a message: {error}"))];
        if expects_response {
            // The kernel made this request the prompt; we answer it now.
            self.prompt = None;
            calls.push(KernelCall::SendResponse {
                body: encode_result::<()>(&Err(error)),
                blob: None,
            });
        }
        calls
    }

    /// Remove the slot a kernel context names; restore its prompt and release its hold.
    fn take_slot(
        &mut self,
        context: Option<Vec<u8>>,
        now: Now,
        calls: &mut Vec<KernelCall>,
    ) -> Option<SlotKind<S::Ctx, S::Timer>> {
        let c = context?;
        if c.len() != 9 {
            return None;
        }
        let tag = c[0];
        let id = u64::from_le_bytes(c[1..9].try_into().ok()?);
        let slot = self.slots.get(&id)?;
        let ok = matches!(
            (&slot.kind, tag),
            (SlotKind::Send(_), TAG_SEND)
                | (SlotKind::Timer(_), TAG_TIMER)
                | (SlotKind::Stale, TAG_TIMER)
                | (SlotKind::Flush, TAG_TIMER)
                | (SlotKind::Read(..), TAG_INTERNAL)
                | (SlotKind::Bind(_), TAG_INTERNAL)
        );
        if !ok {
            return None;
        }
        let slot = self.slots.remove(&id)?;
        self.prompt = slot.prompt;
        if !matches!(
            slot.kind,
            SlotKind::Flush | SlotKind::Bind(_) | SlotKind::Stale
        ) {
            if let Some(p) = slot.prompt.and_then(|p| self.pending.get_mut(&p)) {
                p.holds = p.holds.saturating_sub(1);
            }
        }
        if let SlotKind::Timer(t) = &slot.kind {
            // A timer's slot is current only while `armed` still points at it.
            let Some(&(armed_id, deadline)) = self.armed.get(t) else {
                return Some(SlotKind::Stale);
            };
            if armed_id != id {
                return Some(SlotKind::Stale);
            }
            if deadline > now.mono {
                // Re-armed to a later deadline: wait the rest (same prompt as before).
                let t = t.clone();
                calls.push(self.kernel_timer(t, deadline - now.mono, deadline));
                return Some(SlotKind::Stale);
            }
            self.armed.remove(t);
        }
        Some(slot.kind)
    }

    fn hold(&mut self) {
        if let Some(p) = self.prompt.and_then(|p| self.pending.get_mut(&p)) {
            p.holds += 1;
        }
    }

    /// A kernel timer request for `t`, due at `deadline`.
    fn kernel_timer(&mut self, t: S::Timer, after_ms: Millis, deadline: Millis) -> KernelCall {
        let context = self.slot(TAG_TIMER, SlotKind::Timer(t.clone()));
        let id = u64::from_le_bytes(context[1..9].try_into().expect("9 bytes"));
        self.armed.insert(t, (id, deadline));
        self.timer_request(after_ms, context)
    }

    /// The request to `timer:distro:sys` that fires after `after_ms` (as process_lib's
    /// `set_timer` sends it).
    fn timer_request(&self, after_ms: Millis, context: Vec<u8>) -> KernelCall {
        KernelCall::SendRequest {
            target: self.timer.clone(),
            body: timer_body(after_ms),
            blob: None,
            expects_response: Some(after_ms / 1000 + 1),
            context: Some(context),
        }
    }

    /// The lazy-write flush timer came back (answered or failed): write what waits.
    fn on_flush_timer(&mut self, calls: &mut Vec<KernelCall>) {
        self.flush_armed = false;
        self.flush(calls, false);
    }

    /// The kernel timer of slot `id` no longer fires anything: it stops holding its request.
    fn retire(&mut self, id: u64) {
        if let Some(slot) = self.slots.get_mut(&id) {
            if matches!(slot.kind, SlotKind::Timer(_)) {
                slot.kind = SlotKind::Stale;
                if let Some(p) = slot.prompt.and_then(|p| self.pending.get_mut(&p)) {
                    p.holds = p.holds.saturating_sub(1);
                }
            }
        }
    }

    fn slot(&mut self, tag: u8, kind: SlotKind<S::Ctx, S::Timer>) -> Vec<u8> {
        let id = self.id();
        let holds = !matches!(kind, SlotKind::Flush | SlotKind::Bind(_));
        self.slots.insert(
            id,
            Slot {
                kind,
                prompt: self.prompt,
            },
        );
        if holds {
            self.hold();
        }
        let mut c = vec![tag];
        c.extend_from_slice(&id.to_le_bytes());
        c
    }

    fn flush(&mut self, calls: &mut Vec<KernelCall>, forced: bool) {
        if self.lazy.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut self.lazy);
        self.stats.store_calls += 1;
        self.stats.stored_bytes += self.lazy_bytes as u64;
        self.lazy_bytes = 0;
        calls.push(KernelCall::Store { ops, forced });
    }

    /// Forget requests whose callers gave up long ago.
    fn expire(&mut self, now: Now) -> Vec<KernelCall> {
        let gone: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, p)| now.mono > p.deadline.saturating_add(PENDING_GRACE_MS))
            .map(|(id, _)| *id)
            .collect();
        if gone.is_empty() {
            return Vec::new();
        }
        for id in &gone {
            self.pending.remove(id);
        }
        self.stats.expired += gone.len() as u64;
        vec![print(
            Level::Error,
            format!(
                "{} left {} request(s) unanswered past their callers' timeout; forgotten",
                self.core.name(),
                gone.len()
            ),
        )]
    }

    /// After a step: the prompt, if the core left it with nothing that could still answer
    /// it, gets an error now (the only moment the kernel would still route it).
    fn settle(&mut self) -> Vec<KernelCall> {
        let Some(p) = self.prompt else {
            return Vec::new();
        };
        let Some(pending) = self.pending.get(&p) else {
            return Vec::new();
        };
        if pending.holds > 0 {
            return Vec::new();
        }
        let http = pending.http;
        self.pending.remove(&p);
        self.stats.auto_answered += 1;
        let message = format!("{} produced no answer to this request", self.core.name());
        let err: ApiResult<()> = Err(ApiError::internal(message));
        let mut calls = vec![print(
            Level::Error,
            "core left a request unanswered; sent an Internal error",
        )];
        if http {
            calls.push(KernelCall::SendResponse {
                body: http::response_body(500, &BTreeMap::new()),
                blob: Some(encode_result(&err)),
            });
        } else {
            calls.push(KernelCall::SendResponse {
                body: encode_result(&err),
                blob: None,
            });
        }
        calls
    }

    /// Asking http-server to close a WebSocket.
    fn ws_close(&self, channel: u32) -> KernelCall {
        KernelCall::SendRequest {
            target: self.http_server.clone(),
            body: http::ws_close_body(channel),
            blob: None,
            expects_response: None,
            context: None,
        }
    }

    /// Whether a reply to `id` may go out now (`Some(whether it is an HTTP request)`);
    /// counts a violation if not. An `HttpReply` (`http`) answers HTTP requests only; a
    /// `Reply` answers either kind (to an HTTP request it becomes the HTTP answer).
    fn may_reply(
        &mut self,
        id: RequestId,
        http: bool,
        calls: &mut Vec<KernelCall>,
    ) -> Option<bool> {
        let why = match self.pending.get(&id) {
            None => "core answered a request twice, or one that expects no answer; dropped",
            Some(_) if self.prompt != Some(id) => {
                "core answered a request outside its prompt (it would reach another caller); dropped"
            }
            Some(p) if http && !p.http => "core answered with the wrong kind of reply; dropped",
            Some(p) => {
                let was_http = p.http;
                self.pending.remove(&id);
                return Some(was_http);
            }
        };
        self.stats.dropped_replies += 1;
        calls.push(print(Level::Error, why));
        None
    }

    /// Effects to kernel calls, in order.
    fn lower(&mut self, now: Now, effects: Vec<Effect<S::Ctx, S::Timer>>) -> Vec<KernelCall> {
        let mut calls = Vec::with_capacity(effects.len());
        for e in effects {
            match e {
                Effect::Send {
                    to,
                    body,
                    blob,
                    expect,
                } if web::is_caller(&to, &self.our.node) => {
                    let frame = web::event_frame(self.core.name(), &body, blob.as_deref());
                    for &channel in &self.ws_clients {
                        calls.push(KernelCall::SendRequest {
                            target: self.http_server.clone(),
                            body: http::ws_push_body(channel, crate::service::WsKind::Text),
                            blob: Some(frame.clone()),
                            expects_response: None,
                            context: None,
                        });
                    }
                    if let Some(Expect { ctx, .. }) = expect {
                        let context = self.slot(TAG_SEND, SlotKind::Send(ctx));
                        self.loopback.push(context);
                    }
                }
                Effect::Send {
                    to,
                    body,
                    blob,
                    expect,
                } => match expect {
                    Some(Expect { timeout_s, ctx }) => {
                        let context = self.slot(TAG_SEND, SlotKind::Send(ctx));
                        calls.push(KernelCall::SendRequest {
                            target: to,
                            body,
                            blob,
                            expects_response: Some(timeout_s),
                            context: Some(context),
                        });
                    }
                    None => calls.push(KernelCall::SendRequest {
                        target: to,
                        body,
                        blob,
                        expects_response: None,
                        context: None,
                    }),
                },
                Effect::Reply { id, body, blob } => match self.may_reply(id, false, &mut calls) {
                    Some(false) => calls.push(KernelCall::SendResponse { body, blob }),
                    Some(true) => {
                        // The local-API answer to an HTTP caller, as its HTTP answer.
                        let mut headers = web::json_headers();
                        if let Some(b) = &blob {
                            headers.insert("x-blob-bytes".into(), b.len().to_string());
                        }
                        calls.push(KernelCall::SendResponse {
                            body: http::response_body(web::status_of(&body), &headers),
                            blob: Some(body),
                        });
                    }
                    None => {}
                },
                Effect::HttpReply {
                    id,
                    status,
                    headers,
                    body,
                } => {
                    if self.may_reply(id, true, &mut calls).is_some() {
                        calls.push(KernelCall::SendResponse {
                            body: http::response_body(status, &headers),
                            blob: Some(body),
                        });
                    }
                }
                Effect::SetTimer { after_ms, timer } => {
                    let deadline = now.mono.saturating_add(after_ms);
                    match self.armed.get(&timer).copied() {
                        // The kernel timer out fires no later: keep it, move the deadline
                        // (it is re-sent for the rest when it fires).
                        Some((id, old))
                            if old <= deadline
                                && self.slots.get(&id).is_some_and(|s| s.prompt == self.prompt) =>
                        {
                            self.armed.insert(timer, (id, deadline));
                        }
                        old => {
                            if let Some((id, _)) = old {
                                self.retire(id);
                            }
                            calls.push(self.kernel_timer(timer, after_ms, deadline));
                        }
                    }
                }
                Effect::CancelTimer(t) => {
                    if let Some((id, _)) = self.armed.remove(&t) {
                        self.retire(id);
                    }
                }
                Effect::Store(batch) => self.store(batch, &mut calls),
                Effect::Read { key, ctx } => {
                    // A read sees every earlier write, lazy ones included.
                    self.flush(&mut calls, false);
                    let context = self.slot(TAG_INTERNAL, SlotKind::Read(key.clone(), ctx));
                    let token = u64::from_le_bytes(context[1..9].try_into().expect("9 bytes"));
                    calls.push(KernelCall::Read { key, token });
                }
                Effect::Persist { state } => {
                    self.flush(&mut calls, false);
                    calls.push(KernelCall::SetState(state));
                }
                Effect::WsPush {
                    channel,
                    kind,
                    data,
                } => calls.push(KernelCall::SendRequest {
                    target: self.http_server.clone(),
                    body: http::ws_push_body(channel, kind),
                    blob: Some(data),
                    expects_response: None,
                    context: None,
                }),
                Effect::BindHttp {
                    path,
                    authenticated,
                } => {
                    let body = http::bind_body(&path, authenticated);
                    let context = self.slot(TAG_INTERNAL, SlotKind::Bind(path));
                    calls.push(KernelCall::SendRequest {
                        target: self.http_server.clone(),
                        body,
                        blob: None,
                        expects_response: Some(10),
                        context: Some(context),
                    });
                }
                Effect::BindWs {
                    path,
                    authenticated,
                } => {
                    let body = http::ws_bind_body(&path, authenticated);
                    let context = self.slot(TAG_INTERNAL, SlotKind::Bind(path));
                    calls.push(KernelCall::SendRequest {
                        target: self.http_server.clone(),
                        body,
                        blob: None,
                        expects_response: Some(10),
                        context: Some(context),
                    });
                }
                Effect::Log { level, message } => calls.push(print(level, message)),
            }
        }
        calls.extend(self.settle());
        calls
    }

    fn store(&mut self, batch: Batch, calls: &mut Vec<KernelCall>) {
        let bytes = batch.bytes();
        if batch.forced {
            self.stats.forced_batches += 1;
            // Earlier unforced writes go first, in the same transaction: order is kept.
            self.lazy.extend(batch.ops);
            self.lazy_bytes += bytes;
            self.flush(calls, true);
            return;
        }
        self.stats.unforced_batches += 1;
        self.lazy.extend(batch.ops);
        self.lazy_bytes += bytes;
        if self.lazy_bytes > LAZY_MAX_BYTES {
            self.flush(calls, false);
        } else if !self.flush_armed && !self.lazy.is_empty() {
            self.flush_armed = true;
            let context = self.slot(TAG_TIMER, SlotKind::Flush);
            calls.push(self.timer_request(LAZY_FLUSH_MS, context));
        }
    }
}

fn print(level: Level, message: impl Into<String>) -> KernelCall {
    KernelCall::Print {
        verbosity: level.verbosity(),
        message: message.into(),
    }
}

#[cfg(test)]
#[path = "driver_tests.rs"]
mod tests;
