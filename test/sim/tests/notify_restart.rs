//! notify across restarts: a subscriber that comes back with less than it acknowledged
//! (it restored older storage) is sent the rest again; a node whose first `Resume` (or
//! `Graft`) after a restart goes out before its networking is up sends it again until
//! answered.

use notify::core::{Config, Notify};
use notify::streams::StreamKey;
use p2p_common::api::notify::{PayloadKind, Request, Response};
use p2p_sim::scenarios::notify::{
    answer, call, cluster, payload, received, setup, Got, NAME, TOPIC,
};
use p2p_sim::{Mode, NetConfig, Sim, SimConfig};

fn sim(seed: u64, nodes: usize, mode: Mode, ncfg: Config) -> Sim {
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.net = NetConfig::for_mode(mode);
    cfg.record_trace = true;
    cluster(cfg, ncfg)
}

fn publish(s: &mut Sim, k: u64) {
    let req = Request::Publish {
        topic: TOPIC.into(),
        kind: PayloadKind::Json,
    };
    for _ in 0..5 {
        let h = call(s, 0, &req, Some(payload(k)));
        s.run_for(3_000).unwrap();
        if matches!(answer(s, h), Some(Ok(Response::Published(_)))) {
            return;
        }
    }
    panic!("publish {k} not answered");
}

fn last_of(s: &Sim, i: usize) -> u64 {
    let k = StreamKey::new(s.node_id(0), TOPIC);
    s.core::<Notify>(i, NAME)
        .unwrap()
        .streams()
        .get(&k)
        .map_or(0, |st| st.last)
}

fn seqs(got: &[Got]) -> Vec<u64> {
    got.iter()
        .filter_map(|g| match g {
            Got::Note { seq, .. } => Some(*seq),
            Got::Lost { .. } => None,
        })
        .collect()
}

/// Bob acknowledged 1..=5, then comes back with the storage he had at 2: alice, who
/// thinks he has 5, sends 3..=5 again on his `Resume`, and what follows too.
fn older_storage(mode: Mode) {
    let mut s = sim(8, 2, mode, Config::default());
    setup(&mut s, &[1]).unwrap();
    let alice = s.node_id(0).clone();
    for k in 0..2 {
        publish(&mut s, k);
    }
    s.run_for(10_000).unwrap();
    assert_eq!(last_of(&s, 1), 2);
    let backup = s.records(1, NAME).unwrap().clone();
    for k in 2..5 {
        publish(&mut s, k);
    }
    s.run_for(10_000).unwrap();
    assert_eq!(last_of(&s, 1), 5);
    s.crash(1);
    s.restore_records(1, NAME, backup);
    s.restart(1);
    s.run_for(60_000).unwrap();
    assert_eq!(last_of(&s, 1), 5, "bob was sent 3..=5 again");
    publish(&mut s, 5);
    s.run_for(10_000).unwrap();
    assert_eq!(last_of(&s, 1), 6);
    // His app has every number, in order, 6 last.
    let got = seqs(&received(&s, 1, &alice));
    let mut once = got.clone();
    once.dedup();
    assert!(once.windows(2).all(|w| w[0] < w[1] || w[1] == 3), "{got:?}");
    assert_eq!(got.last(), Some(&6), "{got:?}");
    assert!((1..=6).all(|n| got.contains(&n)), "{got:?}");
    // Alice counts each notification delivered once.
    let st = s.core::<Notify>(0, NAME).unwrap().stats();
    assert_eq!(st.topics[0].subscribers[0].delivered, 6);
}

#[test]
fn a_subscriber_back_with_older_storage_is_sent_the_rest_again_realistic() {
    older_storage(Mode::Realistic);
}

#[test]
fn a_subscriber_back_with_older_storage_is_sent_the_rest_again_hostile() {
    older_storage(Mode::Hostile);
}

/// After a restart, the first `Resume` (or a tree member's `Graft`) can go out before
/// the node's networking is up: it fails, and is sent again after a jittered backoff,
/// one at a time, until answered (at most `MAX_RESTART_TRIES` times).
#[test]
fn the_first_resume_after_a_restart_is_sent_again_until_answered() {
    use notify::core::{Ctx, Tick};
    use p2p_common::{Address, Effect, Input, Now, ProcessId, SendErrorKind, Service};
    let mut records = p2p_common::Records::new();
    records.insert(
        b"s bob.os news".to_vec(),
        br#"{"first": 4, "last": 3, "remote": true}"#.to_vec(),
    );
    let alice = Address::new("alice.os".parse().unwrap(), ProcessId::ours(NAME));
    let mut n = Notify::new(alice, Config::default());
    let resumes = |out: &[Effect<Ctx, Tick>]| -> Vec<(Address, Ctx)> {
        out.iter()
            .filter_map(|e| match e {
                Effect::Send {
                    to,
                    body,
                    expect: Some(x),
                    ..
                } if matches!(
                    serde_json::from_slice::<Request>(body),
                    Ok(Request::Resume { up_to: 3, .. })
                ) =>
                {
                    Some((to.clone(), x.ctx.clone()))
                }
                _ => None,
            })
            .collect()
    };
    let mut t = 1_000;
    let out = n.handle(
        Now::at(t),
        Input::Start {
            persisted: None,
            records,
            seed: 3,
        },
    );
    let mut sent = resumes(&out);
    let mut tries = 0;
    for _ in 0..3 {
        assert_eq!(sent.len(), 1, "one Resume in flight");
        let (to, ctx) = sent.pop().unwrap();
        assert_eq!(to.node.as_str(), "bob.os");
        tries += 1;
        t += 10;
        let out = n.handle(
            Now::at(t),
            Input::SendFailed {
                kind: SendErrorKind::Offline,
                target: to,
                ctx,
            },
        );
        let timer = out
            .iter()
            .find_map(|e| match e {
                Effect::SetTimer { after_ms, timer } => Some((*after_ms, timer.clone())),
                _ => None,
            })
            .expect("sent again later");
        assert!((1_000..=30_000).contains(&timer.0), "{timer:?}");
        t += timer.0;
        sent = resumes(&n.handle(Now::at(t), Input::Timer(timer.1)));
    }
    assert_eq!(tries, 3);
    // Answered: done; nothing more is sent.
    let (to, ctx) = sent.pop().unwrap();
    let out = n.handle(
        Now::at(t + 5),
        Input::Response {
            from: to,
            body: br#"{"Ok": "Accepted"}"#.to_vec(),
            blob: None,
            ctx,
        },
    );
    assert!(resumes(&out).is_empty());
    assert!(!out.iter().any(|e| matches!(e, Effect::SetTimer { .. })));
}
