//! Reaching apps back: our processes message local apps (events, deliveries, votes), which
//! the kernel allows only if the app is `public` or granted us messaging — and it checks our
//! *responses* to an app the same way (platform notes §6.1). So a subscription or a
//! registration is confirmed only after a first message to the app got through: the core
//! sends the app a hello while the app's request is prompting, holds the reply, and answers
//! when the hello's outcome comes back (replying later). A refused hello fails at once with
//! Timeout; the app then gets [`grant_error`], which names the manifest grant it needs.
//!
//! A hello can also reach the app and stay unanswered: an app blocked in
//! `send_and_await_response` on the very request we hold (as the typed clients over
//! `ProcessTransport` are) gets the hello only after our answer. The kernel refuses at once,
//! so a hello that failed [`REFUSED_WITHIN_MS`] or later after it was sent was delivered:
//! that counts as reached ([`Hello::Reached`]), and the app is answered after
//! [`HELLO_TIMEOUT_S`].
//!
//! (If the app that asks is itself the one we cannot reach, the kernel drops that error too
//! and the app sees a Timeout: the typed clients say what to check in that case.)

use crate::api::{ApiError, ErrorCode};
use crate::ids::{Address, ProcessId};
use crate::service::{Effect, Expect, Millis, RequestId, SendErrorKind};
use std::collections::BTreeMap;

/// Timeout of a hello. It is local: refused at once, or answered at once unless the app is
/// busy (then it is still counted as reached, see [`REFUSED_WITHIN_MS`]); a blocking caller
/// waits this long for its answer.
pub const HELLO_TIMEOUT_S: u64 = 2;

/// A hello that failed sooner than this after it was sent was refused by the kernel (it
/// refuses at once); one that failed later reached the app, which did not answer in time.
pub const REFUSED_WITHIN_MS: Millis = HELLO_TIMEOUT_S * 1000 / 2;

/// The `grant_capabilities` entry an app's manifest needs so `process` (one of ours) can
/// message it.
pub fn manifest_snippet(process: &str) -> String {
    grant_snippet(&ProcessId::ours(process))
}

/// The `grant_capabilities` entry a process's manifest needs so `process` can message it.
pub fn grant_snippet(process: &ProcessId) -> String {
    format!(r#""grant_capabilities": ["{process}"]"#)
}

/// The error for an app that our `process` could not message.
pub fn grant_error(process: &str, app: &Address) -> ApiError {
    ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "{process} cannot message {app}: the kernel refuses messages to a local process that \
             is neither public nor granted {process} messaging. Add to that process's entry in \
             its pkg/manifest.json: {}",
            manifest_snippet(process)
        ),
    )
}

/// What a hello was for, and whom to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting<K> {
    pub key: K,
    /// The request to answer (it was prompting when the hello went out).
    pub request: RequestId,
    pub app: Address,
    /// When the hello went out (monotonic clock).
    pub sent: Millis,
}

/// How a hello that got no answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello<K> {
    /// Delivered but unanswered in time (the app is busy, e.g. blocked awaiting the request
    /// we hold): we can message it, so confirm.
    Reached(Waiting<K>),
    /// Refused by the kernel (or the app is unreachable): answer with this error.
    Refused(Waiting<K>, ApiError),
}

/// Hellos in flight, bounded.
#[derive(Debug, Clone)]
pub struct Confirmations<K> {
    next: u64,
    max: usize,
    waiting: BTreeMap<u64, Waiting<K>>,
}

impl<K: Clone> Confirmations<K> {
    pub fn new(max: usize) -> Self {
        Confirmations {
            next: 1,
            max: max.max(1),
            waiting: BTreeMap::new(),
        }
    }

    /// Hellos in flight.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Start confirming `key` for `app` at `now` (monotonic), answering `request` later:
    /// returns the hello to send (its context built by `ctx` from a token), or `Overloaded`
    /// when too many are in flight.
    pub fn begin<C, T>(
        &mut self,
        key: K,
        request: RequestId,
        app: Address,
        hello: Vec<u8>,
        now: Millis,
        ctx: impl FnOnce(u64) -> C,
    ) -> Result<Effect<C, T>, ApiError> {
        if self.waiting.len() >= self.max {
            return Err(ApiError::new(
                ErrorCode::Overloaded,
                "too many confirmations in flight; retry shortly",
            ));
        }
        let token = self.next;
        self.next += 1;
        self.waiting.insert(
            token,
            Waiting {
                key,
                request,
                app: app.clone(),
                sent: now,
            },
        );
        Ok(Effect::Send {
            to: app,
            body: hello,
            blob: None,
            expect: Some(Expect {
                timeout_s: HELLO_TIMEOUT_S,
                ctx: ctx(token),
            }),
        })
    }

