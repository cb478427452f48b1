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

use crate::api::{ApiError, ErrorCode};
use crate::ids::Address;
use crate::service::{Effect, Expect, RequestId};
use std::collections::BTreeMap;

/// Timeout of a hello (local, so it is answered at once or refused at once).
pub const HELLO_TIMEOUT_S: u64 = 5;

/// The `grant_capabilities` entry an app's manifest needs so `process` can message it.
pub fn manifest_snippet(process: &str) -> String {
    format!(r#""grant_capabilities": ["{process}:p2p-patterns:p2p-patterns.os"]"#)
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

    /// The hello failed: the waiting request and the error to answer it with.
    pub fn failed(&mut self, token: u64, process: &str) -> Option<(Waiting<K>, ApiError)> {
        let w = self.waiting.remove(&token)?;
        let e = grant_error(process, &w.app);
        Some((w, e))
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
            .begin("events", RequestId(4), app.clone(), b"{}".to_vec(), |t| t)
            .unwrap();
        let Effect::Send { to, expect, .. } = e else {
            panic!()
        };
        assert_eq!(to, app);
        let token = expect.unwrap().ctx;
        let again: Result<Effect<u64, ()>, _> =
            c.begin("x", RequestId(5), app.clone(), vec![], |t| t);
        assert_eq!(again.unwrap_err().code, ErrorCode::Overloaded);
        let (w, err) = c.failed(token, "presence").unwrap();
        assert_eq!(w.request, RequestId(4));
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert!(err
            .message
            .contains(r#""grant_capabilities": ["presence:p2p-patterns:p2p-patterns.os"]"#));
        assert!(c.confirmed(token).is_none(), "answered once");
    }
}
