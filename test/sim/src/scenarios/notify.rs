//! The `notify` scenario: alice's app publishes to a topic that the apps on every other node
//! (bob, charlie, ...) subscribe to, under random faults, with charlie offline for a while
//! and subscriber apps down for a while. After the faults heal and the cluster is quiet,
//! every live subscriber's app has received every notification published within the
//! retention window exactly once, in publisher order, or was told of the gap; plus the
//! helpers the notify tests and the benchmark share.

use super::{figure, heal_all, random_fault, util, Scenario};
use crate::{app_process, factory, AppOutcome, Mode, NetConfig, Sim, SimConfig, SimError};
use notify::core::{Config, Notify};
use p2p_common::api::notify::{AppMessage, PayloadKind, Policy, Request, Response};
use p2p_common::api::{encode, try_decode_response, ApiResult};
use p2p_common::{Address, NodeId};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

pub const NAME: &str = "notify";
/// The topic the scenarios publish to.
pub const TOPIC: &str = "news";

pub struct NotifyScenario;

/// Node 0's app publishes notification `k` (its JSON payload) to [`TOPIC`] and waits
/// 500 ms for the answer: the number it took, if it was acknowledged.
pub fn publish(s: &mut Sim, k: u64) -> Option<u64> {
    let req = Request::Publish {
        topic: TOPIC.into(),
        kind: PayloadKind::Json,
    };
    let h = call(s, 0, &req, Some(payload(k)));
    s.run_for(500).expect("no faults");
    match answer(s, h) {
        Some(Ok(Response::Published(n))) => Some(n.seq),
        _ => None,
    }
}

/// Node 0's notify `Stats`, asked through the local API as an app does.
pub fn stats(s: &mut Sim) -> p2p_common::api::notify::NotifyStats {
    let h = call(
        s,
        0,
        &Request::Stats {
            cursor: None,
            limit: None,
        },
        None,
    );
    s.run_for(100).expect("no faults");
    match answer(s, h) {
        Some(Ok(Response::Stats(st))) => st,
        other => panic!("Stats answered {other:?}"),
    }
}

/// Node `from` (a presence member) gossips to node 0's presence that `victim` is dead, at
/// every incarnation 0..64 (the one that matches applies): what any member can do.
pub fn gossip_dead(s: &mut Sim, from: usize, victim: &NodeId) {
    use p2p_common::api::presence::{MemberStatus, Request as PReq, Update};
    let origin = s.node_id(from).clone();
    let updates: Vec<Update> = (0..64u64)
        .map(|incarnation| Update {
            node: victim.clone(),
            status: MemberStatus::Dead,
            incarnation,
            info: None,
            origin: origin.clone(),
        })
        .collect();
    let to = s.addr(0, "presence");
    let body = encode(&PReq::Gossip { updates });
    let _ = s.request_from(from, p2p_common::ProcessId::ours("presence"), &to, body, 5);
}

/// Settings under which every topic with two or more subscriber nodes relays through a
/// tree of `fanout`.
pub fn tree_config(fanout: u32) -> Config {
    Config {
        tree_threshold: 2,
        fanout,
        ..Config::default()
    }
}

/// A cluster running notify with settings `ncfg`, and presence on every node (notify
/// subscribes to its own node's presence; [`setup`] has every node join node 0's).
pub fn cluster(cfg: SimConfig, ncfg: Config) -> Sim {
    with_presence(Sim::new(cfg)).with_process(NAME, factory(move |a| Notify::new(a, ncfg)))
}

/// `sim` with presence (default settings) on every node.
pub fn with_presence(sim: Sim) -> Sim {
    sim.with_process(
        super::presence::NAME,
        factory(|a| presence::core::Presence::new(a, super::presence::config())),
    )
}

/// Every node with presence joins node 0's (once its networking is up): what notify's
/// liveness view comes from.
pub fn join_presence(sim: &mut Sim) {
    for i in 1..sim.len() {
        if sim.node(i).up
            && sim
                .core::<presence::core::Presence>(i, super::presence::NAME)
                .is_some()
        {
            super::presence::join(sim, i, 0);
        }
    }
}

