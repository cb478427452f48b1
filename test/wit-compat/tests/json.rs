//! The WIT describes the JSON exactly: for every request and response of every process, a
//! value built in the WIT-generated types (`w*`) and the same value in p2p-common's types
//! (`ours`) are the same JSON, both ways:
//!
//! * generated value → JSON → our type: equal to our value;
//! * our value → JSON → generated type: equal to the generated value, and written back to
//!   the same JSON as ours (so a field only one side has, or names differently, fails).
//!
//! The variant lists are compared too (serde's lists of both sides), and every variant must
//! have a sample here, so a variant added on either side without the other fails.

use p2p_common::api::presence as ours;
use p2p_common::api::sync as os;
use p2p_common::api::{self as api, wire};
use p2p_common::NodeId;
use serde::de::{DeserializeOwned, Visitor};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt::Debug;
use wit_compat::hyperware::process::{
    notify as wn, p2p_common as wc, presence as wp, sync as ws, txcoord as wt,
};

// ----- the check -----

/// `ours` and `wit` are the same JSON, both ways. Returns the variant tag (or "" for a
/// non-enum).
fn same<O, W>(ours: &O, wit: &W) -> String
where
    O: Serialize + DeserializeOwned + Debug + PartialEq,
    W: Serialize + DeserializeOwned + Debug + PartialEq,
{
    let wit_json = serde_json::to_string(wit).unwrap();
    let decoded: O = serde_json::from_str(&wit_json)
        .unwrap_or_else(|e| panic!("WIT JSON {wit_json} does not decode as ours: {e}"));
    assert_eq!(
        &decoded, ours,
        "WIT JSON {wit_json} decodes to another value"
    );

    let our_json = serde_json::to_string(ours).unwrap();
    let decoded: W = serde_json::from_str(&our_json)
        .unwrap_or_else(|e| panic!("our JSON {our_json} does not decode as WIT: {e}"));
    assert_eq!(
        &decoded, wit,
        "our JSON {our_json} decodes to another WIT value"
    );
    let again = serde_json::to_value(&decoded).unwrap();
    let ours_v: serde_json::Value = serde_json::from_str(&our_json).unwrap();
    assert_eq!(
        again, ours_v,
        "our JSON {our_json} loses something through the WIT type"
    );
    let wit_v: serde_json::Value = serde_json::from_str(&wit_json).unwrap();
    assert_eq!(wit_v, ours_v, "the two sides write different JSON");
    tag(&ours_v)
}

fn tag(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(m) if m.len() == 1 => m.keys().next().unwrap().clone(),
        _ => String::new(),
    }
}

/// The variant names a derived `Deserialize` knows (what serde passes to deserialize_enum).
fn derived_names<T: DeserializeOwned>() -> BTreeSet<&'static str> {
    struct Names(Option<&'static [&'static str]>);
    impl<'de> serde::Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _name: &'static str,
            variants: &'static [&'static str],
            _v: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = Some(variants);
            Err(serde::de::Error::custom("names only"))
        }
        fn deserialize_any<V: Visitor<'de>>(self, _v: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not an enum"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map struct
            identifier ignored_any
        }
    }
    let mut n = Names(None);
    let _ = T::deserialize(&mut n);
    n.0.expect("an enum").iter().copied().collect()
}

/// Every pair is the same JSON, the two sides have the same variants, and the pairs cover
/// all of them.
fn all_same<O, W>(pairs: &[(O, W)], our_names: BTreeSet<&'static str>, what: &str)
where
    O: Serialize + DeserializeOwned + Debug + PartialEq,
    W: Serialize + DeserializeOwned + Debug + PartialEq,
{
    let wit_names = derived_names::<W>();
    assert_eq!(
        our_names, wit_names,
        "{what}: p2p-common's variants (left) and the WIT's (right) differ"
    );
    let covered: BTreeSet<String> = pairs.iter().map(|(o, w)| same(o, w)).collect();
    let missing: Vec<_> = our_names
        .iter()
        .filter(|n| !covered.contains(**n))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: no sample of {missing:?} in this test"
    );
}

/// A process's requests: every pair is the same JSON, the pairs cover every variant, and what
/// an app with generated types sends is what the process decodes, through the same
/// `decode_request` (and range checks) its core uses.
fn requests_are_the_wit_json<O, W>(
    pairs: Vec<(O, W)>,
    process: &str,
    max_body: usize,
    validated: fn(O) -> Result<O, api::ApiError>,
) where
    O: Serialize + DeserializeOwned + Debug + PartialEq + wire::WireEnum,
    W: Serialize + DeserializeOwned + Debug + PartialEq,
{
    let names = wire::variant_names::<O>().iter().copied().collect();
    all_same(&pairs, names, &format!("{process} request"));
    for (o, w) in pairs {
        let body = serde_json::to_vec(&w).unwrap();
        let decoded: O = api::decode_request(&body, process, max_body)
            .and_then(validated)
            .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&body)));
        assert_eq!(decoded, o);
    }
}

/// A process's responses: every pair is the same JSON, the pairs cover every variant, and
/// whole response bodies, {"Ok": ...}, are the WIT's `response-body`.
fn responses_are_the_wit_json<O, W>(pairs: Vec<(O, W)>, process: &str)
where
    O: Serialize + DeserializeOwned + Debug + PartialEq + wire::WireEnum,
    W: Serialize + DeserializeOwned + Debug + PartialEq,
{
    let names = wire::variant_names::<O>().iter().copied().collect();
    all_same(&pairs, names, &format!("{process} response"));
    for (o, w) in pairs {
        same::<api::ApiResult<O>, Result<W, wc::ApiError>>(&Ok(o), &Ok(w));
    }
}

// ----- samples -----

fn id(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}

fn node_info(n: &str) -> (ours::NodeInfo, wp::NodeInfo) {
    let mut o = ours::NodeInfo::new(id(n));
    o.app_version = "2.1.0".into();
    o.capabilities = vec!["chat".into(), "sync".into()];
    o.metadata.insert("zone".into(), "b".into());
    o.metadata.insert("region".into(), "eu".into());
    o.last_seen = 1_764_031_200_000;
    let w = wp::NodeInfo {
        node_id: n.into(),
        app_version: "2.1.0".into(),
        capabilities: vec!["chat".into(), "sync".into()],
        // Sorted by key, as the map writes them.
        metadata: vec![
            wp::MetadataEntry {
                key: "region".into(),
                value: "eu".into(),
            },
            wp::MetadataEntry {
                key: "zone".into(),
                value: "b".into(),
            },
        ],
        last_seen: 1_764_031_200_000,
    };
    (o, w)
}

fn update(n: &str, with_info: bool) -> (ours::Update, wp::Update) {
    let (oi, wi) = node_info(n);
    (
        ours::Update {
            node: id(n),
            status: ours::MemberStatus::Suspect,
            incarnation: 7,
            info: with_info.then_some(oi),
            origin: id("alice.os"),
        },
        wp::Update {
            node: n.into(),
            status: wp::MemberStatus::Suspect,
            incarnation: 7,
            info: with_info.then_some(wi),
            origin: "alice.os".into(),
        },
    )
}

fn updates() -> (Vec<ours::Update>, Vec<wp::Update>) {
    let (a, wa) = update("bob.os", true);
    let (b, wb) = update("carol.os", false);
    (vec![a, b], vec![wa, wb])
}

fn node_view() -> (ours::NodeView, wp::NodeView) {
    let (oi, wi) = node_info("bob.os");
    (
        ours::NodeView {
            info: oi,
            status: ours::MemberStatus::Alive,
            incarnation: 3,
            status_since: 1_764_031_100_000,
            is_self: true,
        },
        wp::NodeView {
            info: wi,
            status: wp::MemberStatus::Alive,
            incarnation: 3,
            status_since: 1_764_031_100_000,
            is_self: true,
        },
    )
}

/// A `Health` answer in both type systems: one peer with a breaker, one without (presence).
fn health() -> (p2p_common::resilience::HealthReport, wc::HealthReport) {
    use p2p_common::resilience::{health as h, Status};
    (
        h::HealthReport {
            node: id("alice.os"),
            own_trouble: true,
            peers: vec![
                h::PeerHealth {
                    node: id("bob.os"),
                    status: Status::Degraded,
                    consecutive_failures: 2,
                    srtt_ms: Some(40),
                    breaker: Some(h::BreakerStatus::HalfOpen),
                    breaker_failures: 0,
                    sent: 9,
                    received: 7,
                },
                h::PeerHealth {
                    node: id("carol.os"),
                    status: Status::Unknown,
                    consecutive_failures: 0,
                    srtt_ms: None,
                    breaker: None,
                    breaker_failures: 3,
                    sent: 0,
                    received: 1,
                },
            ],
            more: 5,
        },
        wc::HealthReport {
            node: "alice.os".into(),
            own_trouble: true,
            peers: vec![
                wc::PeerHealth {
                    node: "bob.os".into(),
                    status: wc::ReachStatus::Degraded,
                    consecutive_failures: 2,
                    srtt_ms: Some(40),
                    breaker: Some(wc::BreakerStatus::HalfOpen),
                    breaker_failures: 0,
                    sent: 9,
                    received: 7,
                },
                wc::PeerHealth {
                    node: "carol.os".into(),
                    status: wc::ReachStatus::Unknown,
                    consecutive_failures: 0,
                    srtt_ms: None,
                    breaker: None,
                    breaker_failures: 3,
                    sent: 0,
                    received: 1,
                },
            ],
            more: 5,
        },
    )
}

