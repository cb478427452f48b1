//! Helpers shared by the integration tests: boot the three nodes from the built zip, talk to
//! presence with p2p-common's wire types, wait in virtual time.
#![allow(dead_code)]

use p2p_common::api::presence::{ListFilter, MemberStatus, NodeView, Request, Response};
use p2p_common::api::{decode_response, encode};
use p2p_emu::package::workspace_package_zip;
use p2p_emu::{EmuConfig, Emulator};
use std::time::Instant;

pub const NODES: [&str; 3] = ["alice.os", "bob.os", "charlie.os"];

/// alice.os, bob.os and charlie.os with the package installed and the default app.
pub fn boot3() -> Emulator {
    boot(EmuConfig::default())
}

pub fn boot(cfg: EmuConfig) -> Emulator {
    let zip = workspace_package_zip().unwrap_or_else(|e| panic!("{e:#}"));
    let started = Instant::now();
    let emu = Emulator::boot(cfg, &zip, &NODES).unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!(
        "booted {} nodes in {:.1} s",
        NODES.len(),
        started.elapsed().as_secs_f64()
    );
    emu
}

/// Ask `node`'s presence from its default app.
pub fn presence(emu: &Emulator, node: &str, req: &Request) -> Result<Response, String> {
    let reply = emu
        .request(
            &Emulator::app(node),
            &Emulator::ours(node, "presence"),
            encode(req),
            5,
        )
        .map_err(|e| format!("{req:?} to {node}: {e:?}"))?;
    decode_response::<Response>(&reply.body).map_err(|e| format!("{req:?} to {node}: {e}"))
}

/// Every member `node` knows (one page is enough for three nodes).
pub fn members(emu: &Emulator, node: &str) -> Vec<NodeView> {
    match presence(emu, node, &Request::ListNodes(ListFilter::default())) {
        Ok(Response::Nodes { nodes, .. }) => nodes,
        other => panic!("ListNodes on {node}: {other:?}"),
    }
}

pub fn status_of(emu: &Emulator, node: &str, of: &str) -> Option<(MemberStatus, u64)> {
    members(emu, node)
        .into_iter()
        .find(|v| v.info.node_id.as_str() == of)
        .map(|v| (v.status, v.incarnation))
}

/// Poll `done` every `step_ms` of virtual time, for at most `max_ms`; returns the virtual
/// time it took.
pub fn wait_until(
    emu: &Emulator,
    max_ms: u64,
    step_ms: u64,
    mut done: impl FnMut(&Emulator) -> bool,
) -> Option<u64> {
    let start = emu.now();
    loop {
        if done(emu) {
            return Some(emu.now() - start);
        }
        if emu.now() - start >= max_ms {
            return None;
        }
        emu.run_for(step_ms);
    }
}

/// Whether every node in `viewers` sees every node in `alive` as Alive.
pub fn all_alive(emu: &Emulator, viewers: &[&str], alive: &[&str]) -> bool {
    viewers.iter().all(|v| {
        alive
            .iter()
            .all(|a| matches!(status_of(emu, v, a), Some((MemberStatus::Alive, _))))
    })
}