/// Send `req` (with `blob`) from node `i`'s app to its notify.
pub fn call(sim: &mut Sim, i: usize, req: &Request, blob: Option<Vec<u8>>) -> u64 {
    let to = sim.addr(i, NAME);
    sim.request_with_blob(i, app_process(), &to, encode(req), blob, 10)
}

/// The answer to request `h`, if one arrived and is a notify response.
pub fn answer(sim: &Sim, h: u64) -> Option<ApiResult<Response>> {
    match sim.outcome(h)? {
        AppOutcome::Response(b) => try_decode_response::<Response>(b).ok(),
        _ => None,
    }
}

/// Create the topic on node 0 and subscribe the app of every node in `subscribers`,
/// retrying (loss, networking not up yet) up to a few minutes. Returns each one's first
/// sequence number.
pub fn setup(sim: &mut Sim, subscribers: &[usize]) -> Result<BTreeMap<usize, u64>, SimError> {
    // Remote networking comes up 15-20 s after a start.
    sim.run_for(21_000)?;
    join_presence(sim);
    let h = call(
        sim,
        0,
        &Request::SetTopic {
            topic: TOPIC.into(),
            policy: Policy::Open,
        },
        None,
    );
    sim.run_for(1_000)?;
    if !matches!(answer(sim, h), Some(Ok(Response::TopicSet(_)))) {
        return Err(sim.fail(format!("SetTopic: {:?}", sim.outcome(h))));
    }
    let publisher = sim.node_id(0).clone();
    let mut next = BTreeMap::new();
    for _round in 0..30 {
        let mut handles = Vec::new();
        for &i in subscribers.iter().filter(|i| !next.contains_key(*i)) {
            let req = Request::Subscribe {
                publisher: publisher.clone(),
                topic: TOPIC.into(),
            };
            handles.push((i, call(sim, i, &req, None)));
        }
        if handles.is_empty() {
            break;
        }
        sim.run_for(11_000)?;
        for (i, h) in handles {
            if let Some(Ok(Response::Subscribed { next_seq })) = answer(sim, h) {
                next.insert(i, next_seq);
            }
        }
    }
    if next.len() < subscribers.len() {
        return Err(sim.fail(format!(
            "only {} of {} subscribers got subscribed",
            next.len(),
            subscribers.len()
        )));
    }
    Ok(next)
}

/// The payload of the `k`-th publish attempt.
pub fn payload(k: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({"n": k})).expect("serializes")
}

/// What one app received of the topic, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Note { seq: u64, payload: Vec<u8> },
    Lost { from: u64, to: u64 },
}

/// What node `i`'s app received of node 0's topic, in arrival order.
pub fn received(sim: &Sim, i: usize, publisher: &NodeId) -> Vec<Got> {
    let notify = sim.addr(i, NAME);
    sim.node(i)
        .app_messages
        .iter()
        .filter(|m| m.app == app_process() && m.from == notify)
        .filter_map(
            |m| match serde_json::from_slice::<AppMessage>(&m.body).ok()? {
                AppMessage::HandleNotification(n)
                    if &n.publisher == publisher && n.topic == TOPIC =>
                {
                    Some(Got::Note {
                        seq: n.seq,
                        payload: m.blob.clone().unwrap_or_default(),
                    })
                }
                AppMessage::Lost {
                    publisher: p,
                    topic,
                    range,
                } if &p == publisher && topic == TOPIC => Some(Got::Lost {
                    from: range.from,
                    to: range.to,
                }),
                _ => None,
            },
        )
        .collect()
}

