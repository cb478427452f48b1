//! notify's answers and work per sender are bounded: `Stats` and `ListTopics` come a page
//! at a time (a node with many large topics would otherwise answer more than Hyperware's
//! 10 MiB), one sender cannot take every signature-check slot, a peer cannot reset the
//! circuit breaker that protects us from it, and a publisher cannot say numbers past what
//! it sends are lost. The core is driven directly (no network) where a scenario would need
//! thousands of nodes.

use notify::core::{Config, Ctx, Notify, Tick};
use notify::streams::StreamKey;
use p2p_common::api::notify::{
    NotifyStats, PayloadKind, Policy, Request, Response, SeqRange, MAX_PAGE_BYTES,
};
use p2p_common::api::{encode, try_decode_response, ApiResult, ErrorCode};
use p2p_common::{Address, Effect, Input, NodeId, Now, ProcessId, RequestId, Service};

type Eff = Effect<Ctx, Tick>;

fn addr(node: &str, process: &str) -> Address {
    Address::new(
        node.parse::<NodeId>().unwrap(),
        ProcessId::parse(process).unwrap(),
    )
}
fn notify_of(node: &str) -> Address {
    Address::new(node.parse::<NodeId>().unwrap(), ProcessId::ours("notify"))
}

struct Core {
    n: Notify,
    id: u64,
    t: u64,
}

impl Core {
    fn new() -> Self {
        let mut n = Notify::new(notify_of("alice.os"), Config::default());
        n.handle(
            Now::at(1_000),
            Input::Start {
                persisted: None,
                records: Default::default(),
                seed: 1,
            },
        );
        Core { n, id: 0, t: 1_000 }
    }
    /// A request from `from`; the answer (if given at once) and every effect.
    fn req(
        &mut self,
        from: &Address,
        req: &Request,
        blob: Option<Vec<u8>>,
    ) -> (Option<Vec<u8>>, Vec<Eff>) {
        self.id += 1;
        self.t += 1;
        let id = RequestId(self.id);
        let out = self.n.handle(
            Now::at(self.t),
            Input::Request {
                id,
                from: from.clone(),
                body: encode(req),
                blob,
                timeout_s: Some(10),
            },
        );
        let reply = out.iter().find_map(|e| match e {
            Effect::Reply { id: i, body, .. } if *i == id => Some(body.clone()),
            _ => None,
        });
        (reply, out)
    }
    fn ask(&mut self, from: &Address, req: &Request) -> (usize, ApiResult<Response>) {
        let (r, _) = self.req(from, req, None);
        let body = r.expect("answered at once");
        (body.len(), try_decode_response::<Response>(&body).unwrap())
    }
    fn respond(&mut self, from: &Address, ctx: Ctx, body: &[u8]) -> Vec<Eff> {
        self.t += 1;
        self.n.handle(
            Now::at(self.t),
            Input::Response {
                from: from.clone(),
                body: body.to_vec(),
                blob: None,
                ctx,
            },
        )
    }
}

fn sent_ctx(out: &[Eff]) -> Vec<(Address, Ctx)> {
    out.iter()
        .filter_map(|e| match e {
            Effect::Send {
                to,
                expect: Some(x),
                ..
            } => Some((to.clone(), x.ctx.clone())),
            _ => None,
        })
        .collect()
}

const APP: &str = "my-app:my-app:someone.os";

