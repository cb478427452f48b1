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
    dropped_replies: u64,
}

impl<S: Service> Driver<S> {
    pub fn new(our: Address, core: S) -> Self {
        let timer = timer_address(&our.node);
        Driver {
            our,
            core,
            timer,
            dropped_replies: 0,
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
    /// Replies the core made that broke the reply rule and were dropped (a core bug).
    pub fn dropped_replies(&self) -> u64 {
        self.dropped_replies
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
                    // The timer process did not answer in time (on a busy node its answer can
                    // come after its own timeout): fire the timer anyway so the core's
                    // periodic work never stops.
                    let mut calls = vec![print(
                        Level::Debug,
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
    fn lower(&mut self, effects: Vec<Effect>, replying: Option<bool>) -> Vec<KernelCall> {
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
                    Some(true) => {
                        self.dropped_replies += 1;
                        calls.push(print(
                            Level::Error,
                            "core replied twice to one request; second reply dropped",
                        ));
                    }
                    Some(false) => calls.push(print(
                        Level::Debug,
                        "reply to a request that expects none dropped",
                    )),
                    None => {
                        self.dropped_replies += 1;
                        calls.push(print(
                            Level::Error,
                            "core replied outside a request; reply dropped",
                        ));
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{decode_response, BaseResponse, ErrorCode};
    use crate::basic::BasicService;

    fn addr(s: &str) -> Address {
        Address::parse(s).unwrap()
    }
    fn our() -> Address {
        addr("alice.os@presence:p2p-patterns:p2p-patterns.os")
    }
    fn app() -> Address {
        addr("alice.os@my-app:my-app:someone.os")
    }
    fn request(body: &[u8], expects: bool) -> KernelEvent {
        KernelEvent::Request {
            source: app(),
            expects_response: expects.then_some(5),
            body: body.to_vec(),
        }
    }
    fn responses(calls: &[KernelCall]) -> Vec<Vec<u8>> {
        calls
            .iter()
            .filter_map(|c| match c {
                KernelCall::SendResponse { body } => Some(body.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ping_info_and_garbage_through_the_driver() {
        let mut d = Driver::new(our(), BasicService::new("presence", our()));
        let start = d.start(0, None, 1);
        assert!(start.iter().any(
            |c| matches!(c, KernelCall::Print { message, .. } if message.contains("started"))
        ));

        let r = responses(&d.step(1, request(br#"{"Ping":{}}"#, true)));
        assert_eq!(r.len(), 1);
        match decode_response::<BaseResponse>(&r[0]).unwrap() {
            BaseResponse::Pong(p) => assert_eq!(
                (p.node.as_str(), p.protocol_version),
                ("alice.os", crate::api::PROTOCOL_VERSION)
            ),
            other => panic!("{other:?}"),
        }
        let r = responses(&d.step(2, request(br#"{"Info":{}}"#, true)));
        match decode_response::<BaseResponse>(&r[0]).unwrap() {
            BaseResponse::Info(i) => {
                assert_eq!(i.name, "presence");
                assert_eq!(i.version, crate::api::PACKAGE_VERSION);
            }
            other => panic!("{other:?}"),
        }
        for garbage in [
            &b"\xff\xfe"[..],
            b"",
            b"[1,2]",
            br#"{"Ping":{}"#,
            br#""{\"Ping\":{}}""#,
            br#"{"Launch":{}}"#,
        ] {
            let r = responses(&d.step(3, request(garbage, true)));
            assert_eq!(r.len(), 1, "one answer for {garbage:?}");
            let e = decode_response::<BaseResponse>(&r[0]).unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{garbage:?}");
            assert!(!e.message.is_empty());
        }
        let big = vec![b' '; crate::api::MAX_REQUEST_BYTES + 1];
        let e = decode_response::<BaseResponse>(&responses(&d.step(4, request(&big, true)))[0])
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::TooLarge);
        // A request that expects no response gets none.
        assert!(responses(&d.step(5, request(br#"{"Ping":{}}"#, false))).is_empty());
    }

    /// A core that does what a test tells it to, to probe the driver's rules.
    struct Scripted {
        on_request: Vec<Effect>,
        seen: Vec<Input>,
    }
    impl Service for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn handle(&mut self, _now: Millis, input: Input) -> Vec<Effect> {
            let out = match &input {
                Input::Request { .. } => self.on_request.clone(),
                Input::Timer { .. } | Input::Response { .. } | Input::SendFailed { .. } => {
                    vec![Effect::Reply {
                        body: b"late".to_vec(),
                    }]
                }
                Input::Start { .. } => vec![],
            };
            self.seen.push(input);
            out
        }
    }

    fn scripted(on_request: Vec<Effect>) -> Driver<Scripted> {
        let mut d = Driver::new(
            our(),
            Scripted {
                on_request,
                seen: vec![],
            },
        );
        d.start(0, Some(b"saved".to_vec()), 9);
        d
    }

    #[test]
    fn start_hands_over_persisted_state_and_seed() {
        let d = scripted(vec![]);
        assert_eq!(
            d.core().seen[0],
            Input::Start {
                persisted: Some(b"saved".to_vec()),
                seed: 9
            }
        );
    }

    #[test]
    fn timers_go_to_the_timer_process_and_come_back_as_timer_inputs() {
        let mut d = scripted(vec![Effect::SetTimer {
            after_ms: 2_500,
            context: b"tick".to_vec(),
        }]);
        let calls = d.step(1, request(b"{}", false));
        let KernelCall::SendRequest {
            target,
            body,
            expects_response,
            context,
        } = &calls[0]
        else {
            panic!("{calls:?}")
        };
        assert_eq!(target.to_string(), "alice.os@timer:distro:sys");
        assert_eq!(body, br#"{"SetTimer":2500}"#);
        assert_eq!(*expects_response, Some(3));
        let calls = d.step(
            2_501,
            KernelEvent::Response {
                source: target.clone(),
                body: vec![],
                context: context.clone(),
            },
        );
        assert_eq!(
            d.core().seen.last(),
            Some(&Input::Timer {
                context: b"tick".to_vec()
            })
        );
        // The core's reply from a timer handler breaks the reply rule: dropped, logged, counted.
        assert!(responses(&calls).is_empty());
        assert_eq!(d.dropped_replies(), 1);
        assert!(calls.iter().any(|c| matches!(c, KernelCall::Print { message, .. } if message.contains("outside a request"))));
        // A timer whose request failed still fires.
        d.step(
            9_000,
            KernelEvent::SendError {
                kind: SendErrorKind::Timeout,
                target: target.clone(),
                context: context.clone(),
            },
        );
        assert_eq!(
            d.core().seen.last(),
            Some(&Input::Timer {
                context: b"tick".to_vec()
            })
        );
    }

    #[test]
    fn send_contexts_come_back_with_responses_and_errors() {
        let peer = addr("bob.os@presence:p2p-patterns:p2p-patterns.os");
        let mut d = scripted(vec![
            Effect::Send {
                to: peer.clone(),
                body: b"{}".to_vec(),
                timeout_s: Some(7),
                context: b"ctx-1".to_vec(),
            },
            Effect::Send {
                to: peer.clone(),
                body: b"{}".to_vec(),
                timeout_s: None,
                context: b"ignored".to_vec(),
            },
        ]);
        let calls = d.step(1, request(b"{}", false));
        let ctxs: Vec<_> = calls
            .iter()
            .filter_map(|c| match c {
                KernelCall::SendRequest {
                    context,
                    expects_response,
                    ..
                } => Some((context.clone(), *expects_response)),
                _ => None,
            })
            .collect();
        assert_eq!(ctxs.len(), 2);
        assert_eq!(ctxs[1], (None, None), "fire-and-forget carries no context");
        let ctx = ctxs[0].0.clone();
        d.step(
            2,
            KernelEvent::Response {
                source: peer.clone(),
                body: b"ok".to_vec(),
                context: ctx.clone(),
            },
        );
        assert_eq!(
            d.core().seen.last(),
            Some(&Input::Response {
                from: peer.clone(),
                body: b"ok".to_vec(),
                context: b"ctx-1".to_vec()
            })
        );
        d.step(
            3,
            KernelEvent::SendError {
                kind: SendErrorKind::Offline,
                target: peer.clone(),
                context: ctx,
            },
        );
        assert_eq!(
            d.core().seen.last(),
            Some(&Input::SendFailed {
                kind: SendErrorKind::Offline,
                target: peer.clone(),
                context: b"ctx-1".to_vec()
            })
        );
        // A response nobody asked for never reaches the core.
        let n = d.core().seen.len();
        d.step(
            4,
            KernelEvent::Response {
                source: peer,
                body: vec![],
                context: None,
            },
        );
        assert_eq!(d.core().seen.len(), n);
    }

    #[test]
    fn reply_rule_one_reply_per_request_and_always_an_answer() {
        let mut d = scripted(vec![
            Effect::Reply {
                body: b"1".to_vec(),
            },
            Effect::Reply {
                body: b"2".to_vec(),
            },
        ]);
        assert_eq!(
            responses(&d.step(1, request(b"{}", true))),
            vec![b"1".to_vec()]
        );
        let mut silent = scripted(vec![]);
        let r = responses(&silent.step(1, request(b"{}", true)));
        assert_eq!(
            decode_response::<()>(&r[0]).unwrap_err().code,
            ErrorCode::Internal
        );
        assert!(responses(&silent.step(2, request(b"{}", false))).is_empty());
    }
}
