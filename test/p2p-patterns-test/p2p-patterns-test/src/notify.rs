//! notify as another app uses it: a topic on alice; subscribers on bob and charlie (the
//! test package's `subscriber` process, spawned by the agent there); a publish reaches both;
//! charlie's subscriber exits (the kernel removes it), two more are published, it is
//! spawned again, and it receives exactly what it missed, once, in order; bad bodies and a
//! missing grant get errors.

use crate::checks;
use crate::harness::{AgentCommand, Ctx};
use crate::tester_lib::TestResult;
use crate::{check, fail};
use p2p_common::api::notify::Policy;
use p2p_common::client::{NotifyClient, ProcessTransport};
use p2p_common::NodeId;

const TOPIC: &str = "kit-news";

pub fn run(ctx: &Ctx) -> TestResult {
    fan_out_and_a_subscriber_that_comes_back(ctx)?;
    // After the fan-out: the topic exists, so a Publish without a blob is refused for that.
    bad_bodies(ctx)?;
    checks::without_grant(ctx, "notify: an app without the grant", "notify")
}

fn bad_bodies(ctx: &Ctx) -> TestResult {
    const T: &str = "notify: bad bodies get errors";
    let cases: [(&[u8], &str); 4] = [
        (b"not json", "BadRequest"),
        (br#"{"Ping": {"x": 1}}"#, "BadRequest"),
        (br#"{"Shout": {}}"#, "BadRequest"),
        // Publish carries its payload as the blob; this one has none.
        (
            br#"{"Publish": {"topic": "kit-news", "kind": "Json"}}"#,
            "BadRequest",
        ),
    ];
    let local_only = br#"{"SetTopic": {"topic": "kit", "policy": "Open"}}"#;
    checks::bad_bodies(ctx, T, "notify", &cases, (256 << 10) + 1, local_only)
}

/// What the subscriber on `node` received so far: `(seq, payload)`.
fn received(ctx: &Ctx, node: &NodeId) -> Result<Vec<(u64, String)>, String> {
    let v = ctx.agent(node, &AgentCommand::Received)?;
    serde_json::from_value(v).map_err(|e| format!("not a list of (seq, payload): {e}"))
}

fn payload(n: u64) -> String {
    format!("{{\"n\":{n}}}")
}

fn expected(seqs: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    seqs.map(|n| (n, payload(n))).collect()
}

fn fan_out_and_a_subscriber_that_comes_back(ctx: &Ctx) -> TestResult {
    const T: &str = "notify: a notification fan-out";
    let (us, bob, charlie) = (ctx.node(0), ctx.node(1), ctx.node(2));
    let mut notify = NotifyClient::local(us, ProcessTransport);
    notify.timeout_s = 20;
    if let Err(e) = notify.set_topic(TOPIC, Policy::Open) {
        fail!(T, "set_topic: {e}");
    }
    let subscribe = AgentCommand::Subscribe {
        publisher: us.clone(),
        topic: TOPIC.into(),
    };
    for node in [bob, charlie] {
        match ctx.agent(node, &subscribe) {
            Ok(v) => check!(T, v == 1, "{node}'s subscriber starts at next_seq {v}"),
            Err(e) => fail!(T, "{node}'s subscriber could not subscribe: {e}"),
        }
    }
    let publish = |notify: &mut NotifyClient<ProcessTransport>, n: u64| {
        let value: serde_json::Value = serde_json::from_str(&payload(n)).expect("JSON");
        notify.publish_json(TOPIC, &value)
    };
    for n in 1..=2 {
        match publish(&mut notify, n) {
            Ok(note) => check!(T, note.seq == n, "published {note:?} as number {n}"),
            Err(e) => fail!(T, "publish {n}: {e}"),
        }
    }
    for node in [bob, charlie] {
        let mut last = Ok(vec![]);
        let got = ctx.wait_until(60, 1_000, || {
            last = received(ctx, node);
            last.as_ref().is_ok_and(|r| r.len() >= 2)
        });
        check!(T, got, "{node}'s subscriber received {last:?}");
        check!(
            T,
            last.as_ref().ok() == Some(&expected(1..=2)),
            "{node}'s subscriber received {last:?}"
        );
    }

    const B: &str = "notify: a subscriber that comes back gets what it missed, once, in order";
    if let Err(e) = ctx.agent(charlie, &AgentCommand::SubscriberExit) {
        fail!(B, "{charlie}'s subscriber did not exit: {e}");
    }
    // Gone: the kernel removed it, so the agent cannot reach it.
    let gone = ctx.wait_until(10, 500, || received(ctx, charlie).is_err());
    check!(B, gone, "{charlie}'s subscriber is still there");
    for n in 3..=4 {
        if let Err(e) = publish(&mut notify, n) {
            fail!(B, "publish {n}: {e}");
        }
    }
    let mut last = Ok(vec![]);
    let bob_got = ctx.wait_until(60, 1_000, || {
        last = received(ctx, bob);
        last.as_ref().is_ok_and(|r| r.len() >= 4)
    });
    check!(
        B,
        bob_got && last.as_ref().ok() == Some(&expected(1..=4)),
        "{bob}'s subscriber received {last:?}"
    );
    // Let charlie's notify try (and fail) to deliver to the absent subscriber for a while.
    let _ = ctx.wait_until(5, 5_000, || false);
    // Back: a new life of the same process, which subscribes again (as an app does when it
    // starts); it continues from its cursor.
    match ctx.agent(charlie, &subscribe) {
        Ok(v) => check!(B, v == 3, "{charlie}'s subscriber resumes at next_seq {v}"),
        Err(e) => fail!(B, "{charlie}'s subscriber could not subscribe again: {e}"),
    }
    let mut last = Ok(vec![]);
    let got = ctx.wait_until(60, 1_000, || {
        last = received(ctx, charlie);
        last.as_ref().is_ok_and(|r| r.len() >= 2)
    });
    check!(B, got, "{charlie}'s subscriber, back, received {last:?}");
    // Nothing more comes (no duplicates).
    let _ = ctx.wait_until(10, 10_000, || false);
    let last = received(ctx, charlie);
    check!(
        B,
        last.as_ref().ok() == Some(&expected(3..=4)),
        "{charlie}'s subscriber, back, received {last:?}"
    );
    Ok(())
}