/// The delivery invariant for one subscriber app: starting at `next_seq`, what it received
/// is contiguous and in order (each notification or lost range starts right after the one
/// before), each acknowledged publish (`acked`: seq -> payload) is there with its payload
/// or inside a lost range, nothing unknown arrives (`attempts`: every payload tried), and
/// at most `allowed_dups` copies arrive twice (a redelivery after the node crashed with a
/// delivery to the app in flight). Returns (notes received, sequence numbers told lost).
pub fn check_app(
    got: &[Got],
    next_seq: u64,
    acked: &BTreeMap<u64, Vec<u8>>,
    attempts: &[Vec<u8>],
    allowed_dups: u64,
) -> Result<(u64, u64), String> {
    let mut end = next_seq - 1;
    let (mut notes, mut lost, mut dups) = (0u64, 0u64, 0u64);
    let mut have: BTreeMap<u64, &[u8]> = BTreeMap::new();
    let mut lost_ranges = Vec::new();
    for g in got {
        match g {
            Got::Note { seq, payload } => {
                if *seq <= end {
                    if have.get(seq) == Some(&&payload[..]) {
                        dups += 1;
                        continue;
                    }
                    return Err(format!("seq {seq} arrived after {end} (out of order)"));
                }
                if *seq != end + 1 {
                    return Err(format!(
                        "seq {seq} arrived after {end}: {}..={} missing, and no Lost told",
                        end + 1,
                        seq - 1
                    ));
                }
                if !attempts.contains(payload) {
                    return Err(format!("seq {seq} carries a payload nobody published"));
                }
                if acked.get(seq).is_some_and(|p| p != payload) {
                    return Err(format!("seq {seq} carries another payload than published"));
                }
                have.insert(*seq, payload);
                notes += 1;
                end = *seq;
            }
            Got::Lost { from, to } => {
                if *from != end + 1 || to < from {
                    return Err(format!("Lost {from}..={to} after {end}"));
                }
                lost += to - from + 1;
                lost_ranges.push((*from, *to));
                end = *to;
            }
        }
    }
    if dups > allowed_dups {
        return Err(format!(
            "{dups} notifications arrived twice ({allowed_dups} allowed by crashes)"
        ));
    }
    for seq in acked.keys().filter(|s| **s >= next_seq) {
        let told = lost_ranges.iter().any(|(f, t)| f <= seq && seq <= t);
        if !have.contains_key(seq) && !told {
            return Err(format!(
                "published seq {seq} never arrived and no Lost covers it (got up to {end})"
            ));
        }
    }
    Ok((notes, lost))
}

/// One run: random loss (hostile), faults, charlie isolated and an app down for a while.
fn run_one(seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0071f7);
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.record_trace = record;
    cfg.net = NetConfig::for_mode(mode);
    if mode == Mode::Hostile {
        cfg.net.loss = rng.gen_range(0.0..0.3);
        cfg.net.duplicate = rng.gen_range(0.0..0.1);
    }
    // Odd seeds relay through a tree (of fan-out 2, whatever the cluster's size), so the
    // same faults and invariants exercise both delivery paths.
    let ncfg = if seed % 2 == 1 {
        tree_config(2)
    } else {
        Config::default()
    };
    let mut sim = cluster(cfg, ncfg);
    let subscribers: Vec<usize> = (1..nodes).collect();
    let next = setup(&mut sim, &subscribers)?;
    let publisher = sim.node_id(0).clone();
    let charlie = 2.min(nodes - 1);
    let mut crashes = vec![0u64; nodes];
    let mut attempts = Vec::new();
    let mut handles = Vec::new();
    let steps = 24;
    let (off_from, off_to) = (rng.gen_range(2..8), rng.gen_range(10..18));
    let app_down = rng.gen_range(1..nodes);
    let (down_from, down_to) = (rng.gen_range(4..12), rng.gen_range(12..20));
    for step in 0..steps {
        if step == off_from {
            sim.isolate(charlie);
        }
        if step == off_to {
            sim.heal();
        }
        if step == down_from {
            sim.remove_app(app_down, &app_process());
        }
        if step == down_to {
            sim.add_app(app_down, app_process(), crate::sim::AppSpec::granting_all());
        }
        for _ in 0..rng.gen_range(1..4) {
            let k = attempts.len() as u64;
            attempts.push(payload(k));
            let req = Request::Publish {
                topic: TOPIC.into(),
                kind: PayloadKind::Json,
            };
            handles.push((call(&mut sim, 0, &req, Some(payload(k))), k as usize));
        }
        if rng.gen_bool(0.3) {
            let before: Vec<bool> = (0..nodes).map(|i| sim.node(i).up).collect();
            random_fault(&mut sim, &mut rng);
            for (i, up) in before.into_iter().enumerate() {
                if up && !sim.node(i).up {
                    crashes[i] += 1;
                }
            }
        }
        sim.run_for(rng.gen_range(1_000..8_000))?;
    }
    heal_all(&mut sim);
    sim.add_app(app_down, app_process(), crate::sim::AppSpec::granting_all());
    for i in 0..nodes {
        sim.set_clock_skew(i, 0);
    }
    // Backoff is capped at 30 s; a few rounds of it, with loss.
    sim.run_for(240_000)?;
    let mut acked = BTreeMap::new();
    for &(h, k) in &handles {
        if let Some(Ok(Response::Published(n))) = answer(&sim, h) {
            acked.insert(n.seq, attempts[k].clone());
        }
    }
    for (&i, &first) in &next {
        let got = received(&sim, i, &publisher);
        check_app(&got, first, &acked, &attempts, crashes[i])
            .map_err(|e| sim.fail(format!("{}'s app: {e}", sim.node_id(i))))?;
    }
    Ok(sim)
}

