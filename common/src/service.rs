//! The service contract (v2): a pure core is a state machine driven by [`Input`]s at a given
//! [`Now`], answering with [`Effect`]s. It never reads a clock, a random source or storage
//! itself: the WASM runner (or the simulator) hands those in and carries the effects out.
//!
//! A core declares two types of its own:
//! - `Ctx`, the context of a request it sends and awaits: it comes back, typed, with the
//!   response or the send error (the driver keeps it; only an id travels in the kernel).
//! - `Timer`, its timers. A timer is identified by its value: setting a timer that is already
//!   armed re-arms it (one deadline per value), and [`Effect::CancelTimer`] cancels it. A
//!   cancelled or re-armed timer never fires its old deadline.
//!
//! See docs/architecture.md for the rules (replying later, durable storage, blobs).

use crate::ids::Address;
use std::collections::BTreeMap;
use std::fmt::Debug;

/// Milliseconds.
pub type Millis = u64;

/// The two clocks a core sees.
///
/// `mono` drives every protocol timer and deadline: it never goes back while the process
/// runs (it restarts from an arbitrary value after a restart, so never persist it). `wall`
/// is Unix time for what users read (last seen, timestamps) and what must survive a restart
/// (retention); it may jump in either direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Now {
    pub mono: Millis,
    pub wall: Millis,
}

impl Now {
    /// Both clocks at `t` (tests).
    pub fn at(t: Millis) -> Now {
        Now { mono: t, wall: t }
    }
}

/// Why a request we sent failed (Hyperware's `SendErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SendErrorKind {
    /// The target node is unknown or could not be reached.
    Offline,
    /// No response within the request's timeout (or the request/response was lost, or a
    /// capability was missing).
    Timeout,
}

/// A request handed to a core, as numbered by the driver. Answer it with
/// [`Effect::Reply`] naming this id — while handling it, or later (see [`Input::Request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Records loaded from durable storage, by key.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

/// An HTTP request from the node's http-server to a path we bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: String,
    /// The path below our process prefix, e.g. `/api/nodes` (query string removed).
    pub path: String,
    /// The path as bound, e.g. `/api/*`.
    pub bound_path: String,
    pub query: BTreeMap<String, String>,
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

/// A WebSocket frame type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WsKind {
    Text,
    Binary,
}

/// Something that happened to a core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<C, T> {
    /// First input after (re)start: whatever was stored as whole state ([`Effect::Persist`]),
    /// every keyed record ([`Effect::Store`]), and a random seed.
    Start {
        persisted: Option<Vec<u8>>,
        records: Records,
        seed: u64,
    },
    /// A request from a local app or a remote node. With `timeout_s`, the caller waits that
    /// long for exactly one answer: [`Effect::Reply`] with this `id`, either while handling
    /// this input or while handling the response, send error or timer of something sent while
    /// handling it (or, transitively, while handling one of those). Send nothing and reply
    /// nothing, and the driver answers `Internal` for you.
    Request {
        id: RequestId,
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        timeout_s: Option<u64>,
    },
    /// The response to a request we sent and awaited, with its context.
    Response {
        from: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        ctx: C,
    },
    /// A request we sent and awaited failed.
    SendFailed {
        kind: SendErrorKind,
        target: Address,
        ctx: C,
    },
    /// A timer fired.
    Timer(T),
    /// The answer to [`Effect::Read`].
    Read {
        key: Vec<u8>,
        value: Option<Vec<u8>>,
        ctx: C,
    },
    /// An HTTP request to a bound path. Answer with [`Effect::HttpReply`] (same rules as
    /// [`Input::Request`]).
    Http { id: RequestId, request: HttpRequest },
    /// A WebSocket client connected to a bound path.
    WsOpen { channel: u32, path: String },
    /// A WebSocket message from a client.
    WsMessage {
        channel: u32,
        kind: WsKind,
        data: Vec<u8>,
    },
    /// A WebSocket client went away.
    WsClose { channel: u32 },
}

impl<C, T> Input<C, T> {
    /// Whether this is a request that waits for an answer.
    pub fn expects_response(&self) -> bool {
        matches!(
            self,
            Input::Request {
                timeout_s: Some(_),
                ..
            } | Input::Http { .. }
        )
    }
}

/// Log levels, mapped by the runner onto Hyperware terminal verbosity (0 = always shown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    /// `print_to_terminal` verbosity.
    pub fn verbosity(self) -> u8 {
        match self {
            Level::Error => 0,
            Level::Warn => 1,
            Level::Info => 2,
            Level::Debug => 3,
        }
    }
}

/// An awaited send: exactly one of [`Input::Response`] / [`Input::SendFailed`] comes back
/// with `ctx`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect<C> {
    pub timeout_s: u64,
    pub ctx: C,
}