#[test]
fn every_reach_and_breaker_status_is_the_wit_json() {
    use p2p_common::resilience::{health::BreakerStatus as B, Status as S};
    for (o, w) in [
        (S::Unknown, wc::ReachStatus::Unknown),
        (S::Reachable, wc::ReachStatus::Reachable),
        (S::Degraded, wc::ReachStatus::Degraded),
        (S::Unreachable, wc::ReachStatus::Unreachable),
    ] {
        same(&o, &w);
    }
    for (o, w) in [
        (B::Closed, wc::BreakerStatus::Closed),
        (B::Open, wc::BreakerStatus::Open),
        (B::HalfOpen, wc::BreakerStatus::HalfOpen),
    ] {
        same(&o, &w);
    }
}

fn pong() -> (api::Pong, wc::Pong) {
    (
        api::Pong {
            node: "alice.os".into(),
            protocol_version: 1,
        },
        wc::Pong {
            node: "alice.os".into(),
            protocol_version: 1,
        },
    )
}

fn service_info() -> (api::ServiceInfo, wc::ServiceInfo) {
    (
        api::ServiceInfo {
            name: "presence".into(),
            version: "0.1.0".into(),
            protocol_version: 1,
            node: "alice.os".into(),
        },
        wc::ServiceInfo {
            name: "presence".into(),
            version: "0.1.0".into(),
            protocol_version: 1,
            node: "alice.os".into(),
        },
    )
}

fn config() -> (ours::Config, wp::Config) {
    let o = ours::Config {
        probe_interval_ms: 1,
        probe_timeout_ms: 2,
        indirect_probes: 3,
        suspicion_mult: 4.5,
        suspicion_max_mult: 5.5,
        suspicion_confirmations: 6,
        gossip_interval_ms: 7,
        gossip_fanout: 8,
        retransmit_mult: 9,
        max_updates_per_message: 10,
        push_pull_interval_ms: 11,
        max_local_health: 12,
        registry_ttl_ms: 13,
        registry_capacity: 14,
        registry_rate_per_min: 15,
        max_members: 16,
        dead_retention_ms: 17,
        subscriber_queue: 18,
    };
    let w = wp::Config {
        probe_interval_ms: 1,
        probe_timeout_ms: 2,
        indirect_probes: 3,
        suspicion_mult: 4.5,
        suspicion_max_mult: 5.5,
        suspicion_confirmations: 6,
        gossip_interval_ms: 7,
        gossip_fanout: 8,
        retransmit_mult: 9,
        max_updates_per_message: 10,
        push_pull_interval_ms: 11,
        max_local_health: 12,
        registry_ttl_ms: 13,
        registry_capacity: 14,
        registry_rate_per_min: 15,
        max_members: 16,
        dead_retention_ms: 17,
        subscriber_queue: 18,
    };
    (o, w)
}

fn config_patch_full() -> (ours::ConfigPatch, wp::ConfigPatch) {
    let o = ours::ConfigPatch::from(&config().0);
    let w = wp::ConfigPatch {
        probe_interval_ms: Some(1),
        probe_timeout_ms: Some(2),
        indirect_probes: Some(3),
        suspicion_mult: Some(4.5),
        suspicion_max_mult: Some(5.5),
        suspicion_confirmations: Some(6),
        gossip_interval_ms: Some(7),
        gossip_fanout: Some(8),
        retransmit_mult: Some(9),
        max_updates_per_message: Some(10),
        push_pull_interval_ms: Some(11),
        max_local_health: Some(12),
        registry_ttl_ms: Some(13),
        registry_capacity: Some(14),
        registry_rate_per_min: Some(15),
        max_members: Some(16),
        dead_retention_ms: Some(17),
        subscriber_queue: Some(18),
    };
    (o, w)
}

fn config_patch_empty() -> wp::ConfigPatch {
    wp::ConfigPatch {
        probe_interval_ms: None,
        probe_timeout_ms: None,
        indirect_probes: None,
        suspicion_mult: None,
        suspicion_max_mult: None,
        suspicion_confirmations: None,
        gossip_interval_ms: None,
        gossip_fanout: None,
        retransmit_mult: None,
        max_updates_per_message: None,
        push_pull_interval_ms: None,
        max_local_health: None,
        registry_ttl_ms: None,
        registry_capacity: None,
        registry_rate_per_min: None,
        max_members: None,
        dead_retention_ms: None,
        subscriber_queue: None,
    }
}

fn stats() -> (ours::PresenceStats, wp::PresenceStats) {
    (
        ours::PresenceStats {
            probes_sent: 1,
            probes_failed: 2,
            indirect_probes_sent: 3,
            suspicions_started: 4,
            refutations: 5,
            dead_declared: 6,
            gossip_sent: 7,
            push_pulls: 8,
            register_failures: 9,
            events_sent: 10,
            events_dropped: 11,
            local_health: 12,
            incarnation: 13,
            members: 14,
            registrations: 15,
        },
        wp::PresenceStats {
            probes_sent: 1,
            probes_failed: 2,
            indirect_probes_sent: 3,
            suspicions_started: 4,
            refutations: 5,
            dead_declared: 6,
            gossip_sent: 7,
            push_pulls: 8,
            register_failures: 9,
            events_sent: 10,
            events_dropped: 11,
            local_health: 12,
            incarnation: 13,
            members: 14,
            registrations: 15,
        },
    )
}

fn presence_requests() -> Vec<(ours::Request, wp::Request)> {
    use ours::Request as O;
    use wp::Request as W;
    let (ups, wups) = updates();
    let (oi, wi) = node_info("bob.os");
    let (cp, wcp) = config_patch_full();
    let (_, wmeta) = node_info("x.os");
    vec![
        (O::Ping {}, W::Ping),
        (O::Info {}, W::Info),
        (
            O::Join {
                bootstrap: vec![id("alice.os"), id("bob.os")],
            },
            W::Join(wp::JoinRequest {
                bootstrap: vec!["alice.os".into(), "bob.os".into()],
            }),
        ),
        (O::Leave {}, W::Leave),
        (
            O::SetInfo {
                app_version: "2.1.0".into(),
                capabilities: vec!["chat".into()],
                metadata: oi.metadata.clone(),
            },
            W::SetInfo(wp::SetInfoRequest {
                app_version: "2.1.0".into(),
                capabilities: vec!["chat".into()],
                metadata: wmeta.metadata,
            }),
        ),
        (
            O::ListNodes(ours::ListFilter {
                status: Some(ours::MemberStatus::Dead),
                capability: Some("chat".into()),
                cursor: Some(id("bob.os")),
                limit: Some(2),
            }),
            W::ListNodes(wp::ListFilter {
                status: Some(wp::MemberStatus::Dead),
                capability: Some("chat".into()),
                cursor: Some("bob.os".into()),
                limit: Some(2),
            }),
        ),
        (
            O::ListNodes(ours::ListFilter::default()),
            W::ListNodes(wp::ListFilter {
                status: None,
                capability: None,
                cursor: None,
                limit: None,
            }),
        ),
        (
            O::GetNode {
                node: id("carol.os"),
            },
            W::GetNode(wp::GetNodeRequest {
                node: "carol.os".into(),
            }),
        ),
        (O::Subscribe {}, W::Subscribe),
        (O::Unsubscribe {}, W::Unsubscribe),
        (O::GetConfig {}, W::GetConfig),
        (O::SetConfig(cp), W::SetConfig(wcp)),
        (
            O::SetConfig(ours::ConfigPatch::default()),
            W::SetConfig(config_patch_empty()),
        ),
        (O::Stats {}, W::Stats),
        (O::Health {}, W::Health),
        (
            O::RegisterNode {
                info: oi,
                incarnation: 4,
                protocol_version: 1,
                list: false,
            },
            W::RegisterNode(wp::RegisterNodeRequest {
                info: wi,
                incarnation: 4,
                protocol_version: 1,
                list: false,
            }),
        ),
        (
            O::ListRegistry {
                cursor: Some(id("bob.os")),
                limit: Some(100),
            },
            W::ListRegistry(wp::ListRegistryRequest {
                cursor: Some("bob.os".into()),
                limit: Some(100),
            }),
        ),
        (
            O::ListRegistry {
                cursor: None,
                limit: None,
            },
            W::ListRegistry(wp::ListRegistryRequest {
                cursor: None,
                limit: None,
            }),
        ),
        (O::Deregister {}, W::Deregister),
        (
            O::Probe {
                seq: 7,
                updates: ups.clone(),
                protocol_version: 1,
            },
            W::Probe(wp::Probe {
                seq: 7,
                updates: wups.clone(),
                protocol_version: 1,
            }),
        ),
        (
            O::ProbeRequest {
                seq: 7,
                target: id("carol.os"),
                updates: ups.clone(),
                timeout_s: Some(2),
                protocol_version: 1,
            },
            W::ProbeRequest(wp::ProbeRequest {
                seq: 7,
                target: "carol.os".into(),
                updates: wups.clone(),
                timeout_s: Some(2),
                protocol_version: 1,
            }),
        ),
        (
            O::ProbeRequest {
                seq: 8,
                target: id("carol.os"),
                updates: vec![],
                timeout_s: None,
                protocol_version: 2,
            },
            W::ProbeRequest(wp::ProbeRequest {
                seq: 8,
                target: "carol.os".into(),
                updates: vec![],
                timeout_s: None,
                protocol_version: 2,
            }),
        ),
        (
            O::IndirectAck {
                seq: 7,
                target: id("carol.os"),
            },
            W::IndirectAck(wp::IndirectResult {
                seq: 7,
                target: "carol.os".into(),
            }),
        ),
        (
            O::IndirectNack {
                seq: 9,
                target: id("dave.os"),
            },
            W::IndirectNack(wp::IndirectResult {
                seq: 9,
                target: "dave.os".into(),
            }),
        ),
        (
            O::Gossip {
                updates: ups.clone(),
            },
            W::Gossip(wp::Gossip {
                updates: wups.clone(),
            }),
        ),
        (
            O::PushPull {
                members: ups,
                want_info: vec![id("bob.os")],
                protocol_version: 1,
            },
            W::PushPull(wp::PushPullRequest {
                members: wups,
                want_info: vec!["bob.os".into()],
                protocol_version: 1,
            }),
        ),
    ]
}