impl Scenario for NotifyScenario {
    fn name(&self) -> &'static str {
        NAME
    }
    fn default_nodes(&self) -> usize {
        4
    }
    fn min_nodes(&self) -> usize {
        3
    }
    fn run(&self, seed: u64, nodes: usize, mode: Mode, record: bool) -> Result<Sim, SimError> {
        run_one(seed, nodes, mode, record)
    }
    fn bench(&self) -> Map<String, Value> {
        bench()
    }

    /// The targets: delivery ≥ 99.9% under 20% loss and churn and on the 200-node
    /// topic, ≤ 1.5 payload copies per receiver (every relay's copies counted), no app
    /// receiving a notification twice, and at the publisher of the 200-node topic fewer than
    /// 10 payload copies and 20 messages (acknowledgements included) per notification,
    /// both in a fault-free run and after a repair (three of its tree children crashed and
    /// came back), where delivery must hold too. The whole bench takes a few seconds, so
    /// `--check` runs all of it.
    fn bench_targets(&self, bench: &Map<String, Value>) -> Option<Vec<String>> {
        let mut failures = Vec::new();
        if let Some(r) = figure(bench, "delivery_ratio", &mut failures) {
            if r < 0.999 {
                failures.push(format!("delivery_ratio {r} < 0.999"));
            }
        }
        if let Some(r) = figure(bench, "topic_delivery_ratio", &mut failures) {
            if r < 0.999 {
                failures.push(format!("topic_delivery_ratio {r} < 0.999"));
            }
        }
        if let Some(p) = figure(bench, "payloads_per_receiver", &mut failures) {
            if p > 1.5 {
                failures.push(format!("payloads_per_receiver {p} > 1.5"));
            }
        }
        for (sends, messages, when) in [
            ("publisher_sends", "publisher_messages", ""),
            (
                "repaired_publisher_sends",
                "repaired_publisher_messages",
                " after a repair",
            ),
        ] {
            if let Some(p) = figure(bench, sends, &mut failures) {
                if p >= 10.0 {
                    failures.push(format!(
                        "{sends} {p} >= 10 payload copies per notification at 200 nodes{when}"
                    ));
                }
            }
            if let Some(p) = figure(bench, messages, &mut failures) {
                if p >= 20.0 {
                    failures.push(format!(
                        "{messages} {p} >= 20 messages per notification at 200 nodes{when}"
                    ));
                }
            }
        }
        if let Some(r) = figure(bench, "repaired_delivery_ratio", &mut failures) {
            if r < 0.999 {
                failures.push(format!("repaired_delivery_ratio {r} < 0.999"));
            }
        }
        if let Some(d) = figure(bench, "duplicates_at_apps", &mut failures) {
            if d > 0.0 {
                failures.push(format!(
                    "duplicates_at_apps {d}: an app got a notification twice"
                ));
            }
        }
        Some(failures)
    }
}

