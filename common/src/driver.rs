//! The pure half of the shared runner: it turns what Hyperware's kernel hands a process
//! ([`KernelEvent`]) into core [`Input`]s, and the core's [`Effect`]s into kernel calls
//! ([`KernelCall`]). The WASM runner only moves values between process_lib and this type;
//! the simulator drives the same type, so both run identical code paths.
//!
//! What it adds on top of the core:
//! - timers become requests to `timer:distro:sys` (as process_lib's `set_timer` does) and
//!   come back as [`Input::Timer`]; contexts are tagged so timer and send replies never mix;
//! - the reply rule: a reply is only sent while handling a request that expects one, once;
//!   other replies are dropped with an error log;
//! - a request that expects a response but got no reply from the core is answered with an
//!   `Internal` error, so a caller never waits for nothing.

use crate::api::{encode_result, ApiError, ApiResult};
use crate::ids::{Address, NodeId, ProcessId};
use crate::service::{Effect, Input, Level, Millis, SendErrorKind, Service};

const TAG_SEND: u8 = 1;
const TAG_TIMER: u8 = 2;

/// What `await_message()` returned, in our id types.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelEvent {
    Request {
        source: Address,
        expects_response: Option<u64>,
        body: Vec<u8>,
    },
    Response {
        source: Address,
        body: Vec<u8>,
        context: Option<Vec<u8>>,
    },
    SendError {
        kind: SendErrorKind,
        target: Address,
        context: Option<Vec<u8>>,
    },
}

/// What the process asks of the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelCall {
    SendRequest {
        target: Address,
        body: Vec<u8>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
    },
    /// Answers the request currently being handled.
    SendResponse {
        body: Vec<u8>,
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

/// Drives one core.
pub struct Driver<S> {
    our: Address,
    core: S,
    timer: Address,
}

impl<S: Service> Driver<S> {
    pub fn new(our: Address, core: S) -> Self {
        let timer = timer_address(&our.node);
        Driver { our, core, timer }
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

    /// Start (or restart) with what was persisted.
    pub fn start(&mut self, now: Millis, persisted: Option<Vec<u8>>, seed: u64) -> Vec<KernelCall> {
        let effects = self.core.handle(now, Input::Start { persisted, seed });
        self.lower(effects, None)
    }

    /// Handle one kernel event.
    pub fn step(&mut self, now: Millis, event: KernelEvent) -> Vec<KernelCall> {
        match event {
            KernelEvent::Request {
                source,
                expects_response,
                body,
            } => {
                let expects = expects_response.is_some();
                let effects = self.core.handle(
                    now,
                    Input::Request {
                        from: source,
                        body,
                        expects_response: expects,
                    },
                );
                self.lower(effects, Some(expects))
            }
            KernelEvent::Response {
                source,
                body,
                context,
            } => match split_context(context) {
                Some((TAG_TIMER, ctx)) if source == self.timer => {
                    let effects = self.core.handle(now, Input::Timer { context: ctx });
                    self.lower(effects, None)
                }
                Some((TAG_SEND, ctx)) => {
                    let effects = self.core.handle(
                        now,
                        Input::Response {
                            from: source,
                            body,
                            context: ctx,
                        },
                    );
                    self.lower(effects, None)
                }
                _ => vec![print(
                    Level::Warn,
                    format!("dropping a response from {source} that we did not ask for"),
                )],
            },
            KernelEvent::SendError {
                kind,
                target,
                context,
            } => match split_context(context) {
                Some((TAG_SEND, ctx)) => {
                    let effects = self.core.handle(
                        now,
                        Input::SendFailed {
                            kind,
                            target,
                            context: ctx,
                        },
                    );
                    self.lower(effects, None)
                }
                Some((TAG_TIMER, ctx)) => {
                    // The timer process did not answer: fire the timer anyway so the core's
                    // periodic work never stops.
                    let mut calls = vec![print(
                        Level::Warn,
                        format!("timer request failed ({kind:?}); firing it now"),
                    )];
                    let effects = self.core.handle(now, Input::Timer { context: ctx });
                    calls.extend(self.lower(effects, None));
                    calls
                }
                _ => vec![print(
                    Level::Warn,
                    format!("dropping a {kind:?} error for {target} that we did not ask for"),
                )],
            },
        }
    }

    /// Undecodable source address etc.: answer the caller with an error (if it waits) and log.
    pub fn reject(&self, expects_response: bool, error: ApiError) -> Vec<KernelCall> {
        let mut calls = vec![print(Level::Warn, format!("rejecting a message: {error}"))];
        if expects_response {
            calls.push(KernelCall::SendResponse {
                body: encode_result::<()>(&Err(error)),
            });
        }
        calls
    }

    /// Effects to kernel calls. `replying`: Some(expects_response) while handling a request.
    fn lower(&self, effects: Vec<Effect>, replying: Option<bool>) -> Vec<KernelCall> {
        let mut calls = Vec::with_capacity(effects.len());
        let mut replied = false;
        for e in effects {
            match e {
                Effect::Send {
                    to,
                    body,
                    timeout_s,
                    context,
                } => calls.push(KernelCall::SendRequest {
                    target: to,
                    body,
                    expects_response: timeout_s,
                    context: timeout_s.map(|_| tag(TAG_SEND, context)),
                }),
                Effect::Reply { body } => match replying {
                    Some(true) if !replied => {
                        replied = true;
                        calls.push(KernelCall::SendResponse { body });
                    }
                    Some(true) => calls.push(print(
                        Level::Error,
                        "core replied twice to one request; second reply dropped",
                    )),
                    Some(false) => calls.push(print(
                        Level::Debug,
                        "reply to a request that expects none dropped",
                    )),
                    None => calls.push(print(
                        Level::Error,
                        "core replied outside a request; reply dropped",
                    )),
                },
                Effect::SetTimer { after_ms, context } => calls.push(KernelCall::SendRequest {
                    target: self.timer.clone(),
                    body: timer_body(after_ms),
                    expects_response: Some(after_ms / 1000 + 1),
                    context: Some(tag(TAG_TIMER, context)),
                }),
                Effect::Persist { state } => calls.push(KernelCall::SetState(state)),
                Effect::Log { level, message } => calls.push(print(level, message)),
            }
        }
        if replying == Some(true) && !replied {
            let err: ApiResult<()> = Err(ApiError::internal(format!(
                "{} produced no answer to this request",
                self.core.name()
            )));
            calls.push(print(
                Level::Error,
                "core did not answer a request; sent an Internal error",
            ));
            calls.push(KernelCall::SendResponse {
                body: encode_result(&err),
            });
        }
        calls
    }
}

fn tag(t: u8, mut ctx: Vec<u8>) -> Vec<u8> {
    ctx.insert(0, t);
    ctx
}

fn split_context(ctx: Option<Vec<u8>>) -> Option<(u8, Vec<u8>)> {
    let mut c = ctx?;
    if c.is_empty() {
        return None;
    }
    let t = c.remove(0);
    Some((t, c))
}

fn print(level: Level, message: impl Into<String>) -> KernelCall {
    KernelCall::Print {
        verbosity: level.verbosity(),
        message: message.into(),
    }
}
