//! `p2p-patterns-test`: the kit test package of p2p-patterns. It speaks kit's tester
//! protocol: the tester on every node sends `{"Run": {"input_node_names": [...], ...}}`; on
//! any node but the first we answer `{"Run": {"Ok": null}}` at once; on the first node we
//! run every test module in [`TESTS`] and answer `Ok`, or `Err(FailResponse)` naming the
//! failed test, file, line and column, and then panic with the reason (as kit's tester_lib
//! does), so the node's log has the message.
//!
//! The tests call our processes the way another app does: through p2p-common's typed
//! clients and plain JSON bodies, with this package's manifest granting our processes
//! messaging. The same component is the agent on the other nodes and the child without
//! grants (see `harness`).
//!
//! Adding a service's tests: write `src/<service>.rs` with `pub fn run(ctx: &Ctx) ->
//! TestResult` (use `check!`/`fail!`), add `mod <service>;` and one line to [`TESTS`].

use crate::hyperware::process::tester::{
    FailResponse, Request as TesterRequest, Response as TesterResponse, RunRequest,
};
use hyperware_process_lib::{
    await_message, call_init, print_to_terminal, Address, Message, Response,
};

mod checks;
mod harness;
mod notify;
mod presence;
mod sync;
mod tester_lib;
mod txcoord;

wit_bindgen::generate!({
    path: "../target/wit",
    world: "p2p-patterns-test-p2p-patterns-dot-os-v0",
    generate_unused_types: true,
    additional_derives: [serde::Deserialize, serde::Serialize],
});

/// Every test module, run in this order on the first node.
const TESTS: &[(&str, fn(&harness::Ctx) -> tester_lib::TestResult)] = &[
    ("presence", presence::run),
    ("sync", sync::run),
    ("notify", notify::run),
    ("txcoord", txcoord::run),
];

call_init!(init);
fn init(our: Address) {
    if our.process() == harness::AGENT || our.process() == harness::LOCAL_AGENT {
        harness::agent_loop(&our);
    } else if our.process() == harness::NO_GRANTS {
        harness::no_grants_child(&our);
    } else if our.process() == harness::SUBSCRIBER {
        harness::subscriber_loop(&our);
    } else {
        test_loop(&our);
    }
}

fn answer(r: TesterResponse) {
    let body = serde_json::to_vec(&r).expect("serializes");
    let _ = Response::new().body(body).send();
}

fn test_loop(our: &Address) {
    loop {
        let Ok(Message::Request { source, body, .. }) = await_message() else {
            continue;
        };
        if source.node() != our.node() {
            print_to_terminal(0, &format!("p2p-patterns-test: ignoring {source}"));
            continue;
        }
        let Ok(TesterRequest::Run(RunRequest {
            input_node_names, ..
        })) = serde_json::from_slice::<TesterRequest>(&body)
        else {
            print_to_terminal(0, "p2p-patterns-test: not a tester Run request");
            continue;
        };
        if input_node_names.first().map(String::as_str) != Some(our.node()) {
            // Not the master node: the tests run on the first node only.
            answer(TesterResponse::Run(Ok(())));
            continue;
        }
        let nodes: Result<Vec<p2p_common::NodeId>, _> =
            input_node_names.iter().map(|n| n.parse()).collect();
        let nodes = match nodes {
            Ok(n) => n,
            Err(e) => {
                report(tester_lib::Fail {
                    test: "tester".into(),
                    file: file!(),
                    line: line!(),
                    column: column!(),
                    message: format!("node names {input_node_names:?}: {e}"),
                });
            }
        };
        let ctx = harness::Ctx {
            our: our.clone(),
            our_node: nodes[0].clone(),
            nodes,
        };
        for (name, test) in TESTS {
            print_to_terminal(0, &format!("p2p-patterns-test: {name}"));
            if let Err(f) = test(&ctx) {
                report(f);
            }
            print_to_terminal(0, &format!("p2p-patterns-test: {name} passed"));
        }
        answer(TesterResponse::Run(Ok(())));
    }
}

/// Tell the tester which check failed, then stop with the reason.
fn report(f: tester_lib::Fail) -> ! {
    answer(TesterResponse::Run(Err(FailResponse {
        test: f.test.clone(),
        file: f.file.into(),
        line: f.line,
        column: f.column,
    })));
    panic!(
        "{} failed at {}:{}:{}: {}",
        f.test, f.file, f.line, f.column, f.message
    );
}