/// The guide's pattern 2, as the baseline: the publisher's app asks it to broadcast, and it
/// sends each known node one `HandleNotification` (expecting an answer within 5 s, counting
/// sent and failed) and forgets it; a receiver keeps what arrives.
pub mod guide {
    use p2p_common::api::encode;
    use p2p_common::{Address, Effect, Input, Now, Service};
    use serde::{Deserialize, Serialize};
    use std::collections::BTreeSet;

    pub const NAME: &str = "guide";

    #[derive(Serialize, Deserialize)]
    pub enum Msg {
        Broadcast { k: u64 },
        HandleNotification { k: u64 },
    }

    pub struct Guide {
        our: Address,
        peers: Vec<Address>,
        pub sent: u64,
        pub failed: u64,
        pub received: BTreeSet<u64>,
    }

    impl Guide {
        pub fn new(our: Address, peers: Vec<Address>) -> Self {
            Guide {
                our,
                peers,
                sent: 0,
                failed: 0,
                received: BTreeSet::new(),
            }
        }
    }

    impl Service for Guide {
        type Ctx = ();
        type Timer = ();
        fn name(&self) -> &'static str {
            NAME
        }
        fn handle(&mut self, _now: Now, input: Input<(), ()>) -> Vec<Effect<(), ()>> {
            match input {
                Input::Request {
                    id,
                    body,
                    timeout_s,
                    ..
                } => {
                    let mut out = Vec::new();
                    match serde_json::from_slice::<Msg>(&body) {
                        Ok(Msg::Broadcast { k }) => {
                            for p in self.peers.iter().filter(|p| p.node != self.our.node) {
                                self.sent += 1;
                                out.push(Effect::request(
                                    p.clone(),
                                    encode(&Msg::HandleNotification { k }),
                                    5,
                                    (),
                                ));
                            }
                        }
                        Ok(Msg::HandleNotification { k }) => {
                            // Handed to the local app at once (what survives a crash).
                            if self.received.insert(k) {
                                out.push(Effect::notify(
                                    Address::new(self.our.node.clone(), crate::app_process()),
                                    encode(&Msg::HandleNotification { k }),
                                ));
                            }
                        }
                        Err(_) => {}
                    }
                    if timeout_s.is_some() {
                        out.push(Effect::reply(id, b"\"ACK\"".to_vec()));
                    }
                    out
                }
                Input::SendFailed { .. } => {
                    self.failed += 1;
                    vec![]
                }
                _ => vec![],
            }
        }
    }
}

/// Figures of one bench run.
struct Run {
    published: u64,
    receivers: u64,
    /// Distinct notifications the receivers' apps got, over published × receivers.
    delivery_ratio: f64,
    baseline_delivery_ratio: f64,
    payloads_per_receiver: f64,
    publisher_sends: f64,
    publisher_messages: f64,
    p50_delivery_ms: u64,
    p99_delivery_ms: u64,
    duplicates_at_apps: u64,
}

/// Payload copies node 0 of `sim` sent for its topic so far: the topic's `sent` (direct,
/// and as the root of the topic's tree).
fn publisher_copies(sim: &Sim) -> u64 {
    sim.core::<Notify>(0, NAME).map_or(0, |n| {
        n.stats()
            .topics
            .iter()
            .filter(|t| t.topic == TOPIC)
            .map(|t| t.sent)
            .sum::<u64>()
    })
}

/// Relays whose crash and return the bench's repair run measures after.
pub const REPAIRED_RELAYS: usize = 3;
/// How long after their return the repair run starts measuring.
pub const REPAIR_WAIT_MS: u64 = 90_000;