/// 50 topics with 1,000 subscriber nodes of long names each: the stats of all of them are
/// about 11 MB, over Hyperware's 10 MiB limit. Each page is bounded, and the pages hold
/// every topic once.
#[test]
fn stats_and_list_topics_come_in_bounded_pages() {
    let mut c = Core::new();
    let app = addr("alice.os", APP);
    let topics: Vec<String> = (0..50).map(|i| format!("topic-{i:02}")).collect();
    for t in &topics {
        let req = Request::SetTopic {
            topic: t.clone(),
            policy: Policy::Open,
        };
        assert!(matches!(c.ask(&app, &req).1, Ok(Response::TopicSet(_))));
    }
    let long = |i: usize| format!("{}-{i:04}.{}.os", "a".repeat(57), "b".repeat(60));
    for i in 0..1_000 {
        let from = notify_of(&long(i));
        for t in &topics {
            let req = Request::PeerSubscribe { topic: t.clone() };
            let (_, r) = c.ask(&from, &req);
            assert!(matches!(r, Ok(Response::PeerSubscribed { .. })), "{r:?}");
        }
    }
    let all: usize =
        c.n.stats()
            .topics
            .iter()
            .map(|t| serde_json::to_vec(t).unwrap().len())
            .sum();
    assert!(all > 10 << 20, "the whole stats are {all} bytes");
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let (size, r) = c.ask(
            &app,
            &Request::Stats {
                cursor,
                limit: None,
            },
        );
        let Ok(Response::Stats(NotifyStats {
            topics,
            next_cursor,
            ..
        })) = r
        else {
            panic!("{r:?}")
        };
        assert!(
            size <= MAX_PAGE_BYTES + (64 << 10),
            "a page of {size} bytes"
        );
        assert!(!topics.is_empty());
        seen.extend(topics.iter().map(|t| t.topic.clone()));
        pages += 1;
        match next_cursor {
            Some(n) => {
                assert_eq!(Some(&n), seen.last());
                cursor = Some(n);
            }
            None => break,
        }
    }
    assert_eq!(seen, topics);
    assert!(pages >= 3, "{pages} pages");
    // ListTopics pages by `limit` too.
    let (_, r) = c.ask(
        &app,
        &Request::ListTopics {
            cursor: Some("topic-10".into()),
            limit: Some(5),
        },
    );
    let Ok(Response::Topics {
        topics: page,
        next_cursor,
    }) = r
    else {
        panic!("{r:?}")
    };
    let names: Vec<&str> = page.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(
        names,
        ["topic-11", "topic-12", "topic-13", "topic-14", "topic-15"]
    );
    assert_eq!(next_cursor.as_deref(), Some("topic-15"));
    let (_, r) = c.ask(
        &app,
        &Request::ListTopics {
            cursor: Some("topic-49".into()),
            limit: None,
        },
    );
    assert!(
        matches!(r, Ok(Response::Topics { ref topics, next_cursor: None }) if topics.is_empty())
    );
    for bad in [0, 257] {
        let (_, r) = c.ask(
            &app,
            &Request::Stats {
                cursor: None,
                limit: Some(bad),
            },
        );
        let e = r.unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert!(e.message.contains("limit must be 1..=256"), "{e}");
    }
}