fn presence_responses() -> Vec<(ours::Response, wp::Response)> {
    use ours::Response as O;
    use wp::Response as W;
    let (ups, wups) = updates();
    let (oi, wi) = node_info("bob.os");
    let (ov, wv) = node_view();
    let (p, wpong) = pong();
    let (si, wsi) = service_info();
    let (c, wcfg) = config();
    let (st, wst) = stats();
    vec![
        (O::Pong(p), W::Pong(wpong)),
        (O::Info(si), W::Info(wsi)),
        (
            O::Joining {
                bootstrap: vec![id("alice.os")],
            },
            W::Joining(wp::Joining {
                bootstrap: vec!["alice.os".into()],
            }),
        ),
        (O::Left {}, W::Left),
        (O::InfoSet(oi), W::InfoSet(wi)),
        (
            O::Nodes {
                nodes: vec![ov.clone()],
                next_cursor: Some(id("bob.os")),
                seq: 12,
            },
            W::Nodes(wp::NodesPage {
                nodes: vec![wv.clone()],
                next_cursor: Some("bob.os".into()),
                seq: 12,
            }),
        ),
        (
            O::Nodes {
                nodes: vec![],
                next_cursor: None,
                seq: 0,
            },
            W::Nodes(wp::NodesPage {
                nodes: vec![],
                next_cursor: None,
                seq: 0,
            }),
        ),
        (O::Node(ov), W::Node(wv)),
        (O::Subscribed {}, W::Subscribed),
        (O::Unsubscribed {}, W::Unsubscribed),
        (O::Config(c), W::Config(wcfg)),
        (O::Stats(st), W::Stats(wst)),
        (O::Health(health().0), W::Health(health().1)),
        (
            O::Registered {
                nodes: ups.clone(),
                next_cursor: Some(id("carol.os")),
                ttl_ms: 300_000,
            },
            W::Registered(wp::Registered {
                nodes: wups.clone(),
                next_cursor: Some("carol.os".into()),
                ttl_ms: 300_000,
            }),
        ),
        (
            O::Registry {
                nodes: ups.clone(),
                next_cursor: None,
            },
            W::Registry(wp::RegistryPage {
                nodes: wups.clone(),
                next_cursor: None,
            }),
        ),
        (O::Deregistered {}, W::Deregistered),
        (
            O::Ack {
                seq: 7,
                updates: ups.clone(),
                protocol_version: 1,
            },
            W::Ack(wp::Ack {
                seq: 7,
                updates: wups.clone(),
                protocol_version: 1,
            }),
        ),
        (
            O::PushPull {
                members: ups,
                protocol_version: 1,
            },
            W::PushPull(wp::PushPullResponse {
                members: wups,
                protocol_version: 1,
            }),
        ),
        (O::Accepted {}, W::Accepted),
    ]
}

// ----- the tests -----

#[test]
fn presence_requests_are_the_wit_json() {
    requests_are_the_wit_json(
        presence_requests(),
        "presence",
        1 << 20,
        ours::Request::validated,
    );
}

#[test]
fn presence_responses_are_the_wit_json() {
    responses_are_the_wit_json(presence_responses(), "presence");
}

#[test]
fn events_are_the_wit_json() {
    let (oi, wi) = node_info("carol.os");
    let kinds = [
        (ours::EventKind::NodeJoined, wp::EventKind::NodeJoined),
        (ours::EventKind::NodeSuspect, wp::EventKind::NodeSuspect),
        (ours::EventKind::NodeAlive, wp::EventKind::NodeAlive),
        (ours::EventKind::NodeDead, wp::EventKind::NodeDead),
        (ours::EventKind::NodeLeft, wp::EventKind::NodeLeft),
    ];
    all_same(
        &kinds,
        derived_names::<ours::EventKind>(),
        "presence event kind",
    );
    let mut pairs = Vec::new();
    for (i, (ok, wk)) in kinds.into_iter().enumerate() {
        let with_info = i % 2 == 0;
        pairs.push((
            ours::SubscriberMessage::PresenceEvent(ours::PresenceEvent {
                kind: ok,
                node: id("carol.os"),
                incarnation: 2,
                at: 1_764_031_260_000,
                seq: i as u64,
                info: with_info.then(|| oi.clone()),
            }),
            wp::SubscriberMessage::PresenceEvent(wp::PresenceEvent {
                kind: wk,
                node: "carol.os".into(),
                incarnation: 2,
                at: 1_764_031_260_000,
                seq: i as u64,
                info: with_info.then(|| wi.clone()),
            }),
        ));
    }
    pairs.push((
        ours::SubscriberMessage::Welcome {
            node: id("alice.os"),
            seq: 7,
        },
        wp::SubscriberMessage::Welcome(wp::Welcome {
            node: "alice.os".into(),
            seq: 7,
        }),
    ));
    pairs.push((
        ours::SubscriberMessage::Dropped {
            node: id("alice.os"),
            seq: 9,
            reason: "3 deliveries failed".into(),
        },
        wp::SubscriberMessage::Dropped(wp::Dropped {
            node: "alice.os".into(),
            seq: 9,
            reason: "3 deliveries failed".into(),
        }),
    ));
    all_same(
        &pairs,
        derived_names::<ours::SubscriberMessage>(),
        "subscriber message",
    );
}

#[test]
fn member_statuses_are_the_wit_json() {
    all_same(
        &[
            (ours::MemberStatus::Alive, wp::MemberStatus::Alive),
            (ours::MemberStatus::Suspect, wp::MemberStatus::Suspect),
            (ours::MemberStatus::Dead, wp::MemberStatus::Dead),
            (ours::MemberStatus::Left, wp::MemberStatus::Left),
        ],
        derived_names::<ours::MemberStatus>(),
        "member status",
    );
}

#[test]
fn errors_are_the_wit_json() {
    use api::ErrorCode as O;
    use wc::ErrorCode as W;
    let codes = [
        (O::BadRequest, W::BadRequest),
        (O::TooLarge, W::TooLarge),
        (O::NotFound, W::NotFound),
        (O::Forbidden, W::Forbidden),
        (O::VersionMismatch, W::VersionMismatch),
        (O::Overloaded, W::Overloaded),
        (O::Unavailable, W::Unavailable),
        (O::Internal, W::Internal),
    ];
    all_same(&codes, derived_names::<O>(), "error code");
    for (o, w) in codes {
        let oe = api::ApiError::new(o, "why");
        let we = wc::ApiError {
            code: w,
            message: "why".into(),
        };
        same(&oe, &we);
        same::<api::ApiResult<ours::Response>, wp::ResponseBody>(&Err(oe.clone()), &Err(we));
        let we = wc::ApiError {
            code: w,
            message: "why".into(),
        };
        same::<api::ApiResult<api::BaseResponse>, wn::ResponseBody>(&Err(oe.clone()), &Err(we));
        let we = wc::ApiError {
            code: w,
            message: "why".into(),
        };
        same::<api::ApiResult<os::Response>, ws::ResponseBody>(&Err(oe), &Err(we));
    }
}

/// presence's, sync's, notify's and txcoord's first two variants are the base requests.
#[test]
fn base_requests_are_the_wit_json() {
    let base = wire::variant_names::<api::BaseRequest>();
    for wit in [
        derived_names::<wt::Request>(),
        derived_names::<wp::Request>(),
        derived_names::<wn::Request>(),
        derived_names::<ws::Request>(),
    ] {
        assert!(base.iter().all(|b| wit.contains(b)), "{base:?} in {wit:?}");
    }
    use api::BaseRequest as O;
    for (o, w) in [
        (O::Ping {}, wt::Request::Ping),
        (O::Info {}, wt::Request::Info),
    ] {
        same(&o, &w);
    }
    same(&O::Ping {}, &wp::Request::Ping);
    same(&O::Info {}, &wp::Request::Info);
    same(&O::Ping {}, &wn::Request::Ping);
    same(&O::Info {}, &wn::Request::Info);
    same(&O::Ping {}, &ws::Request::Ping);
    same(&O::Info {}, &ws::Request::Info);

    use api::BaseResponse as R;
    let (p, wpong) = pong();
    let (si, wsi) = service_info();
    same(&R::Pong(p.clone()), &wt::Response::Pong(wpong.clone()));
    same(&R::Info(si), &wt::Response::Info(wsi));
    same::<api::ApiResult<api::BaseResponse>, wt::ResponseBody>(
        &Ok(R::Pong(p)),
        &Ok(wt::Response::Pong(wpong)),
    );
}

// ----- sync -----

fn doc() -> os::DocId {
    "alice.os/notes".parse().unwrap()
}

fn sync_version() -> (os::Version, Vec<ws::VersionEntry>) {
    (
        os::Version::from_pairs([(7, 3), (u64::MAX - 1, 12)]),
        vec![
            ws::VersionEntry {
                peer: "7".into(),
                counter: 3,
            },
            ws::VersionEntry {
                peer: (u64::MAX - 1).to_string(),
                counter: 12,
            },
        ],
    )
}

fn sync_values() -> Vec<(os::Value, ws::Value)> {
    vec![
        (os::Value::Null, ws::Value::Null),
        (os::Value::Bool(true), ws::Value::Bool(true)),
        (os::Value::Int(-4), ws::Value::Int(-4)),
        (os::Value::Float(2.5), ws::Value::Float(2.5)),
        (os::Value::Str("hi".into()), ws::Value::Str("hi".into())),
    ]
}