    /// The hello got through: confirm.
    pub fn confirmed(&mut self, token: u64) -> Option<Waiting<K>> {
        self.waiting.remove(&token)
    }

    /// The hello failed with `kind` at `now`: refused (with the error naming the grant our
    /// `process` needs), or, for a Timeout that came only after [`REFUSED_WITHIN_MS`],
    /// reached.
    pub fn failed(
        &mut self,
        token: u64,
        process: &str,
        kind: SendErrorKind,
        now: Millis,
    ) -> Option<Hello<K>> {
        let w = self.waiting.remove(&token)?;
        let late = now.saturating_sub(w.sent) >= REFUSED_WITHIN_MS;
        Some(if kind == SendErrorKind::Timeout && late {
            Hello::Reached(w)
        } else {
            let e = grant_error(process, &w.app);
            Hello::Refused(w, e)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_hello_names_the_grant_and_a_full_table_says_overloaded() {
        let app = Address::parse("alice.os@chat:chat:someone.os").unwrap();
        let mut c: Confirmations<&str> = Confirmations::new(1);
        let e: Effect<u64, ()> = c
            .begin(
                "events",
                RequestId(4),
                app.clone(),
                b"{}".to_vec(),
                100,
                |t| t,
            )
            .unwrap();
        let Effect::Send { to, expect, .. } = e else {
            panic!()
        };
        assert_eq!(to, app);
        let token = expect.unwrap().ctx;
        let again: Result<Effect<u64, ()>, _> =
            c.begin("x", RequestId(5), app.clone(), vec![], 100, |t| t);
        assert_eq!(again.unwrap_err().code, ErrorCode::Overloaded);
        // Refused at once (the kernel's answer to a missing capability).
        let Some(Hello::Refused(w, err)) = c.failed(token, "presence", SendErrorKind::Timeout, 100)
        else {
            panic!("an immediate Timeout is a refusal")
        };
        assert_eq!(w.request, RequestId(4));
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err
            .message
            .contains(r#""grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]"#));
        assert!(c.confirmed(token).is_none(), "answered once");
    }

    #[test]
    fn a_hello_that_timed_out_late_reached_a_busy_app() {
        let app = Address::parse("alice.os@chat:chat:someone.os").unwrap();
        let mut c: Confirmations<&str> = Confirmations::new(4);
        let token = |e: Effect<u64, ()>| match e {
            Effect::Send { expect, .. } => expect.unwrap().ctx,
            _ => panic!(),
        };
        let t1 = token(
            c.begin("a", RequestId(1), app.clone(), vec![], 0, |t| t)
                .unwrap(),
        );
        let t2 = token(
            c.begin("b", RequestId(2), app.clone(), vec![], 0, |t| t)
                .unwrap(),
        );
        let t3 = token(
            c.begin("c", RequestId(3), app.clone(), vec![], 0, |t| t)
                .unwrap(),
        );
        let timeout_ms = HELLO_TIMEOUT_S * 1000;
        assert!(matches!(
            c.failed(t1, "presence", SendErrorKind::Timeout, timeout_ms),
            Some(Hello::Reached(w)) if w.request == RequestId(1)
        ));
        assert!(matches!(
            c.failed(
                t2,
                "presence",
                SendErrorKind::Timeout,
                REFUSED_WITHIN_MS - 1
            ),
            Some(Hello::Refused(..))
        ));
        assert!(matches!(
            c.failed(t3, "presence", SendErrorKind::Offline, timeout_ms),
            Some(Hello::Refused(..))
        ));
        assert!(c.is_empty());
    }

    #[test]
    fn grant_snippets_name_the_process() {
        assert_eq!(
            manifest_snippet("sync"),
            r#""grant_capabilities": ["sync:p2p-patterns:p2p-patterns.os"]"#
        );
        let other = ProcessId::parse("chat:chat:someone.os").unwrap();
        assert_eq!(
            grant_snippet(&other),
            r#""grant_capabilities": ["chat:chat:someone.os"]"#
        );
    }
}