/// Subscribe alice's app to bob's topic `news` (the welcome and PeerSubscribe answered).
fn subscribed_to_bob(c: &mut Core) {
    let app = addr("alice.os", APP);
    let req = Request::Subscribe {
        publisher: "bob.os".parse().unwrap(),
        topic: "news".into(),
    };
    let (_, out) = c.req(&app, &req, None);
    let (to, hello) = sent_ctx(&out).pop().expect("a welcome");
    let out = c.respond(&to, hello, b"{}");
    let (to, peer) = sent_ctx(&out).pop().expect("a PeerSubscribe");
    assert_eq!(to, notify_of("bob.os"));
    c.respond(&to, peer, br#"{"Ok": {"PeerSubscribed": {"next_seq": 1}}}"#);
    let k = StreamKey::new(&"bob.os".parse().unwrap(), "news");
    assert!(c.n.streams().get(&k).is_some_and(|s| s.remote));
}

/// A batch of bob's `news` with note 1 (its signature is checked, so it waits for
/// `sign:sign:sys`); from a relay, it names the publisher.
fn batch(relayed: bool) -> (Request, Vec<u8>) {
    let note = p2p_common::api::notify::Notification {
        id: "bob.os/news/1".into(),
        publisher: "bob.os".parse().unwrap(),
        topic: "news".into(),
        seq: 1,
        at: 5,
        kind: PayloadKind::Blob,
        size: 2,
        signature: vec![3; 64],
    };
    (
        Request::Deliver {
            topic: "news".into(),
            lost: None,
            notes: vec![note],
            publisher: relayed.then(|| "bob.os".parse().unwrap()),
            roster: None,
            last: None,
        },
        b"hi".to_vec(),
    )
}

/// One node's batches waiting for their signature checks cannot take every slot: a batch
/// of another node is still checked.
#[test]
fn one_sender_cannot_take_every_verification_slot() {
    let mut c = Core::new();
    subscribed_to_bob(&mut c);
    let bob = notify_of("bob.os");
    let (req, blob) = batch(false);
    let mut overloaded = 0;
    for _ in 0..64 {
        let (r, _) = c.req(&bob, &req, Some(blob.clone()));
        if let Some(r) = r {
            let e = try_decode_response::<Response>(&r).unwrap().unwrap_err();
            assert_eq!(e.code, ErrorCode::Overloaded, "{e}");
            assert!(e.message.contains("from your node"), "{e}");
            overloaded += 1;
        }
    }
    assert_eq!(overloaded, 64 - 16, "bob's batches beyond its share");
    // Charlie relays the same stream: its batch is taken for checking (no answer yet).
    let (req, blob) = batch(true);
    let (r, out) = c.req(&notify_of("charlie.os"), &req, Some(blob));
    assert!(
        r.is_none(),
        "charlie's batch was answered {:?}",
        r.map(String::from_utf8)
    );
    assert!(sent_ctx(&out)
        .iter()
        .any(|(_, ctx)| matches!(ctx, Ctx::Verify { .. })));
}

/// A publisher's `lost` range must end right before its batch's first note, or, without
/// notes, at its stream's last number: `to: 10^6` would make every later real note a
/// duplicate for ever. Refusals log at powers of two of their count.
#[test]
fn a_publishers_lost_range_is_bounded_by_what_it_sends() {
    let mut c = Core::new();
    subscribed_to_bob(&mut c);
    let bob = notify_of("bob.os");
    let k = StreamKey::new(&"bob.os".parse().unwrap(), "news");
    let mut warns = 0;
    for (notes, last) in [
        (false, None),
        (false, Some(5)),
        (true, None),
        (true, Some(1_000_000)),
    ] {
        for _ in 0..25 {
            let (mut req, mut blob) = batch(false);
            if let Request::Deliver {
                lost,
                notes: n,
                last: l,
                ..
            } = &mut req
            {
                *lost = Some(SeqRange {
                    from: 1,
                    to: 1_000_000,
                });
                *l = last;
                if !notes {
                    n.clear();
                    blob.clear();
                }
            }
            let (r, out) = c.req(&bob, &req, Some(blob));
            let e = try_decode_response::<Response>(&r.expect("refused at once"))
                .unwrap()
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest);
            assert!(e.message.contains("must end right before"), "{e}");
            warns += out
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        Effect::Log {
                            level: p2p_common::Level::Warn,
                            ..
                        }
                    )
                })
                .count();
        }
    }
    assert!(
        (1..=8).contains(&warns),
        "{warns} warnings for 100 refusals"
    );
    assert_eq!(c.n.streams().get(&k).unwrap().last, 0);
    // An honest one is taken: lost 1..=3 before note 4, or up to `last` without notes.
    let (mut req, blob) = batch(false);
    if let Request::Deliver { lost, notes, .. } = &mut req {
        *lost = Some(SeqRange { from: 1, to: 3 });
        notes[0].seq = 4;
        notes[0].id = "bob.os/news/4".into();
    }
    let (r, out) = c.req(&bob, &req, Some(blob));
    assert!(r.is_none(), "checked first");
    assert!(sent_ctx(&out)
        .iter()
        .any(|(_, ctx)| matches!(ctx, Ctx::Verify { .. })));
    let (mut req, _) = batch(false);
    if let Request::Deliver {
        lost, notes, last, ..
    } = &mut req
    {
        *lost = Some(SeqRange { from: 1, to: 7 });
        notes.clear();
        *last = Some(7);
    }
    let (_, r) = c.ask(&bob, &req);
    assert_eq!(r, Ok(Response::Delivered { up_to: 7 }));
}
