//! The service contract: a pure core is a state machine driven by [`Input`]s at a given time,
//! answering with [`Effect`]s. It never reads a clock, a random source or storage itself: the
//! WASM runner (or the simulator) hands those in and carries the effects out.

use crate::ids::Address;

/// Milliseconds. On a node: Unix time; in the simulator: virtual time.
pub type Millis = u64;

/// Why a request we sent failed (Hyperware's `SendErrorKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SendErrorKind {
    /// The target node is unknown or could not be reached.
    Offline,
    /// No response within the request's timeout (or the request/response was lost).
    Timeout,
}

/// Something that happened to a core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// First input after (re)start, with what the core last persisted and a random seed.
    Start {
        persisted: Option<Vec<u8>>,
        seed: u64,
    },
    /// A request from a local app or a remote node. If `expects_response`, the core should
    /// answer with exactly one [`Effect::Reply`] while handling it (Hyperware's reply rule).
    Request {
        from: Address,
        body: Vec<u8>,
        expects_response: bool,
    },
    /// The response to a request we sent with a timeout, with the context we attached.
    Response {
        from: Address,
        body: Vec<u8>,
        context: Vec<u8>,
    },
    /// A request we sent with a timeout failed.
    SendFailed {
        kind: SendErrorKind,
        target: Address,
        context: Vec<u8>,
    },
    /// A timer we set fired.
    Timer { context: Vec<u8> },
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

/// Something a core wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send a request. With `timeout_s`, exactly one of Response / SendFailed comes back
    /// carrying `context`; without, it is fire-and-forget and failures are invisible.
    Send {
        to: Address,
        body: Vec<u8>,
        timeout_s: Option<u64>,
        context: Vec<u8>,
    },
    /// Answer the request being handled.
    Reply {
        body: Vec<u8>,
    },
    /// Fire [`Input::Timer`] with `context` after `after_ms`.
    SetTimer {
        after_ms: Millis,
        context: Vec<u8>,
    },
    /// Replace the persisted state; it is what [`Input::Start`] hands back after a restart.
    Persist {
        state: Vec<u8>,
    },
    Log {
        level: Level,
        message: String,
    },
}

/// A pure service core.
pub trait Service {
    /// Process name, e.g. `"presence"`.
    fn name(&self) -> &'static str;
    /// Handle one input at time `now`; return what should happen.
    fn handle(&mut self, now: Millis, input: Input) -> Vec<Effect>;
}

/// Small helpers for building effect lists.
pub fn log(level: Level, message: impl Into<String>) -> Effect {
    Effect::Log {
        level,
        message: message.into(),
    }
}
