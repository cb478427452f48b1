//! `presence-watch`: an example Hyperware app that uses every p2p-patterns service through
//! p2p-common's typed clients.
//!
//! At start it asks each service for its `Info` (presence through
//! [`PresenceClient`](p2p_common::client::PresenceClient), sync, notify and txcoord through
//! [`BaseClient`](p2p_common::client::BaseClient): `Ping` and `Info` are all they answer
//! today), publishes its NodeInfo, subscribes to presence events and reads
//! the members. Then it prints every membership change, and takes two commands from
//! processes on its node: `{"Join": ["bob.os"]}` and `"Members"`.
//!
//! Everything with a decision in it is [`Watch`] (`src/watch.rs`), behind a
//! [`Transport`](p2p_common::client::Transport), so it is tested natively against the real
//! cores (`tests/watch.rs`). The wasm32 glue below runs it with
//! `p2p_common::client::ProcessTransport` (wasm32 only).
//!
//! The app's manifest entry must grant our processes messaging, or every call times out
//! (the kernel checks capabilities on responses too): see this crate's README.md.

mod watch;

pub use watch::{report, Handled, Survey, Watch, CAPABILITY, NAME, SERVICES};

// ----- wasm32 glue: a minimal `call_init!` process around `Watch` -----
// (`call_init!` expects process_lib's `Address` under that name here.)

#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../target/wit",
    world: "process-v1",
});

#[cfg(target_arch = "wasm32")]
use hyperware_process_lib::Address;

#[cfg(target_arch = "wasm32")]
hyperware_process_lib::call_init!(init);

#[cfg(target_arch = "wasm32")]
fn init(our: Address) {
    use hyperware_process_lib::{await_message, print_to_terminal, Message, Response};
    use p2p_common::client::ProcessTransport;

    let our_node = match p2p_common::NodeId::parse(our.node()) {
        Ok(n) => n,
        Err(e) => return print_to_terminal(0, &format!("{NAME}: odd node id: {e}")),
    };
    let mut watch = Watch::new(&our_node, ProcessTransport);
    let survey = watch.survey();
    let started = watch.start(Vec::new());
    for line in report(&survey, &started) {
        print_to_terminal(0, &format!("{NAME}: {line}"));
    }
    loop {
        let Ok(message) = await_message() else {
            continue; // we send nothing without awaiting it, so no send error is ours to handle
        };
        let Message::Request {
            source,
            expects_response,
            body,
            ..
        } = message
        else {
            continue;
        };
        let from = p2p_common::Address::from_kernel(
            source.node(),
            source.process(),
            source.package(),
            source.publisher(),
        );
        let handled = watch.on_request(&from, &body);
        if let Some(line) = handled.line {
            print_to_terminal(0, &format!("{NAME}: {line}"));
        }
        if expects_response.is_some() {
            let _ = Response::new().body(handled.reply).send();
        }
    }
}