/// One atomic write of keyed records: every op, in order, or none.
///
/// A *forced* batch is durable before any later effect of the same `handle` call is carried
/// out (the reply that says "done", the next send). An unforced batch may be delayed and
/// merged into a later write; a crash may lose it (never a forced batch after it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Batch {
    /// `(key, Some(value))` puts, `(key, None)` deletes.
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub forced: bool,
}

impl Batch {
    /// A batch that must be on disk before anything after it happens.
    pub fn forced() -> Batch {
        Batch {
            ops: Vec::new(),
            forced: true,
        }
    }
    /// A batch that may be written later (compaction, end records, caches).
    pub fn lazy() -> Batch {
        Batch::default()
    }
    pub fn put(mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Batch {
        self.ops.push((key.into(), Some(value.into())));
        self
    }
    pub fn delete(mut self, key: impl Into<Vec<u8>>) -> Batch {
        self.ops.push((key.into(), None));
        self
    }
    /// Bytes of keys and values written.
    pub fn bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
            .sum()
    }
}

/// Something a core wants done, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<C, T> {
    /// Send a request. With `expect`, exactly one of Response / SendFailed comes back with its
    /// context; without, it is fire-and-forget and failures are invisible.
    Send {
        to: Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expect: Option<Expect<C>>,
    },
    /// Answer request `id` (see [`Input::Request`] for when that is allowed).
    Reply {
        id: RequestId,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
    },
    /// Fire [`Input::Timer`] with `timer` after `after_ms` (re-arms it if already armed).
    SetTimer {
        after_ms: Millis,
        timer: T,
    },
    /// Cancel a timer if armed.
    CancelTimer(T),
    /// Write keyed records atomically (see [`Batch`]).
    Store(Batch),
    /// Read one keyed record; [`Input::Read`] follows.
    Read {
        key: Vec<u8>,
        ctx: C,
    },
    /// Replace the whole persisted state (for small state); [`Input::Start`] hands it back.
    /// Durable before any later effect, like a forced batch.
    Persist {
        state: Vec<u8>,
    },
    /// Answer an [`Input::Http`] request.
    HttpReply {
        id: RequestId,
        status: u16,
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
    },
    /// Push a message to a WebSocket client.
    WsPush {
        channel: u32,
        kind: WsKind,
        data: Vec<u8>,
    },
    /// Bind an HTTP path under our process (e.g. `/api/*`); requests arrive as [`Input::Http`].
    /// `authenticated`: the node's login is required (Hyperware's default).
    BindHttp {
        path: String,
        authenticated: bool,
    },
    /// Bind a WebSocket path under our process.
    BindWs {
        path: String,
        authenticated: bool,
    },
    Log {
        level: Level,
        message: String,
    },
}

impl<C, T> Effect<C, T> {
    /// An awaited request.
    pub fn request(to: Address, body: Vec<u8>, timeout_s: u64, ctx: C) -> Self {
        Effect::Send {
            to,
            body,
            blob: None,
            expect: Some(Expect { timeout_s, ctx }),
        }
    }
    /// A fire-and-forget request.
    pub fn notify(to: Address, body: Vec<u8>) -> Self {
        Effect::Send {
            to,
            body,
            blob: None,
            expect: None,
        }
    }
    /// An answer without a blob.
    pub fn reply(id: RequestId, body: Vec<u8>) -> Self {
        Effect::Reply {
            id,
            body,
            blob: None,
        }
    }
    pub fn timer(after_ms: Millis, timer: T) -> Self {
        Effect::SetTimer { after_ms, timer }
    }
}

/// A pure service core.
pub trait Service {
    /// Context of an awaited send.
    type Ctx: Clone + Debug;
    /// A timer; its value is its identity.
    type Timer: Clone + Debug + Ord;
    /// Process name, e.g. `"presence"`.
    fn name(&self) -> &'static str;
    /// Whether the core serves its local API over HTTP: it routes `Input::Http` through
    /// [`crate::web::route`]. The host (the wasm runner, the simulator) then binds
    /// [`crate::web::bindings`] (`/api`, `/ws`) at every start
    /// ([`crate::driver::Driver::web_bindings`]); the core itself binds nothing.
    const WEB_API: bool = false;
    /// Handle one input; return what should happen, in order.
    fn handle(
        &mut self,
        now: Now,
        input: Input<Self::Ctx, Self::Timer>,
    ) -> Vec<Effect<Self::Ctx, Self::Timer>>;
}

/// A log effect.
pub fn log<C, T>(level: Level, message: impl Into<String>) -> Effect<C, T> {
    Effect::Log {
        level,
        message: message.into(),
    }
}
