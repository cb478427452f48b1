//! Reaching apps back: our processes message local apps (events, deliveries, votes), which
//! the kernel allows only if the app is `public` or granted us messaging — and it checks our
//! *responses* to an app the same way (platform notes §6.1). So a subscription or a
//! registration is confirmed only after a first message to the app got through: the core
//! sends the app a hello while the app's request is prompting, holds the reply, and answers
//! when the hello's outcome comes back (replying later). A refused hello fails at once with
//! Timeout; the app then gets [`grant_error`], which names the manifest grant it needs.
//!
//! (If the app that asks is itself the one we cannot reach, the kernel drops that error too
//! and the app sees a Timeout: the typed clients say what to check in that case.)
//!
//! A refusal is immediate (the kernel's `throw_timeout`); a hello that times out *later* did
//! reach the app, which was busy — typically blocked in `send_and_await_response` on the
//! very request we are holding, so it could not answer the hello. That counts as delivered.

use crate::api::{ApiError, ErrorCode};
use crate::ids::Address;
use crate::service::{Effect, Expect, Millis, RequestId, SendErrorKind};
use std::collections::BTreeMap;

/// Timeout of a hello: well under a typical caller's timeout (10 s), so a caller blocked
/// on its request still gets the answer.
pub const HELLO_TIMEOUT_S: u64 = 2;
/// A failure later than this after the hello went out is not a refusal (refusals are
/// immediate): the app got the hello but was busy.
pub const REFUSAL_WITHIN_MS: Millis = 1_000;

/// The `grant_capabilities` entry an app's manifest needs so `process` can message it.
pub fn manifest_snippet(process: &str) -> String {
    format!(r#""grant_capabilities": ["{process}:p2p-patterns:p2p-patterns.os"]"#)
}

/// The `grant_capabilities` entry a process's manifest needs so the process `process`
/// (any full process id) can message it.
pub fn grant_snippet(process: &crate::ids::ProcessId) -> String {
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
    /// When the hello went out (monotonic).
    pub sent_at: Millis,
    /// The app withdrew (e.g. unsubscribed) before the hello's outcome came back.
    pub cancelled: bool,
}

/// How a hello ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelloOutcome<K> {
    /// It reached the app: confirm (unless `cancelled`).
    Delivered(Waiting<K>),
    /// The kernel refused it: answer with the error, which names the grant.
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

    /// Start confirming `key` for `app`, answering `request` later: returns the hello to send
    /// (its context built by `ctx` from a token), or `Overloaded` when too many are in flight.
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
                sent_at: now,
                cancelled: false,
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

    /// The hello failed with `kind` at `now`: refused (at once), or delivered to a busy app.
    pub fn failed(
        &mut self,
        token: u64,
        kind: SendErrorKind,
        now: Millis,
        process: &str,
    ) -> Option<HelloOutcome<K>> {
        let w = self.waiting.remove(&token)?;
        if kind == SendErrorKind::Timeout && now.saturating_sub(w.sent_at) >= REFUSAL_WITHIN_MS {
            return Some(HelloOutcome::Delivered(w));
        }
        let e = grant_error(process, &w.app);
        Some(HelloOutcome::Refused(w, e))
    }

    /// Withdraw every hello in flight for `key`; whether there was one.
    pub fn cancel(&mut self, key: &K) -> bool
    where
        K: PartialEq,
    {
        let mut any = false;
        for w in self.waiting.values_mut().filter(|w| &w.key == key) {
            w.cancelled = true;
            any = true;
        }
        any
    }

    /// Whether a hello for `key` is in flight (and not withdrawn).
    pub fn waiting_for(&self, key: &K) -> bool
    where
        K: PartialEq,
    {
        self.waiting.values().any(|w| &w.key == key && !w.cancelled)
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
        let Some(HelloOutcome::Refused(w, err)) =
            c.failed(token, SendErrorKind::Timeout, 100, "presence")
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
    fn a_late_timeout_is_a_busy_app_and_a_cancel_is_remembered() {
        let app = Address::parse("alice.os@chat:chat:someone.os").unwrap();
        let mut c: Confirmations<Address> = Confirmations::new(4);
        let mut token = 0;
        let _: Effect<u64, ()> = c
            .begin(app.clone(), RequestId(1), app.clone(), vec![], 1_000, |t| {
                token = t;
                t
            })
            .unwrap();
        assert!(c.waiting_for(&app));
        assert!(c.cancel(&app));
        assert!(!c.waiting_for(&app));
        match c.failed(token, SendErrorKind::Timeout, 6_000, "presence") {
            Some(HelloOutcome::Delivered(w)) => assert!(w.cancelled),
            other => panic!("{other:?}"),
        }
        // Offline is never "busy".
        let _: Effect<u64, ()> = c
            .begin(app.clone(), RequestId(2), app.clone(), vec![], 0, |t| {
                token = t;
                t
            })
            .unwrap();
        assert!(matches!(
            c.failed(token, SendErrorKind::Offline, 9_000, "presence"),
            Some(HelloOutcome::Refused(..))
        ));
    }
}