fn sync_ops() -> Vec<(os::Op, ws::Op)> {
    use os::Op as O;
    use ws::Op as W;
    vec![
        (
            O::Insert {
                pos: 3,
                text: "héllo".into(),
            },
            W::Insert(ws::InsertOp {
                pos: 3,
                text: "héllo".into(),
            }),
        ),
        (
            O::Delete { pos: 1, len: 2 },
            W::Delete(ws::DeleteOp { pos: 1, len: 2 }),
        ),
        (
            O::Update {
                item_id: "task-1".into(),
                field: "done".into(),
                value: os::Value::Bool(true),
            },
            W::Update(ws::UpdateOp {
                item_id: "task-1".into(),
                field: "done".into(),
                value: ws::Value::Bool(true),
            }),
        ),
        (
            O::RemoveItem {
                item_id: "task-1".into(),
            },
            W::RemoveItem(ws::RemoveItemOp {
                item_id: "task-1".into(),
            }),
        ),
        (
            O::ListInsert {
                list: "tags".into(),
                index: 0,
                value: os::Value::Str("x".into()),
            },
            W::ListInsert(ws::ListInsertOp {
                list: "tags".into(),
                index: 0,
                value: ws::Value::Str("x".into()),
            }),
        ),
        (
            O::ListDelete {
                list: "tags".into(),
                index: 0,
                len: 1,
            },
            W::ListDelete(ws::ListDeleteOp {
                list: "tags".into(),
                index: 0,
                len: 1,
            }),
        ),
        (
            O::Increment {
                counter: "views".into(),
                by: -2,
            },
            W::Increment(ws::IncrementOp {
                counter: "views".into(),
                by: -2,
            }),
        ),
    ]
}

fn sync_members() -> (Vec<os::Member>, Vec<ws::Member>) {
    (
        vec![
            os::Member {
                node: id("bob.os"),
                role: os::Role::Writer,
            },
            os::Member {
                node: id("carol.os"),
                role: os::Role::Reader,
            },
        ],
        vec![
            ws::Member {
                node: "bob.os".into(),
                role: ws::Role::Writer,
            },
            ws::Member {
                node: "carol.os".into(),
                role: ws::Role::Reader,
            },
        ],
    )
}

fn sync_acl() -> (os::Acl, ws::Acl) {
    let (om, wm) = sync_members();
    (
        os::Acl {
            doc: doc(),
            epoch: 4,
            members: om,
            joined: vec![id("bob.os")],
            peers: vec![os::PeerOwner {
                peer: "7".into(),
                node: id("bob.os"),
                frozen: Some(9),
            }],
        },
        ws::Acl {
            doc: "alice.os/notes".into(),
            epoch: 4,
            members: wm,
            joined: vec!["bob.os".into()],
            peers: vec![ws::PeerOwner {
                peer: "7".into(),
                node: "bob.os".into(),
                frozen: Some(9),
            }],
        },
    )
}

fn sync_requests() -> Vec<(os::Request, ws::Request)> {
    use os::Request as O;
    use ws::Request as W;
    let (v, wv) = sync_version();
    let (om, wm) = sync_members();
    let (acl, wacl) = sync_acl();
    let dref = || ws::DocRef {
        doc: "alice.os/notes".into(),
    };
    vec![
        (O::Ping {}, W::Ping),
        (O::Info {}, W::Info),
        (
            O::Create {
                name: "notes".into(),
                members: om,
            },
            W::Create(ws::CreateRequest {
                name: "notes".into(),
                members: wm,
            }),
        ),
        (
            O::SetMember {
                doc: doc(),
                node: id("dave.os"),
                role: Some(os::Role::Reader),
            },
            W::SetMember(ws::SetMemberRequest {
                doc: "alice.os/notes".into(),
                node: "dave.os".into(),
                role: Some(ws::Role::Reader),
            }),
        ),
        (O::Join { doc: doc() }, W::Join(dref())),
        (O::Leave { doc: doc() }, W::Leave(dref())),
        (O::Delete { doc: doc() }, W::Delete(dref())),
        (O::List {}, W::List),
        (
            O::Edit {
                doc: doc(),
                op_id: "op-1".into(),
                ops: sync_ops().into_iter().map(|(o, _)| o).collect(),
                at: Some(v.clone()),
                utf16: true,
            },
            W::Edit(ws::EditRequest {
                doc: "alice.os/notes".into(),
                op_id: "op-1".into(),
                ops: sync_ops().into_iter().map(|(_, w)| w).collect(),
                at: Some(wv.clone()),
                utf16: true,
            }),
        ),
        (O::Read { doc: doc() }, W::Read(dref())),
        (
            O::GetDataSince {
                doc: doc(),
                since: Some(v.clone()),
                limit: Some(50),
            },
            W::GetDataSince(ws::GetDataSinceRequest {
                doc: "alice.os/notes".into(),
                since: Some(wv.clone()),
                limit: Some(50),
            }),
        ),
        (
            O::Subscribe { doc: Some(doc()) },
            W::Subscribe(ws::SubscribeRequest {
                doc: Some("alice.os/notes".into()),
            }),
        ),
        (O::Unsubscribe {}, W::Unsubscribe),
        (O::Stats {}, W::Stats),
        (O::Health {}, W::Health),
        (
            O::Peers { doc: doc() },
            W::Peers(ws::DocRef {
                doc: "alice.os/notes".into(),
            }),
        ),
        (
            O::Undo {
                doc: doc(),
                op_id: Some("u-1".into()),
            },
            W::Undo(ws::UndoRequest {
                doc: "alice.os/notes".into(),
                op_id: Some("u-1".into()),
            }),
        ),
        (
            O::Redo {
                doc: doc(),
                op_id: None,
            },
            W::Redo(ws::UndoRequest {
                doc: "alice.os/notes".into(),
                op_id: None,
            }),
        ),
        (
            O::Invitation {
                doc: doc(),
                role: os::Role::Writer,
            },
            W::Invitation(ws::Invitation {
                doc: "alice.os/notes".into(),
                role: ws::Role::Writer,
            }),
        ),
        (
            O::JoinDoc {
                doc: doc(),
                peer: Some("42".into()),
            },
            W::JoinDoc(ws::JoinDoc {
                doc: "alice.os/notes".into(),
                peer: Some("42".into()),
            }),
        ),
        (O::LeaveDoc { doc: doc() }, W::LeaveDoc(dref())),
        (O::AclUpdate(acl), W::AclUpdate(wacl)),
        (
            O::SyncRequest {
                doc: doc(),
                version: v.clone(),
                acl_epoch: 3,
            },
            W::SyncRequest(ws::SyncRequest {
                doc: "alice.os/notes".into(),
                version: wv.clone(),
                acl_epoch: 3,
            }),
        ),
        (
            O::Delta {
                doc: doc(),
                version: v.clone(),
                encoding: os::Encoding::Deflate,
                chunked: None,
                stream: Some(4),
            },
            W::Delta(ws::Delta {
                doc: "alice.os/notes".into(),
                version: wv.clone(),
                encoding: ws::Encoding::Deflate,
                chunked: None,
                stream: Some(4),
            }),
        ),
        (
            O::Delta {
                doc: doc(),
                version: v,
                encoding: os::Encoding::Raw,
                chunked: Some(sync_chunked().0),
                stream: None,
            },
            W::Delta(ws::Delta {
                doc: "alice.os/notes".into(),
                version: wv,
                encoding: ws::Encoding::Raw,
                chunked: Some(sync_chunked().1),
                stream: None,
            }),
        ),
        (O::Live {}, W::Live),
        (O::LiveFrames {}, W::LiveFrames),
        (O::DocDeleted { doc: doc() }, W::DocDeleted(dref())),
        (
            O::GetChunk {
                doc: doc(),
                transfer: 7,
                index: 1,
            },
            W::GetChunk(ws::GetChunk {
                doc: "alice.os/notes".into(),
                transfer: 7,
                index: 1,
            }),
        ),
        (
            O::SetAwareness {
                doc: doc(),
                cursor: Some(os::AwarenessCursor { anchor: 2, head: 5 }),
                state: Some(awareness_state().0),
                utf16: true,
            },
            W::SetAwareness(ws::SetAwarenessRequest {
                doc: "alice.os/notes".into(),
                cursor: Some(ws::AwarenessCursor { anchor: 2, head: 5 }),
                state: Some(awareness_state().1),
                utf16: true,
            }),
        ),
        (
            O::GetAwareness {
                doc: doc(),
                utf16: false,
            },
            W::GetAwareness(ws::GetAwarenessRequest {
                doc: "alice.os/notes".into(),
                utf16: false,
            }),
        ),
        (
            O::Awareness {
                doc: doc(),
                entries: vec![
                    os::AwarenessEntry {
                        node: id("bob.os"),
                        process: "my-app:my-app:someone.os".into(),
                        clock: 1_764_547_200_000,
                        age_ms: 40,
                        cursor: Some(os::WireCursor {
                            anchor: "0a".into(),
                            head: "0b".into(),
                        }),
                        state: Some(awareness_state().0),
                    },
                    os::AwarenessEntry {
                        node: id("bob.os"),
                        process: "other:my-app:someone.os".into(),
                        clock: 3,
                        age_ms: 0,
                        cursor: None,
                        state: None,
                    },
                ],
            },
            W::Awareness(ws::AwarenessMessage {
                doc: "alice.os/notes".into(),
                entries: vec![
                    ws::AwarenessEntry {
                        node: "bob.os".into(),
                        process: "my-app:my-app:someone.os".into(),
                        clock: 1_764_547_200_000,
                        age_ms: 40,
                        cursor: Some(ws::WireCursor {
                            anchor: "0a".into(),
                            head: "0b".into(),
                        }),
                        state: Some(awareness_state().1),
                    },
                    ws::AwarenessEntry {
                        node: "bob.os".into(),
                        process: "other:my-app:someone.os".into(),
                        clock: 3,
                        age_ms: 0,
                        cursor: None,
                        state: None,
                    },
                ],
            }),
        ),
    ]
}

