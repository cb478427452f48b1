//! The WASM runner: process_lib's message loop around [`Driver`]. Everything with a decision
//! in it lives in the pure driver; this file only converts values and calls the kernel.

use crate::api::ApiError;
use crate::driver::{Driver, KernelCall, KernelEvent};
use crate::ids::Address;
use crate::service::{Millis, SendErrorKind, Service};
use hyperware_process_lib as pl;
use std::hash::{BuildHasher, Hasher};

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// A random seed from the host (std's RandomState is seeded from WASI random).
fn seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_ms());
    h.finish()
}

fn to_ours(a: &pl::Address) -> Result<Address, ApiError> {
    Address::parse(&a.to_string())
        .map_err(|e| ApiError::bad_request(format!("unusable source address: {e}")))
}

fn from_kernel(a: &pl::Address) -> Address {
    Address::from_kernel(a.node(), a.process(), a.package(), a.publisher())
}

fn to_pl(a: &Address) -> pl::Address {
    pl::Address::new(
        a.node.as_str(),
        pl::ProcessId::new(
            Some(&a.process.process),
            &a.process.package,
            &a.process.publisher,
        ),
    )
}

fn execute(calls: Vec<KernelCall>) {
    for call in calls {
        match call {
            KernelCall::SendRequest {
                target,
                body,
                expects_response,
                context,
            } => {
                let mut req = pl::Request::to(to_pl(&target)).body(body);
                if let Some(t) = expects_response {
                    req = req.expects_response(t);
                }
                if let Some(c) = context {
                    req = req.context(c);
                }
                if let Err(e) = req.send() {
                    pl::print_to_terminal(0, &format!("send to {target} failed to build: {e}"));
                }
            }
            KernelCall::SendResponse { body } => {
                if let Err(e) = pl::Response::new().body(body).send() {
                    pl::print_to_terminal(0, &format!("response failed to build: {e}"));
                }
            }
            KernelCall::SetState(bytes) => pl::set_state(&bytes),
            KernelCall::Print { verbosity, message } => pl::print_to_terminal(verbosity, &message),
        }
    }
}

/// Run `core` as this process until the process is killed.
pub fn run<S: Service>(our: pl::Address, make: impl FnOnce(Address) -> S) {
    let our = from_kernel(&our);
    let mut driver = Driver::new(our.clone(), make(our));
    let persisted = pl::get_state();
    execute(driver.start(now_ms(), persisted, seed()));
    loop {
        let event = match pl::await_message() {
            Ok(pl::Message::Request {
                source,
                expects_response,
                body,
                ..
            }) => match to_ours(&source) {
                Ok(source) => KernelEvent::Request {
                    source,
                    expects_response,
                    body,
                },
                Err(e) => {
                    execute(driver.reject(expects_response.is_some(), e));
                    continue;
                }
            },
            Ok(pl::Message::Response {
                source,
                body,
                context,
                ..
            }) => KernelEvent::Response {
                // Answers to our own requests: the kernel vouches for the address.
                source: from_kernel(&source),
                body,
                context,
            },
            Err(e) => {
                let kind = if e.kind().is_offline() {
                    SendErrorKind::Offline
                } else {
                    SendErrorKind::Timeout
                };
                KernelEvent::SendError {
                    kind,
                    target: from_kernel(e.target()),
                    context: e.context,
                }
            }
        };
        execute(driver.step(now_ms(), event));
    }
}
