//! Three emulated nodes boot from the built zip; every process answers Ping and Info.

use p2p_emu::package::workspace_package_zip;
use p2p_emu::{EmuConfig, Emulator};
use serde_json::{json, Value};
use std::time::Instant;

const NODES: [&str; 3] = ["alice.os", "bob.os", "charlie.os"];
const PROCESSES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

fn boot() -> Emulator {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let started = Instant::now();
    let emu = Emulator::boot(EmuConfig::default(), &zip, &NODES).unwrap();
    eprintln!("booted in {:.1} s", started.elapsed().as_secs_f64());
    emu
}

#[test]
fn every_process_on_every_node_answers_ping_and_info() {
    let emu = boot();
    for node in NODES {
        let app = Emulator::app(node);
        for p in PROCESSES {
            let to = Emulator::ours(node, p);
            let r = emu
                .request(&app, &to, "\"Ping\"", 5)
                .expect("Ping answered");
            assert_eq!(
                r.json(),
                json!({"Ok": {"Pong": {"node": node, "protocol_version": 1}}}),
                "{to}"
            );
            let r = emu
                .request(&app, &to, "\"Info\"", 5)
                .expect("Info answered");
            let info: &Value = &r.json()["Ok"]["Info"];
            assert_eq!(info["name"], p, "{to}: {}", r.json());
            assert_eq!(info["node"], node);
        }
    }
    emu.assert_no_crashes();
}
