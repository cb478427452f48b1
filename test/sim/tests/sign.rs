//! `sign:sign:sys` in the simulator: the same model the emulator runs (p2p_common::sign),
//! so a core that signs with NetKeySign and checks with NetKeyVerify behaves as on a node.

use p2p_common::sign::{sign_address, sign_body, signed_bytes, verify_body};
use p2p_common::{Address, ProcessId, SendErrorKind};
use p2p_sim::{AppOutcome, NetConfig, Sim, SimConfig};

fn app() -> ProcessId {
    ProcessId::parse("app:emu:p2p-patterns.os").unwrap()
}

fn run(sim: &mut Sim, from: usize, to: &Address, body: Vec<u8>, blob: &[u8]) -> u64 {
    let h = sim.request_with_blob(from, app(), to, body, Some(blob.to_vec()), 5);
    sim.run_for(6_000).unwrap();
    h
}

fn sign_and_verify(net: NetConfig) {
    let mut cfg = SimConfig::new(3, 3);
    cfg.net = net;
    let mut sim = Sim::new(cfg);
    let alice = p2p_sim::node_name(0);
    let bob = p2p_sim::node_name(1);
    let h = run(&mut sim, 0, &sign_address(&alice), sign_body(), b"hello");
    assert!(
        matches!(sim.outcome(h), Some(AppOutcome::Response(b)) if b == br#""NetKeySign""#),
        "{:?}",
        sim.outcome(h)
    );
    let sig = sim
        .outcome_blob(h)
        .expect("the signature is in the blob")
        .to_vec();
    assert_eq!(sig.len(), 64);
    let signer = Address::new(alice.clone(), app());
    let keys = p2p_common::sign::model::NetKeys::new(3);
    assert!(keys.verify(alice.as_str(), &signed_bytes(&signer, b"hello"), &sig));

    // bob's node checks alice's signature.
    let verify = |sim: &mut Sim, who: &Address, msg: &[u8]| {
        let h = run(sim, 1, &sign_address(&bob), verify_body(who, &sig), msg);
        match sim.outcome(h) {
            Some(AppOutcome::Response(b)) => String::from_utf8(b.clone()).unwrap(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        verify(&mut sim, &signer, b"hello"),
        r#"{"NetKeyVerify":true}"#
    );
    assert_eq!(
        verify(&mut sim, &signer, b"hullo"),
        r#"{"NetKeyVerify":false}"#
    );
    let impostor = Address::new(bob.clone(), app());
    assert_eq!(
        verify(&mut sim, &impostor, b"hello"),
        r#"{"NetKeyVerify":false}"#
    );

    // A body the sign process cannot parse gets no answer: the caller times out.
    let h = run(
        &mut sim,
        0,
        &sign_address(&alice),
        b"\"Dance\"".to_vec(),
        b"",
    );
    assert!(
        matches!(
            sim.outcome(h),
            Some(AppOutcome::Failed(SendErrorKind::Timeout))
        ),
        "{:?}",
        sim.outcome(h)
    );
}

#[test]
fn sign_and_verify_realistic() {
    sign_and_verify(NetConfig::realistic());
}

#[test]
fn sign_and_verify_hostile() {
    // Local messages are never lost, so loss and duplication do not change the answers.
    sign_and_verify(NetConfig::hostile(0.2, 0.1));
}
