//! Hostile and malformed input against one presence core, through the real driver.

use p2p_common::api::presence::{ConfigPatch, MemberStatus, NodeInfo, Request, Response, Update};
use p2p_common::api::{decode_response, ErrorCode};
use p2p_common::driver::{Driver, KernelCall, KernelEvent};
use p2p_common::{Address, NodeId, SendErrorKind};
use presence::core::Presence;

fn node(s: &str) -> NodeId {
    NodeId::parse(s).unwrap()
}
fn pres(n: &str) -> Address {
    Address::ours(&node(n), "presence")
}

/// One presence core plus the kernel calls it made, with its timers kept for firing.
struct Harness {
    d: Driver<Presence>,
    now: u64,
    sent: Vec<KernelCall>,
}

impl Harness {
    fn new() -> Self {
        let our = pres("alice.os");
        let mut d = Driver::new(our.clone(), presence::core::new(our));
        let sent = d.start(p2p_common::Now::at(0), None, Default::default(), 1);
        Harness { d, now: 0, sent }
    }
    fn core(&self) -> &Presence {
        self.d.core()
    }
    /// A request from `from`; returns the reply body.
    fn request(&mut self, from: &Address, req: &Request) -> Vec<u8> {
        self.raw(from, &serde_json::to_vec(req).unwrap())
    }
    /// A request with the body as given (e.g. a newer peer's JSON); returns the reply body.
    fn raw(&mut self, from: &Address, body: &[u8]) -> Vec<u8> {
        self.now += 10;
        let calls = self.d.step(
            p2p_common::Now::at(self.now),
            KernelEvent::Request {
                source: from.clone(),
                expects_response: Some(5),
                body: body.to_vec(),
                blob: None,
            },
        );
        let reply = calls
            .iter()
            .find_map(|c| match c {
                KernelCall::SendResponse { body, .. } => Some(body.clone()),
                _ => None,
            })
            .expect("a reply");
        self.sent.extend(calls);
        reply
    }
    /// `from` gossips `updates`. Nodes it reports alive first speak for themselves (so the
    /// test does not depend on who may introduce whom).
    fn gossip(&mut self, from: &str, updates: Vec<Update>) {
        for u in &updates {
            if u.status == MemberStatus::Alive && u.node.as_str() != from {
                let own = Update {
                    origin: u.node.clone(),
                    ..u.clone()
                };
                self.request(
                    &pres(u.node.as_str()),
                    &Request::Gossip { updates: vec![own] },
                );
            }
        }
        self.request(&pres(from), &Request::Gossip { updates });
    }
    /// Fire the first pending timer whose body matches `tick` (e.g. "Probe").
    fn fire(&mut self, tick: &str) -> Vec<KernelCall> {
        let i = self
            .sent
            .iter()
            .position(|c| {
                matches!(c, KernelCall::SendRequest { target, context: Some(ctx), .. }
                if target.process.process == "timer" && self.d.context_label(ctx).is_some_and(|l| l.contains(tick)))
            })
            .expect("timer set");
        let KernelCall::SendRequest {
            target, context, ..
        } = self.sent.remove(i)
        else {
            unreachable!()
        };
        self.now += 10_000;
        let calls = self.d.step(
            p2p_common::Now::at(self.now),
            KernelEvent::Response {
                source: target,
                body: vec![],
                blob: None,
                context,
            },
        );
        self.sent.extend(calls.clone());
        calls
    }
    /// Fire every pending timer whose body matches `tick`.
    fn fire_all(&mut self, tick: &str) {
        let n = self
            .sent
            .iter()
            .filter(|c| {
                matches!(c, KernelCall::SendRequest { target, context: Some(ctx), .. }
                if target.process.process == "timer" && self.d.context_label(ctx).is_some_and(|l| l.contains(tick)))
            })
            .count();
        for _ in 0..n {
            self.fire(tick);
        }
    }
    /// Requests sent to `to` among `calls`: (body, context).
    fn sends_to(calls: &[KernelCall], to: &str) -> Vec<(Request, Option<Vec<u8>>)> {
        calls
            .iter()
            .filter_map(|c| match c {
                KernelCall::SendRequest {
                    target,
                    body,
                    context,
                    ..
                } if target.node.as_str() == to && target.process.process == "presence" => {
                    Some((serde_json::from_slice(body).unwrap(), context.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

fn alive(n: &str, inc: u64) -> Update {
    Update {
        node: node(n),
        status: MemberStatus::Alive,
        incarnation: inc,
        info: None,
        origin: node(n),
    }
}

#[test]
fn forged_claims_about_us_cannot_overflow_or_exhaust_our_incarnation() {
    let mut h = Harness::new();
    h.gossip("bob.os", vec![alive("bob.os", 1)]);
    let inc = h.core().incarnation();
    let mut claim = Update {
        node: node("alice.os"),
        status: MemberStatus::Suspect,
        incarnation: u64::MAX,
        info: None,
        origin: node("bob.os"),
    };
    h.gossip("bob.os", vec![claim.clone()]);
    assert_eq!(
        h.core().incarnation(),
        inc,
        "a claim above what we ever said is forged"
    );
    claim.status = MemberStatus::Alive;
    h.gossip("bob.os", vec![claim.clone()]);
    assert_eq!(h.core().incarnation(), inc);
    // A real suspicion of our current incarnation is refuted once.
    claim.status = MemberStatus::Suspect;
    claim.incarnation = inc;
    h.gossip("bob.os", vec![claim.clone()]);
    assert_eq!(h.core().incarnation(), inc + 1);
    h.gossip("bob.os", vec![claim]);
    assert_eq!(
        h.core().incarnation(),
        inc + 1,
        "the same old claim is not refuted again"
    );
    assert!(
        h.core().member(&node("alice.os")).is_none(),
        "we are never our own member"
    );
}

#[test]
fn a_flood_of_forged_suspicions_stays_bounded() {
    let mut h = Harness::new();
    h.gossip("bob.os", vec![alive("bob.os", 1), alive("carol.os", 1)]);
    let flood: Vec<Update> = (0..5_000)
        .map(|i| Update {
            node: node("carol.os"),
            status: MemberStatus::Suspect,
            incarnation: 1,
            info: None,
            origin: node(&format!("fake{i}.os")),
        })
        .collect();
    h.gossip("bob.os", flood);
    assert_eq!(
        h.core().status_of(&node("carol.os")),
        Some(MemberStatus::Alive),
        "no member vouched for these suspicions"
    );
    // Suspicions from real members count, up to the first suspecter plus K confirmations.
    let members: Vec<String> = (0..10).map(|i| format!("m{i}.os")).collect();
    h.gossip("bob.os", members.iter().map(|m| alive(m, 1)).collect());
    let real: Vec<Update> = members
        .iter()
        .map(|m| Update {
            node: node("carol.os"),
            status: MemberStatus::Suspect,
            incarnation: 1,
            info: None,
            origin: node(m),
        })
        .collect();
    h.gossip("bob.os", real);
    let s = h
        .core()
        .member(&node("carol.os"))
        .unwrap()
        .suspicion
        .clone()
        .unwrap();
    assert_eq!(s.origins.len(), 4);
}

impl Harness {
    /// Run probe rounds until one probes `target` directly; time that probe out. Returns the
    /// round's seq, the helpers asked, and the retry's context.
    fn failed_direct_probe(&mut self, target: &str) -> (u64, Vec<String>, Option<Vec<u8>>) {
        let (seq, ctx) = loop {
            let calls = self.fire("(Probe)");
            if let Some((Request::Probe { seq, .. }, ctx)) = Harness::sends_to(&calls, target).pop()
            {
                break (seq, ctx);
            }
            // Answer the other probe so its round ends acked and the next tick starts anew.
            let other = calls.iter().find_map(|c| match c {
                KernelCall::SendRequest {
                    target, context, ..
                } if target.process.process == "presence" => {
                    Some((target.clone(), context.clone()))
                }
                _ => None,
            });
            let (t, c) = other.expect("a probe");
            let ack = serde_json::to_vec(&Ok::<Response, ()>(Response::Ack {
                seq: 0,
                updates: vec![],
                protocol_version: p2p_common::api::PROTOCOL_VERSION,
            }))
            .unwrap();
            self.d.step(
                p2p_common::Now::at(self.now),
                KernelEvent::Response {
                    source: t,
                    body: ack,
                    blob: None,
                    context: c,
                },
            );
        };
        self.now += 1_000;
        let calls = self.d.step(
            p2p_common::Now::at(self.now),
            KernelEvent::SendError {
                kind: SendErrorKind::Timeout,
                target: pres(target),
                context: ctx,
            },
        );
        let helpers: Vec<String> = ["bob.os", "carol.os", "dave.os"]
            .into_iter()
            .filter(|n| *n != target && !Harness::sends_to(&calls, n).is_empty())
            .map(String::from)
            .collect();
        let retry = Harness::sends_to(&calls, target)
            .pop()
            .map(|(_, c)| c)
            .expect("a second direct probe");
        self.sent.extend(calls);
        (seq, helpers, retry)
    }
}

#[test]
fn indirect_acks_count_only_from_the_helpers_asked_and_once() {
    let mut h = Harness::new();
    h.gossip(
        "bob.os",
        vec![
            alive("bob.os", 1),
            alive("carol.os", 1),
            alive("dave.os", 1),
        ],
    );
    let (seq, helpers, retry) = h.failed_direct_probe("carol.os");
    assert_eq!(
        helpers,
        vec!["bob.os", "dave.os"],
        "both other members asked to help"
    );
    // eve was not asked: her ack must not save carol; a repeated nack is not a second helper.
    h.request(
        &pres("eve.os"),
        &Request::IndirectAck {
            seq,
            target: node("carol.os"),
        },
    );
    h.request(
        &pres("bob.os"),
        &Request::IndirectNack {
            seq,
            target: node("carol.os"),
        },
    );
    h.request(
        &pres("bob.os"),
        &Request::IndirectNack {
            seq,
            target: node("carol.os"),
        },
    );
    assert_eq!(
        h.core().status_of(&node("carol.os")),
        Some(MemberStatus::Alive),
        "dave has not answered yet"
    );
    h.request(
        &pres("dave.os"),
        &Request::IndirectNack {
            seq,
            target: node("carol.os"),
        },
    );
    h.now += 2_000;
    h.d.step(
        p2p_common::Now::at(h.now),
        KernelEvent::SendError {
            kind: SendErrorKind::Timeout,
            target: pres("carol.os"),
            context: retry,
        },
    );
    assert_eq!(
        h.core().status_of(&node("carol.os")),
        Some(MemberStatus::Suspect),
        "every real helper and the retry failed"
    );
    assert_eq!(
        h.core().local_health(),
        1,
        "a failed round raises local health"
    );
    // A round whose helpers never answer (not even a nack) points at us: +2.
    let (_, helpers, _) = h.failed_direct_probe("dave.os");
    assert!(!helpers.is_empty());
    h.fire_all("ProbeWindow");
    assert_eq!(
        h.core().status_of(&node("dave.os")),
        Some(MemberStatus::Suspect)
    );
    let lhm = h.core().local_health();
    assert_eq!(lhm, 3);
    // Next round, bob fails its direct probe; dave's ack counts once, replays not at all.
    let (seq, helpers, _) = h.failed_direct_probe("bob.os");
    assert!(helpers.contains(&"dave.os".to_string()));
    h.request(
        &pres("dave.os"),
        &Request::IndirectAck {
            seq,
            target: node("bob.os"),
        },
    );
    assert_eq!(h.core().local_health(), lhm - 1);
    h.request(
        &pres("dave.os"),
        &Request::IndirectAck {
            seq,
            target: node("bob.os"),
        },
    );
    h.request(
        &pres("dave.os"),
        &Request::IndirectAck {
            seq,
            target: node("bob.os"),
        },
    );
    assert_eq!(
        h.core().local_health(),
        lhm - 1,
        "replayed acks change nothing"
    );
    h.fire("ProbeWindow");
    assert_eq!(
        h.core().status_of(&node("bob.os")),
        Some(MemberStatus::Alive),
        "the round ended acked"
    );
}

#[test]
fn settings_are_bounded() {
    let mut h = Harness::new();
    let app = Address::parse("alice.os@my-app:my-app:someone.os").unwrap();
    let d = ConfigPatch::default;
    for patch in [
        ConfigPatch {
            suspicion_max_mult: Some(1e300),
            ..d()
        },
        ConfigPatch {
            retransmit_mult: Some(4_000_000_000),
            ..d()
        },
        ConfigPatch {
            registry_ttl_ms: Some(u64::MAX),
            ..d()
        },
        ConfigPatch {
            probe_interval_ms: Some(u64::MAX),
            ..d()
        },
        ConfigPatch {
            push_pull_interval_ms: Some(0),
            ..d()
        },
        ConfigPatch {
            max_members: Some(1_000_000),
            ..d()
        },
    ] {
        let r = decode_response::<Response>(&h.request(&app, &Request::SetConfig(patch.clone())));
        assert_eq!(r.unwrap_err().code, ErrorCode::BadRequest, "{patch:?}");
    }
}

#[test]
fn a_probe_answered_with_an_error_proves_the_peer_alive() {
    // A peer on a newer protocol version refuses our probe as BadRequest: it answered, so it
    // is alive, and the round ends acked.
    let mut h = Harness::new();
    h.gossip("bob.os", vec![alive("bob.os", 1)]);
    let calls = h.fire("(Probe)");
    let (_, ctx) = Harness::sends_to(&calls, "bob.os")
        .pop()
        .expect("bob probed");
    let refusal = br#"{"Err":{"code":"BadRequest","message":"unknown variant `Probe2`"}}"#;
    h.now += 100;
    let calls = h.d.step(
        p2p_common::Now::at(h.now),
        KernelEvent::Response {
            source: pres("bob.os"),
            body: refusal.to_vec(),
            blob: None,
            context: ctx,
        },
    );
    h.sent.extend(calls);
    h.fire_all("ProbeWindow");
    assert_eq!(
        h.core().status_of(&node("bob.os")),
        Some(MemberStatus::Alive)
    );
    assert_eq!(h.core().stats().suspicions_started, 0);
}

#[test]
fn a_newer_peers_unknown_status_skips_that_fact_not_the_message() {
    // A newer peer gossips a status this version does not know, next to facts it does.
    let mut h = Harness::new();
    h.gossip("bob.os", vec![alive("bob.os", 1)]);
    let body = br#"{"Gossip": {"updates": [
        {"node": "carol.os", "status": "Dormant", "incarnation": 1, "origin": "carol.os"},
        {"node": "bob.os", "status": "Alive", "incarnation": 2, "origin": "bob.os", "region": "eu"}
    ], "hops": 3}}"#;
    let reply = h.raw(&pres("bob.os"), body);
    assert_eq!(
        decode_response::<Response>(&reply),
        Ok(Response::Accepted {})
    );
    assert_eq!(h.core().member(&node("bob.os")).unwrap().incarnation, 2);
    assert!(h.core().member(&node("carol.os")).is_none());
    // The same inside a probe: still acknowledged, so the newer peer is not suspected.
    let probe = br#"{"Probe": {"seq": 9, "updates": [{"node": "bob.os", "status": "Hibernating", "incarnation": 3, "origin": "bob.os"}]}}"#;
    let reply = h.raw(&pres("bob.os"), probe);
    assert!(matches!(
        decode_response::<Response>(&reply),
        Ok(Response::Ack { seq: 9, .. })
    ));
}

/// Kernel calls that are requests to other nodes' presence (probes, gossip), and log lines
/// at Info or above, among `calls`.
fn work(calls: &[KernelCall]) -> (usize, usize) {
    let requests = calls
        .iter()
        .filter(|c| {
            matches!(c, KernelCall::SendRequest { target, .. }
                if target.process.process == "presence" && target.node.as_str() != "alice.os")
        })
        .count();
    let lines = calls
        .iter()
        .filter(|c| matches!(c, KernelCall::Print { verbosity, .. } if *verbosity <= 2))
        .count();
    (requests, lines)
}

#[test]
fn one_message_naming_hundreds_of_suspects_costs_a_few_probes_and_one_log_line() {
    // Alice knows 300 members, each of which spoke for itself. Member bob sends one digest
    // (within its budget) calling every one of them Suspect, with itself as the origin: each
    // would be a first-hop suspicion, and each used to get its own confirmation probe and
    // its own log line.
    let mut h = Harness::new();
    let n = 300;
    let names: Vec<String> = (0..n).map(|i| format!("m{i:03}.os")).collect();
    h.gossip("bob.os", vec![alive("bob.os", 1)]);
    for m in &names {
        h.gossip(m, vec![alive(m, 1)]);
    }
    let mut members = vec![alive("bob.os", 1)];
    members.extend(names.iter().map(|m| Update {
        status: MemberStatus::Suspect,
        origin: node("bob.os"),
        ..alive(m, 1)
    }));
    let before = h.sent.len();
    let reply = h.request(
        &pres("bob.os"),
        &Request::PushPull {
            members,
            want_info: vec![],
            protocol_version: 1,
        },
    );
    assert!(matches!(
        decode_response::<Response>(&reply),
        Ok(Response::PushPull { .. })
    ));
    // Every suspicion is taken (they are facts about members) ...
    let suspects = names
        .iter()
        .filter(|m| h.core().status_of(&node(m)) == Some(MemberStatus::Suspect))
        .count();
    assert_eq!(suspects, n);
    // ... but the message buys at most K + 1 confirmation probes and one line at Info.
    let k = h.core().config().suspicion_confirmations as usize;
    let (requests, lines) = work(&h.sent[before..]);
    assert!(
        requests <= k + 1,
        "{requests} requests to other nodes for one message"
    );
    assert_eq!(lines, 1, "{lines} log lines at Info for one message");
}

#[test]
fn a_short_digest_buys_a_bounded_answer_in_bytes_too_and_a_left_member_none() {
    // Alice has 200 members with infos as large as the limits allow. A stranger's digest
    // naming only itself (which makes it a member) is answered with at most 2x its size or
    // 32 KiB, not with the members' infos up to 2 MiB.
    let mut h = Harness::new();
    let big = NodeInfo {
        metadata: (0..32)
            .map(|i| (format!("k{i:02}"), "v".repeat(512)))
            .collect(),
        ..NodeInfo::new(node("x.os"))
    };
    for i in 0..200 {
        let m = format!("m{i:03}.os");
        let info = NodeInfo {
            node_id: node(&m),
            ..big.clone()
        };
        assert!(info.validate().is_ok());
        let own = Update {
            info: Some(info),
            ..alive(&m, 1)
        };
        h.request(&pres(&m), &Request::Gossip { updates: vec![own] });
    }
    let digest = Request::PushPull {
        members: vec![alive("stranger.os", 1)],
        want_info: vec![],
        protocol_version: 1,
    };
    let size = serde_json::to_vec(&digest).unwrap().len();
    let reply = h.request(&pres("stranger.os"), &digest);
    let Ok(Response::PushPull { members, .. }) = decode_response::<Response>(&reply) else {
        panic!("no digest answer: {}", String::from_utf8_lossy(&reply));
    };
    assert!(!members.is_empty(), "the answer still carries what fits");
    assert!(
        reply.len() <= 33 << 10,
        "a {size}-byte digest was answered with {} bytes",
        reply.len()
    );
    // A member that left (said so itself) gets no digest answer.
    let left = Update {
        status: MemberStatus::Left,
        ..alive("m000.os", 1)
    };
    h.request(
        &pres("m000.os"),
        &Request::Gossip {
            updates: vec![left.clone()],
        },
    );
    assert_eq!(
        h.core().status_of(&node("m000.os")),
        Some(MemberStatus::Left)
    );
    let reply = h.request(
        &pres("m000.os"),
        &Request::PushPull {
            members: vec![left],
            want_info: vec![],
            protocol_version: 1,
        },
    );
    assert_eq!(
        decode_response::<Response>(&reply)
            .map(|_| ())
            .unwrap_err()
            .code,
        ErrorCode::Forbidden
    );
}

#[test]
fn a_candidate_that_answers_without_its_own_fact_is_not_admitted_at_the_relayed_incarnation() {
    // Member liar names x.os at the highest incarnation there is. x.os answers our probe
    // with an error (so with no fact of its own): it is there and is admitted, but not at
    // the liar's incarnation, which would leave it unable to refute anything.
    let mut h = Harness::new();
    h.gossip("liar.os", vec![alive("liar.os", 1)]);
    let before = h.sent.len();
    h.request(
        &pres("liar.os"),
        &Request::Gossip {
            updates: vec![Update {
                origin: node("liar.os"),
                ..alive("x.os", 1 << 53)
            }],
        },
    );
    let (probe, ctx) = Harness::sends_to(&h.sent[before..], "x.os")
        .pop()
        .expect("the candidate is probed");
    assert!(matches!(probe, Request::Probe { .. }));
    h.now += 100;
    let refusal = br#"{"Err":{"code":"BadRequest","message":"unknown variant `Probe`"}}"#;
    let calls = h.d.step(
        p2p_common::Now::at(h.now),
        KernelEvent::Response {
            source: pres("x.os"),
            body: refusal.to_vec(),
            blob: None,
            context: ctx,
        },
    );
    h.sent.extend(calls);
    let x = h
        .core()
        .member(&node("x.os"))
        .expect("admitted on its answer");
    assert_eq!(x.status, MemberStatus::Alive);
    assert_eq!(x.incarnation, 1, "admitted at the relayed incarnation");
    // Its own fact, at whatever incarnation it really has, is newer.
    h.request(
        &pres("x.os"),
        &Request::Gossip {
            updates: vec![alive("x.os", 7)],
        },
    );
    assert_eq!(h.core().member(&node("x.os")).unwrap().incarnation, 7);
}

#[test]
fn a_bootstrap_whose_cursor_never_ends_is_paged_once_per_join_not_at_every_renewal() {
    // Bootstrap boot.os answers every registration and every page with a cursor that
    // always advances. A join pages at most MAX_PAGES; renewals (which ask for no list) do
    // not page at all, however many there are.
    let mut h = Harness::new();
    let join = Request::Join {
        bootstrap: vec![node("boot.os")],
    };
    h.request(&Address::ours(&node("alice.os"), "app"), &join);
    let mut pages = 0;
    let mut registrations = 0;
    let mut cursor = 0u32;
    // Answer whatever alice sends boot.os; fire renewals for ~6 hours.
    for round in 0..(6 * 36) {
        loop {
            let Some(i) = h.sent.iter().position(|c| {
                matches!(c, KernelCall::SendRequest { target, .. } if target.node.as_str() == "boot.os")
            }) else {
                break;
            };
            let KernelCall::SendRequest { body, context, .. } = h.sent.remove(i) else {
                unreachable!()
            };
            cursor += 1;
            let next = Some(node(&format!("n{cursor:08}.os")));
            let answer = match serde_json::from_slice::<Request>(&body).unwrap() {
                Request::RegisterNode { .. } => {
                    registrations += 1;
                    Response::Registered {
                        // The bootstrap itself, as a bootstrap answers: a renewal then asks
                        // for no list.
                        nodes: vec![alive("boot.os", 1)],
                        next_cursor: next,
                        ttl_ms: 300_000,
                    }
                }
                Request::ListRegistry { .. } => {
                    pages += 1;
                    Response::Registry {
                        nodes: vec![],
                        next_cursor: next,
                    }
                }
                other => panic!("unexpected {other:?}"),
            };
            h.now += 10;
            let calls = h.d.step(
                p2p_common::Now::at(h.now),
                KernelEvent::Response {
                    source: pres("boot.os"),
                    body: p2p_common::api::encode_result(&Ok(answer)),
                    blob: None,
                    context,
                },
            );
            h.sent.extend(calls);
        }
        if round + 1 < 6 * 36 {
            // A renewal is due every third of the registry TTL (100 s).
            h.now += 100_000;
            h.fire("Renew");
        }
    }
    assert!(registrations > 100, "{registrations} registrations");
    assert!(
        pages <= presence::regclient::MAX_PAGES as usize,
        "{pages} pages from a bootstrap with an endless cursor over {registrations} registrations"
    );
}

#[test]
fn refuting_claims_about_us_does_not_move_our_local_health() {
    // A member keeps calling us suspect at our current incarnation. We refute every time
    // (at most once per gossip interval), but our local health says how well our own probes
    // go, not what others claim: it stays where it was.
    let mut h = Harness::new();
    h.gossip("bob.os", vec![alive("bob.os", 1)]);
    let start = h.core().incarnation();
    for _ in 0..20 {
        let claim = Update {
            node: node("alice.os"),
            status: MemberStatus::Suspect,
            incarnation: h.core().incarnation(),
            info: None,
            origin: node("bob.os"),
        };
        h.now += 1_000;
        h.gossip("bob.os", vec![claim]);
    }
    assert_eq!(h.core().incarnation(), start + 20, "each claim was refuted");
    assert_eq!(h.core().stats().refutations, 20);
    assert_eq!(h.core().local_health(), 0);
}