/// Publish `count` notifications from node 0 to every other node's app, `gap_ms` apart,
/// with `churn` (a random subscriber crashes or restarts every 5 s), the guide's loop
/// alongside; then heal and wait. With `repair`, first [`REPAIRED_RELAYS`] of the
/// publisher's tree children crash while 6 notifications are published (their subtrees
/// graft), and come back; the publisher's figures are then measured from
/// [`REPAIR_WAIT_MS`] after their return on (the delivery figures cover every
/// notification). Deterministic for its seed.
#[allow(clippy::too_many_arguments)]
fn bench_run(
    seed: u64,
    nodes: usize,
    net: NetConfig,
    count: u64,
    gap_ms: u64,
    churn: bool,
    repair: bool,
) -> Result<Run, SimError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cfg = SimConfig::new(seed, nodes);
    cfg.net = net;
    let peers: Vec<Address> = (0..nodes)
        .map(|i| Address::ours(&crate::node_name(i), guide::NAME))
        .collect();
    let mut sim = cluster(cfg, Config::default()).with_process(
        guide::NAME,
        factory(move |a| guide::Guide::new(a, peers.clone())),
    );
    // The guide's receivers hand what they get to the app, which is public for that.
    for i in 0..nodes {
        let mut spec = crate::sim::AppSpec::granting_all();
        spec.public = true;
        sim.add_app(i, app_process(), spec);
    }
    let subscribers: Vec<usize> = (1..nodes).collect();
    let next = setup(&mut sim, &subscribers)?;
    let publisher = sim.node_id(0).clone();
    let mut handles = Vec::new();
    let mut first_k = 0;
    if repair {
        sim.run_for(10_000)?;
        let key = notify::streams::StreamKey::new(&publisher, TOPIC);
        let relays: Vec<usize> = sim
            .core::<Notify>(0, NAME)
            .and_then(|n| n.relays().get(&key))
            .map(|t| t.roster.children(&publisher))
            .unwrap_or_default()
            .iter()
            .take(REPAIRED_RELAYS)
            .filter_map(|id| sim.node_index(id))
            .collect();
        if relays.len() < REPAIRED_RELAYS {
            return Err(sim.fail(format!("no relay tree to repair: {relays:?}")));
        }
        for &r in &relays {
            sim.crash(r);
        }
        for k in 0..6 {
            let req = Request::Publish {
                topic: TOPIC.into(),
                kind: PayloadKind::Json,
            };
            handles.push((call(&mut sim, 0, &req, Some(payload(k))), sim.now()));
            sim.run_for(3_000)?;
        }
        first_k = 6;
        sim.run_for(5_000)?;
        for &r in &relays {
            sim.restart(r);
        }
        // Their networking is up 15-20 s after the start; the publisher's next retry
        // (backoff up to 30 s) brings them what they missed, and their pushes end their
        // children's grafts.
        sim.run_for(REPAIR_WAIT_MS)?;
    }
    let measured_from = handles.len();
    let base = sim.stats.per_process_link.clone();
    let base_copies = publisher_copies(&sim);
    let mut published_at = BTreeMap::new();
    let mut crashed = vec![false; nodes];
    let mut elapsed = 0;
    for k in first_k..first_k + count {
        let req = Request::Publish {
            topic: TOPIC.into(),
            kind: PayloadKind::Json,
        };
        handles.push((call(&mut sim, 0, &req, Some(payload(k))), sim.now()));
        let g = sim.addr(0, guide::NAME);
        sim.request(0, &g, encode(&guide::Msg::Broadcast { k }), 10);
        sim.run_for(gap_ms)?;
        elapsed += gap_ms;
        if churn && elapsed >= 5_000 {
            elapsed = 0;
            let i = rng.gen_range(1..nodes);
            if crashed[i] {
                sim.restart(i);
            } else {
                sim.crash(i);
            }
            crashed[i] = !crashed[i];
        }
    }
    heal_all(&mut sim);
    sim.run_for(300_000)?;
    let mut acked = BTreeMap::new();
    let mut measured = 0u64;
    for (j, (h, t)) in handles.iter().enumerate() {
        if let Some(Ok(Response::Published(n))) = answer(&sim, *h) {
            acked.insert(n.seq, ());
            published_at.insert(n.seq, *t);
            measured += u64::from(j >= measured_from);
        }
    }
    let mut got_total = 0u64;
    let mut dups = 0u64;
    let mut lat = Vec::new();
    let notify = |i: usize| sim.addr(i, NAME);
    for (&i, &first) in &next {
        let mut seen = std::collections::BTreeSet::new();
        for m in sim
            .node(i)
            .app_messages
            .iter()
            .filter(|m| m.from == notify(i))
        {
            if let Ok(AppMessage::HandleNotification(n)) = serde_json::from_slice(&m.body) {
                if n.publisher == publisher && n.seq >= first && acked.contains_key(&n.seq) {
                    if seen.insert(n.seq) {
                        got_total += 1;
                        if let Some(t) = published_at.get(&n.seq) {
                            lat.push(m.at.saturating_sub(*t));
                        }
                    } else {
                        dups += 1;
                    }
                }
            }
        }
    }
    let receivers = subscribers.len() as u64;
    let published = acked.len() as u64;
    let expected = (published * receivers).max(1) as f64;
    let mut guide_got = 0u64;
    for i in 1..nodes {
        let g = sim.addr(i, guide::NAME);
        let got: std::collections::BTreeSet<u64> = sim
            .node(i)
            .app_messages
            .iter()
            .filter(|m| m.from == g)
            .filter_map(|m| match serde_json::from_slice(&m.body) {
                Ok(guide::Msg::HandleNotification { k }) => Some(k),
                _ => None,
            })
            .collect();
        guide_got += got.len() as u64;
    }
    // The publisher's copies (direct and as the tree's root), then every relay's.
    let relayed = |i: usize| -> u64 {
        sim.core::<Notify>(i, NAME).map_or(0, |n| {
            n.stats()
                .relays
                .iter()
                .filter(|r| r.publisher == publisher && r.topic == TOPIC)
                .map(|r| r.payloads)
                .sum()
        })
    };
    let copies = publisher_copies(&sim) + (1..nodes).map(relayed).sum::<u64>();
    let publisher_copies = publisher_copies(&sim) - base_copies;
    // Every notify message to or from the publisher node since the topic was set up (the
    // guide's loop and presence, on the same nodes, are not notify's).
    let mut publisher_msgs = 0u64;
    for (key, c) in &sim.stats.per_process_link {
        let Some(link) = key.strip_prefix("notify ") else {
            continue;
        };
        let before = base.get(key).map_or(0, |c| c.msgs);
        let (from, to) = link.split_once(" -> ").unwrap_or_default();
        if from == publisher.as_str() || to == publisher.as_str() {
            publisher_msgs += c.msgs - before;
        }
    }
    let n = measured.max(1) as f64;
    Ok(Run {
        published,
        receivers,
        delivery_ratio: got_total as f64 / expected,
        baseline_delivery_ratio: guide_got as f64 / (count * receivers).max(1) as f64,
        payloads_per_receiver: copies as f64 / expected,
        publisher_sends: publisher_copies as f64 / n,
        publisher_messages: publisher_msgs as f64 / n,
        p50_delivery_ms: util::percentile(&mut lat, 50),
        p99_delivery_ms: util::percentile(&mut lat, 99),
        duplicates_at_apps: dups,
    })
}

