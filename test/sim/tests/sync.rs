//! The sync service on simulated nodes: create, invite, join, edit, converge, persist,
//! refuse non-members and forged changes.

use p2p_common::api::sync::{DocId, Member, Op, Request, Response, Role};
use p2p_common::api::ErrorCode;
use p2p_sim::scenarios::sync::{answer, ask, cluster, setup, PROC};
use p2p_sim::{Mode, SimConfig};
use sync::core::SyncCore;

fn doc() -> DocId {
    "alice.os/notes".parse().unwrap()
}

fn edit(op_id: &str, ops: Vec<Op>) -> Request {
    Request::Edit {
        doc: doc(),
        op_id: op_id.into(),
        ops,
        at: None,
        utf16: false,
    }
}

fn ins(pos: u32, text: &str) -> Op {
    Op::Insert {
        pos,
        text: text.into(),
    }
}

#[test]
fn scenario_runs_edit_and_converge() {
    for mode in [Mode::Realistic, Mode::Hostile] {
        for seed in 0..3 {
            let sim = p2p_sim::scenarios::sync::run(seed, 4, mode, false).unwrap();
            let c = sim.core::<SyncCore>(0, PROC).unwrap();
            let content = c.content(&doc()).unwrap();
            eprintln!(
                "{mode:?} {seed}: {:?} edits={}",
                content.text, c.stats.edits
            );
            assert!(!content.version.0.is_empty(), "something was written");
        }
    }
}