/// An awareness state of two keys (sorted by key on the wire).
fn awareness_state() -> (os::AwarenessState, Vec<ws::AwarenessField>) {
    (
        [
            ("name".to_string(), "Bob".to_string()),
            ("colour".to_string(), "#2196f3".to_string()),
        ]
        .into(),
        vec![
            ws::AwarenessField {
                key: "colour".into(),
                value: "#2196f3".into(),
            },
            ws::AwarenessField {
                key: "name".into(),
                value: "Bob".into(),
            },
        ],
    )
}

fn sync_chunked() -> (os::Chunked, ws::Chunked) {
    let digests = vec!["ab".repeat(32), "cd".repeat(32)];
    (
        os::Chunked {
            transfer: 7,
            total: 5 << 20,
            chunk: 4 << 20,
            digests: digests.clone(),
        },
        ws::Chunked {
            transfer: 7,
            total: 5 << 20,
            chunk: 4 << 20,
            digests,
        },
    )
}

fn sync_responses() -> Vec<(os::Response, ws::Response)> {
    use os::Response as O;
    use ws::Response as W;
    let (v, wv) = sync_version();
    let (om, wm) = sync_members();
    let (acl, wacl) = sync_acl();
    let (p, wpong) = pong();
    let (si, wsi) = service_info();
    let info = os::DocInfo {
        doc: doc(),
        members: om,
        joined: true,
        role: Some(os::Role::Writer),
        version: v.clone(),
    };
    let winfo = ws::DocInfo {
        doc: "alice.os/notes".into(),
        members: wm,
        joined: true,
        role: Some(ws::Role::Writer),
        version: wv.clone(),
    };
    let content = os::Content {
        doc: doc(),
        text: "hello".into(),
        items: vec![os::Item {
            item_id: "task-1".into(),
            fields: vec![os::Field {
                field: "done".into(),
                value: os::Value::Bool(false),
            }],
        }],
        lists: vec![os::List {
            list: "tags".into(),
            values: vec![os::Value::Int(1)],
        }],
        counters: vec![os::Counter {
            counter: "views".into(),
            value: 3.0,
        }],
        version: v.clone(),
    };
    let wcontent = ws::Content {
        doc: "alice.os/notes".into(),
        text: "hello".into(),
        items: vec![ws::Item {
            item_id: "task-1".into(),
            fields: vec![ws::Field {
                field: "done".into(),
                value: ws::Value::Bool(false),
            }],
        }],
        lists: vec![ws::NamedList {
            list: "tags".into(),
            values: vec![ws::Value::Int(1)],
        }],
        counters: vec![ws::NamedCounter {
            counter: "views".into(),
            value: 3.0,
        }],
        version: wv.clone(),
    };
    let stats = os::SyncStats {
        docs: 1,
        edits: 2,
        duplicate_edits: 3,
        deltas_sent: 4,
        deltas_received: 5,
        snapshots_sent: 6,
        sync_requests: 7,
        imports_refused: 8,
        bytes_sent: 9,
        bytes_received: 10,
        compactions: 11,
    };
    let wstats = ws::SyncStats {
        docs: 1,
        edits: 2,
        duplicate_edits: 3,
        deltas_sent: 4,
        deltas_received: 5,
        snapshots_sent: 6,
        sync_requests: 7,
        imports_refused: 8,
        bytes_sent: 9,
        bytes_received: 10,
        compactions: 11,
    };
    vec![
        (O::Pong(p), W::Pong(wpong)),
        (O::Info(si), W::Info(wsi)),
        (O::Created(info.clone()), W::Created(winfo.clone())),
        (O::MemberSet(info.clone()), W::MemberSet(winfo.clone())),
        (O::Joined(info.clone()), W::Joined(winfo.clone())),
        (O::Left {}, W::Left),
        (O::Deleted {}, W::Deleted),
        (
            O::Docs { docs: vec![info] },
            W::Docs(ws::DocList { docs: vec![winfo] }),
        ),
        (
            O::Edited(os::Edited {
                doc: doc(),
                version: v.clone(),
                duplicate: false,
            }),
            W::Edited(ws::Edited {
                doc: "alice.os/notes".into(),
                version: wv.clone(),
                duplicate: false,
            }),
        ),
        (O::Content(content), W::Content(wcontent)),
        (
            O::Data(os::DataPage {
                doc: doc(),
                since: os::Version::default(),
                version: v.clone(),
                changes: vec![os::ChangeSummary {
                    peer: "7".into(),
                    counter: 0,
                    len: 3,
                    lamport: 0,
                    author: Some(id("bob.os")),
                }],
                more: true,
            }),
            W::Data(ws::DataPage {
                doc: "alice.os/notes".into(),
                since: vec![],
                version: wv.clone(),
                changes: vec![ws::ChangeSummary {
                    peer: "7".into(),
                    counter: 0,
                    len: 3,
                    lamport: 0,
                    author: Some("bob.os".into()),
                }],
                more: true,
            }),
        ),
        (O::Subscribed {}, W::Subscribed),
        (O::Unsubscribed {}, W::Unsubscribed),
        (O::Stats(stats), W::Stats(wstats)),
        (O::Health(health().0), W::Health(health().1)),
        (
            O::Peers(os::DocPeers {
                doc: doc(),
                peers: vec![
                    os::PeerSync {
                        node: NodeId::parse("bob.os").unwrap(),
                        state: os::PeerSyncState::Behind,
                        version: Some(v.clone()),
                    },
                    os::PeerSync {
                        node: NodeId::parse("charlie.os").unwrap(),
                        state: os::PeerSyncState::Unreachable,
                        version: None,
                    },
                ],
            }),
            W::Peers(ws::DocPeers {
                doc: "alice.os/notes".into(),
                peers: vec![
                    ws::PeerSync {
                        node: "bob.os".into(),
                        state: ws::PeerSyncState::Behind,
                        version: Some(wv.clone()),
                    },
                    ws::PeerSync {
                        node: "charlie.os".into(),
                        state: ws::PeerSyncState::Unreachable,
                        version: None,
                    },
                ],
            }),
        ),
        (
            O::JoinAnswer(os::JoinAnswer {
                acl: acl.clone(),
                version: v.clone(),
                encoding: os::Encoding::Raw,
                chunked: Some(sync_chunked().0),
            }),
            W::JoinAnswer(ws::JoinAnswer {
                acl: wacl.clone(),
                version: wv.clone(),
                encoding: ws::Encoding::Raw,
                chunked: Some(sync_chunked().1),
            }),
        ),
        (
            O::SyncAnswer(os::SyncAnswer {
                doc: doc(),
                version: v.clone(),
                full_sync_needed: true,
                encoding: os::Encoding::Deflate,
                acl: Some(acl),
                chunked: None,
            }),
            W::SyncAnswer(ws::SyncAnswer {
                doc: "alice.os/notes".into(),
                version: wv.clone(),
                full_sync_needed: true,
                encoding: ws::Encoding::Deflate,
                acl: Some(wacl),
                chunked: None,
            }),
        ),
        (
            O::Ack {
                version: v.clone(),
                stream: None,
                frames: None,
            },
            W::Ack(ws::Ack {
                version: wv.clone(),
                stream: None,
                frames: None,
            }),
        ),
        (
            O::Ack {
                version: v,
                stream: Some(2),
                frames: Some(64),
            },
            W::Ack(ws::Ack {
                version: wv,
                stream: Some(2),
                frames: Some(64),
            }),
        ),
        (O::LiveAck {}, W::LiveAck),
        (O::Accepted {}, W::Accepted),
        (
            O::Chunk {
                transfer: 7,
                index: 1,
            },
            W::Chunk(ws::ChunkRef {
                transfer: 7,
                index: 1,
            }),
        ),
        (O::AwarenessSet {}, W::AwarenessSet),
        (
            O::Awareness(os::AwarenessView {
                doc: doc(),
                peers: vec![
                    os::AwarenessPeer {
                        node: id("bob.os"),
                        process: "my-app:my-app:someone.os".into(),
                        cursor: Some(os::AwarenessCursor { anchor: 4, head: 4 }),
                        state: Some(awareness_state().0),
                        age_ms: 1_200,
                    },
                    os::AwarenessPeer {
                        node: id("charlie.os"),
                        process: "my-app:my-app:someone.os".into(),
                        cursor: None,
                        state: None,
                        age_ms: 0,
                    },
                ],
            }),
            W::Awareness(ws::AwarenessView {
                doc: "alice.os/notes".into(),
                peers: vec![
                    ws::AwarenessPeer {
                        node: "bob.os".into(),
                        process: "my-app:my-app:someone.os".into(),
                        cursor: Some(ws::AwarenessCursor { anchor: 4, head: 4 }),
                        state: Some(awareness_state().1),
                        age_ms: 1_200,
                    },
                    ws::AwarenessPeer {
                        node: "charlie.os".into(),
                        process: "my-app:my-app:someone.os".into(),
                        cursor: None,
                        state: None,
                        age_ms: 0,
                    },
                ],
            }),
        ),
    ]
}

#[test]
fn sync_requests_are_the_wit_json() {
    requests_are_the_wit_json(sync_requests(), "sync", 1 << 20, os::Request::validated);
    all_same(&sync_ops(), derived_names::<os::Op>(), "sync op");
    all_same(&sync_values(), derived_names::<os::Value>(), "sync value");
}