/// The benchmark: delivery under 20% loss and churn in hostile mode against the guide's
/// fire-and-forget loop in the same run (20 nodes: direct fan-out), and the cost at the
/// publisher of a 200-node topic (relayed through the tree).
pub fn bench() -> Map<String, Value> {
    let mut m = Map::new();
    let lossy = bench_run(
        7,
        20,
        NetConfig::hostile(0.2, 0.05),
        100,
        1_000,
        true,
        false,
    )
    .expect("no invariant is checked in the bench");
    m.insert("lossy_nodes".into(), json!(20));
    m.insert("lossy_loss".into(), json!(0.2));
    m.insert("lossy_published".into(), json!(lossy.published));
    m.insert("delivery_ratio".into(), json!(lossy.delivery_ratio));
    m.insert(
        "baseline_delivery_ratio".into(),
        json!(lossy.baseline_delivery_ratio),
    );
    // From publish to the app, over every receiver: a crashed one gets it when it is back.
    m.insert("p50_delivery_ms".into(), json!(lossy.p50_delivery_ms));
    m.insert("p99_delivery_ms".into(), json!(lossy.p99_delivery_ms));
    m.insert("duplicates_at_apps".into(), json!(lossy.duplicates_at_apps));
    let big = bench_run(8, 200, NetConfig::realistic(), 10, 1_000, false, false)
        .expect("no invariant is checked in the bench");
    m.insert("topic_nodes".into(), json!(200));
    m.insert("tree_threshold".into(), json!(notify::core::TREE_THRESHOLD));
    m.insert("tree_fanout".into(), json!(notify::core::FANOUT));
    m.insert("topic_published".into(), json!(big.published));
    m.insert("topic_receivers".into(), json!(big.receivers));
    m.insert("topic_delivery_ratio".into(), json!(big.delivery_ratio));
    m.insert(
        "payloads_per_receiver".into(),
        json!(big.payloads_per_receiver),
    );
    m.insert("publisher_sends".into(), json!(big.publisher_sends));
    m.insert("publisher_messages".into(), json!(big.publisher_messages));
    m.insert("topic_p50_delivery_ms".into(), json!(big.p50_delivery_ms));
    m.insert("topic_p99_delivery_ms".into(), json!(big.p99_delivery_ms));
    // The same topic after a repair: the publisher's cost once the crashed relays are back.
    let repaired = bench_run(8, 200, NetConfig::realistic(), 10, 1_000, false, true)
        .expect("no invariant is checked in the bench");
    m.insert("repaired_relays".into(), json!(REPAIRED_RELAYS));
    m.insert("repair_wait_ms".into(), json!(REPAIR_WAIT_MS));
    m.insert("repaired_published".into(), json!(repaired.published));
    m.insert(
        "repaired_delivery_ratio".into(),
        json!(repaired.delivery_ratio),
    );
    m.insert(
        "repaired_publisher_sends".into(),
        json!(repaired.publisher_sends),
    );
    m.insert(
        "repaired_publisher_messages".into(),
        json!(repaired.publisher_messages),
    );
    m
}

