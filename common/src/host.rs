//! Carrying out a driver's [`KernelCall`]s on a host, in order — the part of the node runner
//! that has a decision in it, kept here (pure over the [`Host`] trait) so it is tested
//! natively. The WASM runner implements [`Host`] with process_lib and the node's sqlite
//! process.
//!
//! The durability promise lives here: a `Store` call is written (the host's `store` returns
//! only once the database answered) before any later call of the same step is made, so a
//! reply or send that follows a forced write never gets ahead of it. If a write fails, the
//! rest of the step is *not* carried out — nothing that depended on it is said — and
//! [`execute`] returns the error; the runner then stops the process so it restarts from what
//! is on disk.

use crate::driver::{Driver, KernelCall, KernelEvent};
use crate::ids::Address;
use crate::service::{Now, Service};

/// What a node (or a test) offers the runner.
pub trait Host {
    fn send_request(
        &mut self,
        target: &Address,
        body: Vec<u8>,
        blob: Option<Vec<u8>>,
        expects_response: Option<u64>,
        context: Option<Vec<u8>>,
    );
    fn send_response(&mut self, body: Vec<u8>, blob: Option<Vec<u8>>);
    /// Write the ops in one transaction; return once durable.
    fn store(&mut self, ops: &[(Vec<u8>, Option<Vec<u8>>)], forced: bool) -> Result<(), String>;
    fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String>;
    fn set_state(&mut self, state: &[u8]);
    fn print(&mut self, verbosity: u8, message: &str);
}

/// Carry out `calls` (and the calls of any read answers they lead to), in order.
pub fn execute<S: Service>(
    driver: &mut Driver<S>,
    host: &mut impl Host,
    now: Now,
    calls: Vec<KernelCall>,
) -> Result<(), String> {
    let mut queue = vec![calls];
    while let Some(calls) = queue.pop() {
        let mut reads = Vec::new();
        for call in calls {
            match call {
                KernelCall::SendRequest {
                    target,
                    body,
                    blob,
                    expects_response,
                    context,
                } => host.send_request(&target, body, blob, expects_response, context),
                KernelCall::SendResponse { body, blob } => host.send_response(body, blob),
                KernelCall::Store { ops, forced } => host.store(&ops, forced)?,
                KernelCall::Read { key, token } => {
                    let value = host.read(&key)?;
                    reads.push(KernelEvent::ReadDone { token, value });
                }
                KernelCall::SetState(s) => host.set_state(&s),
                KernelCall::Print { verbosity, message } => host.print(verbosity, &message),
            }
        }
        for ev in reads.into_iter().rev() {
            queue.push(driver.step(now, ev));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{Batch, Effect, Input};

    #[derive(Default)]
    struct Recorder {
        log: Vec<String>,
        fail_store: bool,
        db: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    }
    impl Host for Recorder {
        fn send_request(
            &mut self,
            target: &Address,
            _b: Vec<u8>,
            _blob: Option<Vec<u8>>,
            _e: Option<u64>,
            _c: Option<Vec<u8>>,
        ) {
            self.log.push(format!("send {}", target.process.process));
        }
        fn send_response(&mut self, body: Vec<u8>, _blob: Option<Vec<u8>>) {
            self.log
                .push(format!("respond {}", String::from_utf8_lossy(&body)));
        }
        fn store(
            &mut self,
            ops: &[(Vec<u8>, Option<Vec<u8>>)],
            forced: bool,
        ) -> Result<(), String> {
            if self.fail_store {
                return Err("disk full".into());
            }
            for (k, v) in ops {
                match v {
                    Some(v) => self.db.insert(k.clone(), v.clone()),
                    None => self.db.remove(k),
                };
            }
            self.log
                .push(format!("store {} forced={forced}", ops.len()));
            Ok(())
        }
        fn read(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
            self.log.push("read".into());
            Ok(self.db.get(key).cloned())
        }
        fn set_state(&mut self, _s: &[u8]) {
            self.log.push("set_state".into());
        }
        fn print(&mut self, _v: u8, _m: &str) {}
    }

    /// Acknowledges an edit: forced write, then a send to a peer, then the reply. On Read
    /// answers it replies with what it read.
    struct Acker;
    impl Service for Acker {
        type Ctx = ();
        type Timer = ();
        fn name(&self) -> &'static str {
            "acker"
        }
        fn handle(&mut self, _now: Now, input: Input<(), ()>) -> Vec<Effect<(), ()>> {
            match input {
                Input::Request { id, body, .. } if body == b"read" => {
                    vec![
                        Effect::Read {
                            key: b"k".to_vec(),
                            ctx: (),
                        },
                        Effect::Log {
                            level: crate::Level::Debug,
                            message: format!("{id:?}"),
                        },
                    ]
                }
                Input::Request { id, .. } => vec![
                    Effect::Store(Batch::forced().put(b"k".to_vec(), b"v".to_vec())),
                    Effect::notify(
                        Address::parse("bob.os@sync:p2p-patterns:p2p-patterns.os").unwrap(),
                        b"{}".to_vec(),
                    ),
                    Effect::reply(id, b"done".to_vec()),
                ],
                Input::Read { value, .. } => vec![Effect::Log {
                    level: crate::Level::Info,
                    message: format!("read {value:?}"),
                }],
                _ => vec![],
            }
        }
    }

    fn request(body: &[u8]) -> KernelEvent {
        KernelEvent::Request {
            source: Address::parse("alice.os@app:app:x.os").unwrap(),
            expects_response: Some(5),
            body: body.to_vec(),
            blob: None,
        }
    }

    #[test]
    fn a_forced_batch_is_written_before_the_sends_and_the_reply_of_the_same_step() {
        let our = Address::parse("alice.os@sync:p2p-patterns:p2p-patterns.os").unwrap();
        let mut d = Driver::new(our, Acker);
        let mut host = Recorder::default();
        let calls = d.start(Now::at(0), None, Default::default(), 1);
        execute(&mut d, &mut host, Now::at(0), calls).unwrap();
        let calls = d.step(Now::at(1), request(b"edit"));
        execute(&mut d, &mut host, Now::at(1), calls).unwrap();
        assert_eq!(
            host.log,
            vec!["store 1 forced=true", "send sync", "respond done"]
        );
    }

    #[test]
    fn a_failed_write_stops_the_step_before_anything_that_depends_on_it() {
        let our = Address::parse("alice.os@sync:p2p-patterns:p2p-patterns.os").unwrap();
        let mut d = Driver::new(our, Acker);
        let mut host = Recorder {
            fail_store: true,
            ..Default::default()
        };
        let calls = d.step(Now::at(1), request(b"edit"));
        let err = execute(&mut d, &mut host, Now::at(1), calls).unwrap_err();
        assert_eq!(err, "disk full");
        assert!(
            host.log.is_empty(),
            "nothing sent or answered: {:?}",
            host.log
        );
    }

    #[test]
    fn reads_come_back_to_the_core_in_the_same_prompt() {
        let our = Address::parse("alice.os@sync:p2p-patterns:p2p-patterns.os").unwrap();
        let mut d = Driver::new(our, Acker);
        let mut host = Recorder::default();
        host.db.insert(b"k".to_vec(), b"stored".to_vec());
        let calls = d.step(Now::at(1), request(b"read"));
        execute(&mut d, &mut host, Now::at(1), calls).unwrap();
        // The core did not answer after its read: the driver did, in the read's prompt.
        assert_eq!(host.log[0], "read");
        assert!(
            host.log[1].starts_with("respond {\"Err\""),
            "{:?}",
            host.log
        );
        assert_eq!(d.pending_replies(), 0);
    }
}
