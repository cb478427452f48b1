//! `Health` on presence, notify and sync: local apps only, strict, and bounded however many
//! nodes talk to us. Each core is driven directly (no driver, no network), and on a simulated
//! cluster for what the answers say after real traffic.

use p2p_common::resilience::health::{HealthReport, MAX_HEALTH_PEERS};
use p2p_common::resilience::Status;
use p2p_common::service::{Effect, Input, RequestId, Service};
use p2p_common::{Address, NodeId, Now, ProcessId};
use p2p_sim::net::NetConfig;
use p2p_sim::sim::{factory, AppOutcome, Sim, SimConfig};
use serde_json::Value;

const SERVICES: [&str; 3] = ["presence", "notify", "sync"];

fn addr(node: &str, process: &str) -> Address {
    Address::new(NodeId::parse(node).unwrap(), ProcessId::ours(process))
}

/// The answer `core` gives `from` for `body`, as JSON.
fn ask<S: Service>(core: &mut S, now: u64, id: u64, from: Address, body: &str) -> Value {
    let out = core.handle(
        Now {
            mono: now,
            wall: 1_764_000_000_000 + now,
        },
        Input::Request {
            id: RequestId(id),
            from,
            body: body.as_bytes().to_vec(),
            blob: None,
            timeout_s: Some(5),
        },
    );
    for e in out {
        if let Effect::Reply { id: r, body, .. } = e {
            if r == RequestId(id) {
                return serde_json::from_slice(&body).unwrap();
            }
        }
    }
    panic!("no answer to {body}");
}

fn start<S: Service>(core: &mut S) {
    core.handle(
        Now {
            mono: 0,
            wall: 1_764_000_000_000,
        },
        Input::Start {
            persisted: None,
            records: Default::default(),
            seed: 7,
        },
    );
}

/// Refusals and bounds on one core: a remote node, even the same process on another node,
/// gets Forbidden; an unknown field is a BadRequest naming it; 100 nodes talking to us give
/// an answer of the 64 busiest, sorted, and `more: 36`.
fn check_core<S: Service>(mut core: S, process: &str) {
    start(&mut core);
    let app = addr("alice.os", "my-app:my-app:someone.os");
    for from in [
        addr("bob.os", process),
        addr("bob.os", "my-app:my-app:someone.os"),
    ] {
        let v = ask(&mut core, 10, 1, from.clone(), r#""Health""#);
        assert_eq!(v["Err"]["code"], "Forbidden", "{process} from {from}: {v}");
        assert!(
            v["Err"]["message"].as_str().unwrap().contains("local-only"),
            "{process}: {v}"
        );
    }
    let v = ask(
        &mut core,
        10,
        2,
        app.clone(),
        r#"{"Health": {"all": true}}"#,
    );
    assert_eq!(v["Err"]["code"], "BadRequest", "{process}: {v}");
    assert!(
        v["Err"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `all`"),
        "{process}: {v}"
    );
    // 100 other nodes ping us, node k k+1 times (Ping is open to anyone, and counted).
    let mut id = 10;
    for k in 0..100u64 {
        for _ in 0..=k {
            id += 1;
            let v = ask(
                &mut core,
                20 + id,
                id,
                addr(&format!("n{k:03}.os"), process),
                r#""Ping""#,
            );
            assert!(v["Ok"]["Pong"].is_object(), "{v}");
        }
    }
    let v = ask(&mut core, 100_000, id + 1, app, r#""Health""#);
    let h: HealthReport = serde_json::from_value(v["Ok"]["Health"].clone())
        .unwrap_or_else(|e| panic!("{process}: {e}: {v}"));
    assert_eq!(h.node, NodeId::parse("alice.os").unwrap());
    assert_eq!(h.peers.len(), MAX_HEALTH_PEERS, "{process}");
    // The two Forbidden callers (bob.os) count too: 101 nodes known, 64 shown.
    assert_eq!(h.more, 101 - MAX_HEALTH_PEERS as u64, "{process}");
    assert!(
        h.peers.windows(2).all(|w| w[0].node < w[1].node),
        "{process}: sorted"
    );
    // The busiest: n036..n099 (n099 pinged 100 times).
    assert_eq!(h.peers[0].node.as_str(), "n036.os", "{process}");
    let last = h.peers.last().unwrap();
    assert_eq!(
        (last.node.as_str(), last.received, last.sent),
        ("n099.os", 100, 0)
    );
    // Nobody answered a request of ours: nothing is known about reachability.
    assert!(
        h.peers.iter().all(|p| p.status == Status::Unknown),
        "{process}"
    );
    assert_eq!(
        h.peers.iter().all(|p| p.breaker.is_some()),
        process != "presence",
        "{process}: breakers are notify's and sync's"
    );
    assert!(
        serde_json::to_vec(&h).unwrap().len() < 64 * 300,
        "{process}: the answer is bounded"
    );
}

#[test]
fn presence_health_is_local_only_strict_and_bounded() {
    check_core(
        presence::core::new(addr("alice.os", "presence")),
        "presence",
    );
}

#[test]
fn notify_health_is_local_only_strict_and_bounded() {
    check_core(notify::core::new(addr("alice.os", "notify")), "notify");
}

#[test]
fn sync_health_is_local_only_strict_and_bounded() {
    check_core(sync::core::new(addr("alice.os", "sync")), "sync");
}

#[test]
fn on_a_cluster_each_service_sees_the_others_reachable_with_counts() {
    let mut cfg = SimConfig::new(21, 3);
    cfg.net = NetConfig::realistic();
    let mut sim = Sim::new(cfg)
        .with_process("presence", factory(presence::core::new))
        .with_process("sync", factory(sync::core::new))
        .with_process("notify", factory(notify::core::new));
    for i in 1..3 {
        sim.http(
            i,
            "presence",
            "POST",
            "/api",
            br#"{"Join": {"bootstrap": ["alice.os"]}}"#.to_vec(),
        );
    }
    sim.run_for(60_000).unwrap();
    for service in SERVICES {
        let h = sim.http(0, service, "POST", "/api", br#""Health""#.to_vec());
        sim.run_for(1_000).unwrap();
        let Some(AppOutcome::Response(_)) = sim.outcome(h) else {
            panic!("{service}: no answer")
        };
        let v: Value = serde_json::from_slice(sim.outcome_blob(h).unwrap()).unwrap();
        let r: HealthReport = serde_json::from_value(v["Ok"]["Health"].clone())
            .unwrap_or_else(|e| panic!("{service}: {e}: {v}"));
        assert_eq!(r.more, 0);
        if service == "presence" {
            // Presence probes everyone: both others are reachable, measured, counted.
            assert_eq!(r.peers.len(), 2, "{v}");
            for p in &r.peers {
                assert_eq!(p.status, Status::Reachable, "{v}");
                assert!(p.srtt_ms.is_some() && p.sent > 0 && p.received > 0, "{v}");
                assert_eq!(p.breaker, None);
            }
        }
    }
}