/// The address of notify on node `i` of `sim`.
pub fn notify_of(sim: &Sim, i: usize) -> Address {
    sim.addr(i, NAME)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Map<String, Value> {
        let v = json!({
            "delivery_ratio": 1.0,
            "topic_delivery_ratio": 0.9995,
            "payloads_per_receiver": 1.2,
            "publisher_sends": 8.0,
            "publisher_messages": 16.0,
            "repaired_publisher_sends": 8.1,
            "repaired_publisher_messages": 16.5,
            "repaired_delivery_ratio": 1.0,
            "duplicates_at_apps": 0,
        });
        v.as_object().unwrap().clone()
    }

    #[test]
    fn bench_targets_pass_on_good_figures_and_fail_on_each_bad_one() {
        assert_eq!(NotifyScenario.bench_targets(&good()), Some(vec![]));
        for (key, bad) in [
            ("delivery_ratio", json!(0.998)),
            ("topic_delivery_ratio", json!(0.99)),
            ("payloads_per_receiver", json!(1.6)),
            ("publisher_sends", json!(10.0)),
            ("publisher_messages", json!(20.0)),
            ("repaired_publisher_sends", json!(10.0)),
            ("repaired_publisher_messages", json!(20.0)),
            ("repaired_delivery_ratio", json!(0.99)),
            ("duplicates_at_apps", json!(1)),
        ] {
            let mut b = good();
            b.insert(key.into(), bad);
            let f = NotifyScenario.bench_targets(&b).unwrap();
            assert!(f.len() == 1 && f[0].starts_with(key), "{key}: {f:?}");
            let mut gone = good();
            gone.remove(key);
            let f = NotifyScenario.bench_targets(&gone).unwrap();
            assert!(f.len() == 1 && f[0].contains("missing"), "{key}: {f:?}");
        }
    }
}