#[test]
fn sync_responses_and_events_are_the_wit_json() {
    responses_are_the_wit_json(sync_responses(), "sync");
    let (v, wv) = sync_version();
    let events = [
        (
            os::SyncEvent::Changed {
                doc: doc(),
                author: id("bob.os"),
                local: false,
                version: v,
                seq: 4,
            },
            ws::SyncEvent::Changed(ws::ChangedEvent {
                doc: "alice.os/notes".into(),
                author: "bob.os".into(),
                local: false,
                version: wv,
                seq: 4,
            }),
        ),
        (
            os::SyncEvent::Invited {
                doc: doc(),
                from: id("alice.os"),
                role: os::Role::Reader,
                seq: 1,
            },
            ws::SyncEvent::Invited(ws::InvitedEvent {
                doc: "alice.os/notes".into(),
                from: "alice.os".into(),
                role: ws::Role::Reader,
                seq: 1,
            }),
        ),
        (
            os::SyncEvent::Removed { doc: doc(), seq: 2 },
            ws::SyncEvent::Removed(ws::RemovedEvent {
                doc: "alice.os/notes".into(),
                seq: 2,
            }),
        ),
        (
            os::SyncEvent::AwarenessChanged {
                doc: doc(),
                node: id("bob.os"),
                process: "my-app:my-app:someone.os".into(),
                seq: 5,
            },
            ws::SyncEvent::AwarenessChanged(ws::AwarenessChangedEvent {
                doc: "alice.os/notes".into(),
                node: "bob.os".into(),
                process: "my-app:my-app:someone.os".into(),
                seq: 5,
            }),
        ),
    ];
    all_same(&events, derived_names::<os::SyncEvent>(), "sync event");
}

// ----- notify -----

mod notify {
    use super::*;
    use p2p_common::api::notify as on;

    fn note(seq: u64) -> (on::Notification, wn::Notification) {
        (
            on::Notification {
                id: format!("alice.os/news/{seq}"),
                publisher: id("alice.os"),
                topic: "news".into(),
                seq,
                at: 1_764_031_200_000,
                kind: on::PayloadKind::Json,
                size: 17,
                signature: vec![7; 64],
            },
            wn::Notification {
                id: format!("alice.os/news/{seq}"),
                publisher: "alice.os".into(),
                topic: "news".into(),
                seq,
                at: 1_764_031_200_000,
                kind: wn::PayloadKind::Json,
                size: 17,
                signature: "07".repeat(64),
            },
        )
    }

    fn policies() -> Vec<(on::Policy, wn::Policy)> {
        vec![
            (on::Policy::Open, wn::Policy::Open),
            (
                on::Policy::AllowList(vec![id("bob.os"), id("charlie.os")]),
                wn::Policy::AllowList(vec!["bob.os".into(), "charlie.os".into()]),
            ),
            (on::Policy::OwnerOnly, wn::Policy::OwnerOnly),
        ]
    }

    fn topic_info() -> (on::TopicInfo, wn::TopicInfo) {
        (
            on::TopicInfo {
                topic: "news".into(),
                owner: "alice.os@app:app:someone.os".into(),
                policy: on::Policy::AllowList(vec![id("bob.os")]),
                last_seq: 4,
                first_retained: 2,
                subscriber_nodes: 1,
                retention: on::TopicRetention {
                    max_age_s: 3_600,
                    max_count: 100,
                },
            },
            wn::TopicInfo {
                topic: "news".into(),
                owner: "alice.os@app:app:someone.os".into(),
                policy: wn::Policy::AllowList(vec!["bob.os".into()]),
                last_seq: 4,
                first_retained: 2,
                subscriber_nodes: 1,
                retention: wn::TopicRetention {
                    max_age_s: 3_600,
                    max_count: 100,
                },
            },
        )
    }

    fn stats() -> (on::NotifyStats, wn::NotifyStats) {
        (
            on::NotifyStats {
                topics: vec![on::TopicStats {
                    topic: "news".into(),
                    retention: on::TopicRetention {
                        max_age_s: 86_400,
                        max_count: 1_000,
                    },
                    published: 1,
                    sent: 2,
                    failed: 3,
                    delivered: 4,
                    pending: 5,
                    dropped_by_retention: 6,
                    relay_payloads: 7,
                    announcements: 8,
                    subscribers: vec![on::SubscriberStats {
                        node: id("bob.os"),
                        acked: 9,
                        sent: 10,
                        failed: 11,
                        delivered: 12,
                        pending: 13,
                        dropped_by_retention: 14,
                    }],
                }],
                subscriptions: vec![on::DeliveryStats {
                    app: "bob.os@app:app:someone.os".into(),
                    publisher: id("alice.os"),
                    topic: "news".into(),
                    delivered: 15,
                    failed: 16,
                    pending: 17,
                    dropped_by_retention: 18,
                }],
                duplicates_suppressed: 19,
                refused: 20,
                relays: vec![on::RelayStats {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                    epoch: 21,
                    children: 22,
                    grafted: 23,
                    payloads: 24,
                    announcements: 25,
                    grafts: 26,
                    prunes: 27,
                }],
                next_cursor: None,
                hearsay_ignored: 28,
                deaths_taken: 29,
                paused_nodes: 30,
                early_sends: 31,
                presence: on::PresenceSubscription::Waiting,
                presence_gaps: 32,
                demotions: 33,
            },
            wn::NotifyStats {
                topics: vec![wn::TopicStats {
                    topic: "news".into(),
                    retention: wn::TopicRetention {
                        max_age_s: 86_400,
                        max_count: 1_000,
                    },
                    published: 1,
                    sent: 2,
                    failed: 3,
                    delivered: 4,
                    pending: 5,
                    dropped_by_retention: 6,
                    relay_payloads: 7,
                    announcements: 8,
                    subscribers: vec![wn::SubscriberStats {
                        node: "bob.os".into(),
                        acked: 9,
                        sent: 10,
                        failed: 11,
                        delivered: 12,
                        pending: 13,
                        dropped_by_retention: 14,
                    }],
                }],
                subscriptions: vec![wn::DeliveryStats {
                    app: "bob.os@app:app:someone.os".into(),
                    publisher: "alice.os".into(),
                    topic: "news".into(),
                    delivered: 15,
                    failed: 16,
                    pending: 17,
                    dropped_by_retention: 18,
                }],
                duplicates_suppressed: 19,
                refused: 20,
                relays: vec![wn::RelayStats {
                    publisher: "alice.os".into(),
                    topic: "news".into(),
                    epoch: 21,
                    children: 22,
                    grafted: 23,
                    payloads: 24,
                    announcements: 25,
                    grafts: 26,
                    prunes: 27,
                }],
                next_cursor: None,
                hearsay_ignored: 28,
                deaths_taken: 29,
                paused_nodes: 30,
                early_sends: 31,
                presence: wn::PresenceSubscription::Waiting,
                presence_gaps: 32,
                demotions: 33,
            },
        )
    }

    fn requests() -> Vec<(on::Request, wn::Request)> {
        use on::Request as O;
        use wn::Request as W;
        let sub = || wn::SubscriptionRequest {
            publisher: "alice.os".into(),
            topic: "news".into(),
        };
        let mut v = vec![
            (O::Ping {}, W::Ping),
            (O::Info {}, W::Info),
            (
                O::Publish {
                    topic: "news".into(),
                    kind: on::PayloadKind::Blob,
                },
                W::Publish(wn::PublishRequest {
                    topic: "news".into(),
                    kind: wn::PayloadKind::Blob,
                }),
            ),
            (
                O::Subscribe {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                },
                W::Subscribe(sub()),
            ),
            (
                O::Unsubscribe {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                },
                W::Unsubscribe(sub()),
            ),
            (O::ListSubscriptions {}, W::ListSubscriptions),
            (
                O::ListTopics {
                    cursor: None,
                    limit: None,
                },
                W::ListTopics(wn::PageRequest {
                    cursor: None,
                    limit: None,
                }),
            ),
            (
                O::Stats {
                    cursor: Some("news".into()),
                    limit: Some(10),
                },
                W::Stats(wn::PageRequest {
                    cursor: Some("news".into()),
                    limit: Some(10),
                }),
            ),
            (O::Health {}, W::Health),
            (
                O::PeerSubscribe {
                    topic: "news".into(),
                },
                W::PeerSubscribe(wn::TopicRequest {
                    topic: "news".into(),
                }),
            ),
            (
                O::PeerUnsubscribe {
                    topic: "news".into(),
                },
                W::PeerUnsubscribe(wn::TopicRequest {
                    topic: "news".into(),
                }),
            ),
            (
                O::Resume {
                    topic: "news".into(),
                    up_to: 3,
                },
                W::Resume(wn::Resume {
                    topic: "news".into(),
                    up_to: 3,
                }),
            ),
            (
                O::IHave {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                    up_to: 4,
                },
                W::IHave(wn::Announcement {
                    publisher: "alice.os".into(),
                    topic: "news".into(),
                    up_to: 4,
                }),
            ),
            (
                O::Graft {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                    up_to: 2,
                },
                W::Graft(wn::Announcement {
                    publisher: "alice.os".into(),
                    topic: "news".into(),
                    up_to: 2,
                }),
            ),
            (
                O::Prune {
                    publisher: id("alice.os"),
                    topic: "news".into(),
                },
                W::Prune(wn::StreamRef {
                    publisher: "alice.os".into(),
                    topic: "news".into(),
                }),
            ),
            (
                O::Revoke {
                    topic: "news".into(),
                    reason: "no longer admitted".into(),
                },
                W::Revoke(wn::Revoke {
                    topic: "news".into(),
                    reason: "no longer admitted".into(),
                }),
            ),
        ];
        for (age, count) in [(Some(3_600), Some(100)), (None, Some(5)), (None, None)] {
            v.push((
                O::SetRetention {
                    topic: "news".into(),
                    max_age_s: age,
                    max_count: count,
                },
                W::SetRetention(wn::SetRetentionRequest {
                    topic: "news".into(),
                    max_age_s: age,
                    max_count: count,
                }),
            ));
        }
        for (op, wp) in policies() {
            v.push((
                O::SetTopic {
                    topic: "news".into(),
                    policy: op,
                },
                W::SetTopic(wn::SetTopicRequest {
                    topic: "news".into(),
                    policy: wp,
                }),
            ));
        }
        for lost in [false, true] {
            let (a, wa) = note(4);
            let (b, wb) = note(5);
            // A relay's copy names the publisher and may carry the tree's roster.
            let relay = lost;
            v.push((
                O::Deliver {
                    topic: "news".into(),
                    lost: (!relay).then_some(on::SeqRange { from: 1, to: 3 }),
                    notes: vec![a, b],
                    publisher: relay.then(|| id("alice.os")),
                    roster: relay.then(|| on::Roster {
                        publisher: id("alice.os"),
                        topic: "news".into(),
                        epoch: 2,
                        fanout: 8,
                        members: vec![id("bob.os"), id("charlie.os")],
                        signature: vec![9; 64],
                        index: Default::default(),
                    }),
                    last: (!relay).then_some(5),
                },
                W::Deliver(wn::Deliver {
                    topic: "news".into(),
                    lost: (!relay).then_some(wn::SeqRange { from: 1, to: 3 }),
                    notes: vec![wa, wb],
                    publisher: relay.then(|| "alice.os".into()),
                    roster: relay.then(|| wn::Roster {
                        publisher: "alice.os".into(),
                        topic: "news".into(),
                        epoch: 2,
                        fanout: 8,
                        members: vec!["bob.os".into(), "charlie.os".into()],
                        signature: "09".repeat(64),
                    }),
                    last: (!relay).then_some(5),
                }),
            ));
        }
        v
    }

    fn responses() -> Vec<(on::Response, wn::Response)> {
        use on::Response as O;
        use wn::Response as W;
        let (p, wpong) = pong();
        let (si, wsi) = service_info();
        let (ti, wti) = topic_info();
        let (n, wnote) = note(1);
        let (st, wst) = stats();
        vec![
            (O::Pong(p), W::Pong(wpong)),
            (O::Info(si), W::Info(wsi)),
            (O::TopicSet(ti.clone()), W::TopicSet(wti.clone())),
            (O::Published(n), W::Published(wnote)),
            (
                O::Subscribed { next_seq: 5 },
                W::Subscribed(wn::NextSeq { next_seq: 5 }),
            ),
            (O::Unsubscribed {}, W::Unsubscribed),
            (
                O::Subscriptions {
                    subscriptions: vec![on::SubscriptionInfo {
                        publisher: id("alice.os"),
                        topic: "news".into(),
                        cursor: 3,
                        pending: 1,
                    }],
                },
                W::Subscriptions(wn::Subscriptions {
                    subscriptions: vec![wn::SubscriptionInfo {
                        publisher: "alice.os".into(),
                        topic: "news".into(),
                        cursor: 3,
                        pending: 1,
                    }],
                }),
            ),
            (
                O::Topics {
                    topics: vec![ti],
                    next_cursor: Some("news".into()),
                },
                W::Topics(wn::Topics {
                    topics: vec![wti],
                    next_cursor: Some("news".into()),
                }),
            ),
            (O::Stats(st), W::Stats(wst)),
            (O::Health(health().0), W::Health(health().1)),
            (
                O::PeerSubscribed { next_seq: 2 },
                W::PeerSubscribed(wn::NextSeq { next_seq: 2 }),
            ),
            (
                O::Delivered { up_to: 9 },
                W::Delivered(wn::Delivered { up_to: 9 }),
            ),
            (O::Accepted {}, W::Accepted),
        ]
    }

    #[test]
    fn notify_requests_are_the_wit_json() {
        requests_are_the_wit_json(requests(), "notify", on::MAX_BODY, on::Request::validated);
        all_same(&policies(), derived_names::<on::Policy>(), "notify policy");
    }

    #[test]
    fn notify_responses_are_the_wit_json() {
        responses_are_the_wit_json(responses(), "notify");
    }

    #[test]
    fn notify_app_messages_are_the_wit_json() {
        let (n, wnote) = note(2);
        all_same(
            &[
                (
                    on::AppMessage::Welcome {
                        publisher: id("alice.os"),
                        topic: "news".into(),
                    },
                    wn::AppMessage::Welcome(wn::Welcome {
                        publisher: "alice.os".into(),
                        topic: "news".into(),
                    }),
                ),
                (
                    on::AppMessage::HandleNotification(n),
                    wn::AppMessage::HandleNotification(wnote),
                ),
                (
                    on::AppMessage::Lost {
                        publisher: id("alice.os"),
                        topic: "news".into(),
                        range: on::SeqRange { from: 1, to: 4 },
                    },
                    wn::AppMessage::Lost(wn::Lost {
                        publisher: "alice.os".into(),
                        topic: "news".into(),
                        range: wn::SeqRange { from: 1, to: 4 },
                    }),
                ),
                (
                    on::AppMessage::Revoked {
                        publisher: id("alice.os"),
                        topic: "news".into(),
                        reason: "no longer admitted".into(),
                    },
                    wn::AppMessage::Revoked(wn::Revoked {
                        publisher: "alice.os".into(),
                        topic: "news".into(),
                        reason: "no longer admitted".into(),
                    }),
                ),
            ],
            derived_names::<on::AppMessage>(),
            "notify app message",
        );
        all_same(
            &[
                (on::PayloadKind::Json, wn::PayloadKind::Json),
                (on::PayloadKind::Blob, wn::PayloadKind::Blob),
            ],
            derived_names::<on::PayloadKind>(),
            "payload kind",
        );
    }

    #[test]
    fn presence_subscription_states_are_the_wit_json() {
        use on::PresenceSubscription as O;
        use wn::PresenceSubscription as W;
        all_same(
            &[
                (O::Idle, W::Idle),
                (O::Asking, W::Asking),
                (O::Waiting, W::Waiting),
                (O::Subscribed, W::Subscribed),
            ],
            derived_names::<O>(),
            "presence subscription",
        );
    }
}

// ----- txcoord -----

mod txcoord {
    use super::*;
    use p2p_common::api::txcoord as ot;

    const TX: &str = "alice.os/3f2a9c0d51e7b486";

    fn spec(node: &str, op: &str) -> (ot::ParticipantSpec, wt::ParticipantSpec) {
        (
            ot::ParticipantSpec {
                node: id(node),
                resource: "kv".into(),
                operation: op.into(),
            },
            wt::ParticipantSpec {
                node: node.into(),
                resource: "kv".into(),
                operation: op.into(),
            },
        )
    }

    fn vote_view(vote: Option<ot::Vote>) -> (ot::VoteView, wt::VoteView) {
        let wv = vote.map(|v| match v {
            ot::Vote::Yes => wt::Vote::Yes,
            ot::Vote::No => wt::Vote::No,
        });
        (
            ot::VoteView {
                node: id("bob.os"),
                resource: "kv".into(),
                vote,
                reason: "locked".into(),
                acked: true,
            },
            wt::VoteView {
                node: "bob.os".into(),
                resource: "kv".into(),
                vote: wv,
                reason: "locked".into(),
                acked: true,
            },
        )
    }

    fn status() -> (ot::TxStatus, wt::TxStatus) {
        let (a, wa) = vote_view(Some(ot::Vote::Yes));
        let (b, wb) = vote_view(None);
        (
            ot::TxStatus {
                tx_id: TX.into(),
                role: ot::Role::Coordinator,
                phase: ot::Phase::Committing,
                votes: vec![a, b],
                reason: String::new(),
            },
            wt::TxStatus {
                tx_id: TX.into(),
                role: wt::Role::Coordinator,
                phase: wt::Phase::Committing,
                votes: vec![wa, wb],
                reason: String::new(),
            },
        )
    }

    fn requests() -> Vec<(ot::Request, wt::Request)> {
        use ot::Request as O;
        use wt::Request as W;
        let (a, wa) = spec("bob.os", "set x=1");
        let (b, wb) = spec("carol.os", "");
        let txr = || wt::TxRef { tx_id: TX.into() };
        let res = || wt::ResourceRef {
            resource: "kv".into(),
        };
        vec![
            (O::Ping {}, W::Ping),
            (O::Info {}, W::Info),
            (
                O::Start {
                    participants: vec![a.clone(), b],
                    timeout_ms: Some(5_000),
                },
                W::Start(wt::StartRequest {
                    participants: vec![wa.clone(), wb],
                    timeout_ms: Some(5_000),
                }),
            ),
            (
                O::Start {
                    participants: vec![a],
                    timeout_ms: None,
                },
                W::Start(wt::StartRequest {
                    participants: vec![wa],
                    timeout_ms: None,
                }),
            ),
            (O::AbortTx { tx_id: TX.into() }, W::AbortTx(txr())),
            (O::Status { tx_id: TX.into() }, W::Status(txr())),
            (
                O::List(ot::ListFilter::default()),
                W::List(wt::ListFilter {
                    phase: None,
                    role: None,
                    cursor: None,
                    limit: None,
                    include_finished: None,
                }),
            ),
            (
                O::List(ot::ListFilter {
                    phase: Some(ot::Phase::Prepared),
                    role: Some(ot::Role::Participant),
                    cursor: Some(TX.into()),
                    limit: Some(50),
                    include_finished: Some(true),
                }),
                W::List(wt::ListFilter {
                    phase: Some(wt::Phase::Prepared),
                    role: Some(wt::Role::Participant),
                    cursor: Some(TX.into()),
                    limit: Some(50),
                    include_finished: Some(true),
                }),
            ),
            (
                O::RegisterManager {
                    resource: "kv".into(),
                    coordinators: None,
                },
                W::RegisterManager(wt::RegisterManagerRequest {
                    resource: "kv".into(),
                    coordinators: None,
                }),
            ),
            (
                O::RegisterManager {
                    resource: "kv".into(),
                    coordinators: Some(ot::Coordinators::Only(vec![id("alice.os"), id("bob.os")])),
                },
                W::RegisterManager(wt::RegisterManagerRequest {
                    resource: "kv".into(),
                    coordinators: Some(wt::Coordinators::Only(vec![
                        "alice.os".into(),
                        "bob.os".into(),
                    ])),
                }),
            ),
            (
                O::RegisterManager {
                    resource: "kv".into(),
                    coordinators: Some(ot::Coordinators::Any),
                },
                W::RegisterManager(wt::RegisterManagerRequest {
                    resource: "kv".into(),
                    coordinators: Some(wt::Coordinators::Any),
                }),
            ),
            (
                O::UnregisterManager {
                    resource: "kv".into(),
                },
                W::UnregisterManager(res()),
            ),
            (
                O::Prepare {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    operation: "set x=1".into(),
                    participants: vec![id("bob.os"), id("carol.os")],
                    deadline_ms: 30_000,
                },
                W::Prepare(wt::Prepare {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    operation: "set x=1".into(),
                    participants: vec!["bob.os".into(), "carol.os".into()],
                    deadline_ms: 30_000,
                }),
            ),
            (
                O::Commit {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    signature: vec![0xab; 64],
                },
                W::Commit(wt::SignedDecision {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    signature: "ab".repeat(64),
                }),
            ),
            (
                O::Abort {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    signature: vec![],
                },
                W::Abort(wt::SignedDecision {
                    tx_id: TX.into(),
                    resource: "kv".into(),
                    signature: String::new(),
                }),
            ),
            (
                O::QueryOutcome {
                    tx_id: TX.into(),
                    more: vec!["alice.os/0b".into()],
                },
                W::QueryOutcome(wt::OutcomeQuery {
                    tx_id: TX.into(),
                    more: vec!["alice.os/0b".into()],
                }),
            ),
        ]
    }

    fn outcomes() -> Vec<(ot::Outcome, wt::Outcome)> {
        vec![
            (ot::Outcome::Committed, wt::Outcome::Committed),
            (ot::Outcome::Aborted, wt::Outcome::Aborted),
            (ot::Outcome::Pending, wt::Outcome::Pending),
            (ot::Outcome::Unknown, wt::Outcome::Unknown),
        ]
    }

    fn responses() -> Vec<(ot::Response, wt::Response)> {
        use ot::Response as O;
        use wt::Response as W;
        let (p, wpong) = pong();
        let (si, wsi) = service_info();
        let (st, wst) = status();
        let txr = || wt::TxRef { tx_id: TX.into() };
        vec![
            (O::Pong(p), W::Pong(wpong)),
            (O::Info(si), W::Info(wsi)),
            (O::Started { tx_id: TX.into() }, W::Started(txr())),
            (O::Status(st.clone()), W::Status(wst.clone())),
            (
                O::Transactions {
                    transactions: vec![st],
                    next_cursor: Some(TX.into()),
                },
                W::Transactions(wt::Transactions {
                    transactions: vec![wst],
                    next_cursor: Some(TX.into()),
                }),
            ),
            (
                O::Transactions {
                    transactions: vec![],
                    next_cursor: None,
                },
                W::Transactions(wt::Transactions {
                    transactions: vec![],
                    next_cursor: None,
                }),
            ),
            (
                O::ManagerRegistered {
                    resource: "kv".into(),
                    pending: 2,
                    coordinators: ot::Coordinators::Only(vec![id("bob.os")]),
                },
                W::ManagerRegistered(wt::ManagerRegistered {
                    resource: "kv".into(),
                    pending: 2,
                    coordinators: wt::Coordinators::Only(vec!["bob.os".into()]),
                }),
            ),
            (
                O::ManagerUnregistered {
                    resource: "kv".into(),
                },
                W::ManagerUnregistered(wt::ResourceRef {
                    resource: "kv".into(),
                }),
            ),
            (
                O::Voted {
                    tx_id: TX.into(),
                    vote: ot::Vote::No,
                    reason: "locked".into(),
                },
                W::Voted(wt::Voted {
                    tx_id: TX.into(),
                    vote: wt::Vote::No,
                    reason: "locked".into(),
                }),
            ),
            (O::Voting { tx_id: TX.into() }, W::Voting(txr())),
            (
                O::Ack {
                    tx_id: TX.into(),
                    outcome: ot::Outcome::Committed,
                },
                W::Ack(wt::TxOutcome {
                    tx_id: TX.into(),
                    outcome: wt::Outcome::Committed,
                }),
            ),
            (
                O::Outcome {
                    tx_id: TX.into(),
                    outcome: ot::Outcome::Unknown,
                    signature: vec![],
                    more: vec![ot::SignedOutcome {
                        tx_id: "alice.os/0b".into(),
                        outcome: ot::Outcome::Committed,
                        signature: vec![0x0f; 64],
                    }],
                },
                W::Outcome(wt::OutcomeAnswer {
                    tx_id: TX.into(),
                    outcome: wt::Outcome::Unknown,
                    signature: String::new(),
                    more: vec![wt::SignedOutcome {
                        tx_id: "alice.os/0b".into(),
                        outcome: wt::Outcome::Committed,
                        signature: "0f".repeat(64),
                    }],
                }),
            ),
        ]
    }

    #[test]
    fn txcoord_requests_are_the_wit_json() {
        requests_are_the_wit_json(requests(), "txcoord", 1 << 20, ot::Request::validated);
    }

    #[test]
    fn txcoord_responses_are_the_wit_json() {
        responses_are_the_wit_json(responses(), "txcoord");
        let oe = api::ApiError::not_found("no transaction here");
        let we = wc::ApiError {
            code: wc::ErrorCode::NotFound,
            message: "no transaction here".into(),
        };
        same::<api::ApiResult<ot::Response>, wt::ResponseBody>(&Err(oe), &Err(we));
    }

    #[test]
    fn txcoord_enums_are_the_wit_json() {
        all_same(&outcomes(), derived_names::<ot::Outcome>(), "outcome");
        all_same(
            &[(ot::Vote::Yes, wt::Vote::Yes), (ot::Vote::No, wt::Vote::No)],
            derived_names::<ot::Vote>(),
            "vote",
        );
        all_same(
            &[
                (ot::Role::Coordinator, wt::Role::Coordinator),
                (ot::Role::Participant, wt::Role::Participant),
            ],
            derived_names::<ot::Role>(),
            "role",
        );
        use ot::Phase as P;
        use wt::Phase as Q;
        all_same(
            &[
                (P::Preparing, Q::Preparing),
                (P::Prepared, Q::Prepared),
                (P::Committing, Q::Committing),
                (P::Aborting, Q::Aborting),
                (P::Committed, Q::Committed),
                (P::Aborted, Q::Aborted),
            ],
            derived_names::<ot::Phase>(),
            "phase",
        );
    }

    #[test]
    fn txcoord_manager_messages_and_events_are_the_wit_json() {
        let dec = || wt::Decision {
            tx_id: TX.into(),
            resource: "kv".into(),
        };
        all_same(
            &[
                (
                    ot::ManagerMessage::Hello {
                        resource: "kv".into(),
                    },
                    wt::ManagerMessage::Hello(wt::ResourceRef {
                        resource: "kv".into(),
                    }),
                ),
                (
                    ot::ManagerMessage::PrepareTransaction {
                        tx_id: TX.into(),
                        coordinator: id("alice.os"),
                        resource: "kv".into(),
                        operation: "set x=1".into(),
                    },
                    wt::ManagerMessage::PrepareTransaction(wt::PrepareTransaction {
                        tx_id: TX.into(),
                        coordinator: "alice.os".into(),
                        resource: "kv".into(),
                        operation: "set x=1".into(),
                    }),
                ),
                (
                    ot::ManagerMessage::CommitTransaction {
                        tx_id: TX.into(),
                        resource: "kv".into(),
                    },
                    wt::ManagerMessage::CommitTransaction(dec()),
                ),
                (
                    ot::ManagerMessage::AbortTransaction {
                        tx_id: TX.into(),
                        resource: "kv".into(),
                    },
                    wt::ManagerMessage::AbortTransaction(dec()),
                ),
            ],
            wire::variant_names::<ot::ManagerMessage>()
                .iter()
                .copied()
                .collect(),
            "txcoord manager message",
        );
        let answers = [
            (
                ot::ManagerAnswer::Vote {
                    vote: ot::Vote::Yes,
                    reason: String::new(),
                },
                wt::ManagerAnswer::Vote(wt::ManagerVote {
                    vote: wt::Vote::Yes,
                    reason: String::new(),
                }),
            ),
            (ot::ManagerAnswer::Done {}, wt::ManagerAnswer::Done),
            (
                ot::ManagerAnswer::InDoubt {
                    tx_ids: vec![TX.into()],
                },
                wt::ManagerAnswer::InDoubt(wt::InDoubt {
                    tx_ids: vec![TX.into()],
                }),
            ),
        ];
        all_same(
            &answers,
            wire::variant_names::<ot::ManagerAnswer>()
                .iter()
                .copied()
                .collect(),
            "txcoord manager answer",
        );
        for (o, w) in answers {
            same::<api::ApiResult<ot::ManagerAnswer>, wt::ManagerBody>(&Ok(o), &Ok(w));
        }
        let (v, wv) = vote_view(Some(ot::Vote::Yes));
        all_same(
            &[(
                ot::AppEvent::TxDecided {
                    tx_id: TX.into(),
                    outcome: ot::Outcome::Committed,
                    votes: vec![v],
                    reason: String::new(),
                },
                wt::AppEvent::TxDecided(wt::TxDecided {
                    tx_id: TX.into(),
                    outcome: wt::Outcome::Committed,
                    votes: vec![wv],
                    reason: String::new(),
                }),
            )],
            wire::variant_names::<ot::AppEvent>()
                .iter()
                .copied()
                .collect(),
            "txcoord event",
        );
    }
}
