use super::*;
use crate::api::{decode_response, BaseResponse, ErrorCode};
use crate::basic::BasicService;
use crate::service::{Batch, Effect, Input, WsKind};

fn addr(s: &str) -> Address {
    Address::parse(s).unwrap()
}
fn our() -> Address {
    addr("alice.os@presence:p2p-patterns:p2p-patterns.os")
}
fn app() -> Address {
    addr("alice.os@my-app:my-app:someone.os")
}
fn peer() -> Address {
    addr("bob.os@presence:p2p-patterns:p2p-patterns.os")
}
fn t(ms: Millis) -> Now {
    Now::at(ms)
}
fn request(body: &[u8], expects: bool) -> KernelEvent {
    KernelEvent::Request {
        source: app(),
        expects_response: expects.then_some(5),
        body: body.to_vec(),
        blob: None,
    }
}
fn responses(calls: &[KernelCall]) -> Vec<Vec<u8>> {
    calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::SendResponse { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect()
}
fn sends(calls: &[KernelCall]) -> Vec<(Address, Option<Vec<u8>>)> {
    calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::SendRequest {
                target, context, ..
            } => Some((target.clone(), context.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn ping_info_and_garbage_through_the_driver() {
    let mut d = Driver::new(our(), BasicService::new("presence", our()));
    let start = d.start(t(0), None, Records::new(), 1);
    assert!(start
        .iter()
        .any(|c| matches!(c, KernelCall::Print { message, .. } if message.contains("started"))));

    let r = responses(&d.step(t(1), request(br#"{"Ping":{}}"#, true)));
    assert_eq!(r.len(), 1);
    match decode_response::<BaseResponse>(&r[0]).unwrap() {
        BaseResponse::Pong(p) => assert_eq!(
            (p.node.as_str(), p.protocol_version),
            ("alice.os", crate::api::PROTOCOL_VERSION)
        ),
        other => panic!("{other:?}"),
    }
    for garbage in [
        &b"\xff\xfe"[..],
        b"",
        b"[1,2]",
        br#"{"Ping":{}"#,
        br#""{\"Ping\":{}}""#,
        br#"{"Launch":{}}"#,
    ] {
        let r = responses(&d.step(t(3), request(garbage, true)));
        assert_eq!(r.len(), 1, "one answer for {garbage:?}");
        let e = decode_response::<BaseResponse>(&r[0]).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest, "{garbage:?}");
    }
    let big = vec![b' '; crate::api::MAX_REQUEST_BYTES + 1];
    let e = decode_response::<BaseResponse>(&responses(&d.step(t(4), request(&big, true)))[0])
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::TooLarge);
    assert!(responses(&d.step(t(5), request(br#"{"Ping":{}}"#, false))).is_empty());
    assert_eq!(d.pending_replies(), 0);
}

type Script = Box<dyn FnMut(&Input<u32, u32>) -> Vec<Effect<u32, u32>>>;

/// A core that does what a test tells it to, and records what it saw.
struct Scripted {
    script: Script,
    seen: Vec<Input<u32, u32>>,
}
impl Service for Scripted {
    type Ctx = u32;
    type Timer = u32;
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn handle(&mut self, _now: Now, input: Input<u32, u32>) -> Vec<Effect<u32, u32>> {
        let out = (self.script)(&input);
        self.seen.push(input);
        out
    }
}

fn scripted(
    script: impl FnMut(&Input<u32, u32>) -> Vec<Effect<u32, u32>> + 'static,
) -> Driver<Scripted> {
    let mut d = Driver::new(
        our(),
        Scripted {
            script: Box::new(script),
            seen: vec![],
        },
    );
    d.start(t(0), Some(b"saved".to_vec()), Records::new(), 9);
    d
}

fn req_id(i: &Input<u32, u32>) -> Option<RequestId> {
    match i {
        Input::Request { id, .. } => Some(*id),
        _ => None,
    }
}

#[test]
fn start_hands_over_persisted_state_records_and_seed() {
    let mut d = Driver::new(
        our(),
        Scripted {
            script: Box::new(|_| vec![]),
            seen: vec![],
        },
    );
    let records = Records::from([(b"k".to_vec(), b"v".to_vec())]);
    d.start(t(0), Some(b"saved".to_vec()), records.clone(), 9);
    assert_eq!(
        d.core().seen[0],
        Input::Start {
            persisted: Some(b"saved".to_vec()),
            records,
            seed: 9
        }
    );
}

#[test]
fn timers_fire_once_and_can_be_cancelled_or_rearmed() {
    let mut d = scripted(|i| match i {
        Input::Request { body, .. } if body == b"arm" => vec![Effect::timer(2_500, 7)],
        Input::Request { body, .. } if body == b"soon" => vec![Effect::timer(100, 7)],
        Input::Request { body, .. } if body == b"cancel" => vec![Effect::CancelTimer(7)],
        _ => vec![],
    });
    let calls = d.step(t(1), request(b"arm", false));
    let (target, first) = sends(&calls).remove(0);
    assert_eq!(target.to_string(), "alice.os@timer:distro:sys");
    assert!(
        matches!(&calls[0], KernelCall::SendRequest { body, expects_response: Some(3), .. } if body == br#"{"SetTimer":2500}"#)
    );
    let answer = |ctx: &Option<Vec<u8>>| KernelEvent::Response {
        source: target.clone(),
        body: vec![],
        blob: None,
        context: ctx.clone(),
    };
    // Re-armed to a later deadline: no second kernel timer; the first one, firing early,
    // is re-sent for the rest and does not reach the core.
    assert!(sends(&d.step(t(2), request(b"arm", false))).is_empty());
    assert_eq!(d.armed_timers(), 1);
    let n = d.core().seen.len();
    let calls = d.step(t(2_501), answer(&first));
    assert_eq!(d.core().seen.len(), n, "not due yet");
    let (_, rest) = sends(&calls).remove(0);
    assert!(
        matches!(&calls[0], KernelCall::SendRequest { body, .. } if body == br#"{"SetTimer":1}"#)
    );
    d.step(t(2_502), answer(&rest));
    assert_eq!(d.core().seen.last(), Some(&Input::Timer(7)));
    assert_eq!(d.armed_timers(), 0);
    // Re-armed to an earlier deadline: a new kernel timer; the old one's answer is ignored.
    let late = sends(&d.step(t(3_000), request(b"arm", false))).remove(0).1;
    let soon = sends(&d.step(t(3_001), request(b"soon", false)))
        .remove(0)
        .1;
    d.step(t(3_101), answer(&soon));
    assert_eq!(d.core().seen.last(), Some(&Input::Timer(7)));
    let n = d.core().seen.len();
    d.step(t(5_500), answer(&late));
    assert_eq!(d.core().seen.len(), n, "the replaced timer fires nothing");
    // Cancelled: its answer is ignored.
    let third = sends(&d.step(t(6_000), request(b"arm", false))).remove(0).1;
    d.step(t(6_001), request(b"cancel", false));
    assert_eq!(d.armed_timers(), 0);
    let n = d.core().seen.len();
    d.step(t(8_600), answer(&third));
    assert_eq!(d.core().seen.len(), n);
    // A timer whose request failed still fires.
    let fourth = sends(&d.step(t(9_000), request(b"arm", false))).remove(0).1;
    d.step(
        t(12_000),
        KernelEvent::SendError {
            kind: SendErrorKind::Timeout,
            target: target.clone(),
            context: fourth,
        },
    );
    assert_eq!(d.core().seen.last(), Some(&Input::Timer(7)));
    // However often a timer is re-armed, one kernel timer is out for it.
    let mut out = 0;
    for k in 0..1_000 {
        out += sends(&d.step(t(20_000 + k), request(b"arm", false))).len();
    }
    assert_eq!(out, 1);
}

#[test]
fn a_cancelled_deadline_timer_no_longer_holds_its_request() {
    // The core asks a peer under a deadline; when the peer answers it cancels the deadline
    // and (a bug) forgets to answer: the driver answers at once, not a minute later.
    let mut d = scripted(move |i| match i {
        Input::Request { .. } => vec![
            Effect::request(peer(), b"{}".to_vec(), 30, 1),
            Effect::timer(60_000, 1),
        ],
        Input::Response { .. } => vec![Effect::CancelTimer(1)],
        _ => vec![],
    });
    let calls = d.step(t(1), request(b"wait", true));
    assert!(responses(&calls).is_empty());
    let ask = sends(&calls)
        .into_iter()
        .find(|(a, _)| *a == peer())
        .unwrap()
        .1;
    let calls = d.step(
        t(50),
        KernelEvent::Response {
            source: peer(),
            body: vec![],
            blob: None,
            context: ask,
        },
    );
    let r = responses(&calls);
    assert_eq!(r.len(), 1, "answered while its prompt is current");
    assert_eq!(
        decode_response::<()>(&r[0]).unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(d.pending_replies(), 0);
}

#[test]
fn a_read_sees_earlier_lazy_writes() {
    let mut d = scripted(|i| match i {
        Input::Request { body, .. } if body == b"write" => {
            vec![Effect::Store(
                Batch::lazy().put(b"k".to_vec(), b"v".to_vec()),
            )]
        }
        Input::Request { .. } => vec![Effect::Read {
            key: b"k".to_vec(),
            ctx: 1,
        }],
        _ => vec![],
    });
    d.step(t(1), request(b"write", false));
    let calls = d.step(t(2), request(b"read", false));
    let kinds: Vec<&str> = calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::Store { .. } => Some("store"),
            KernelCall::Read { .. } => Some("read"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec!["store", "read"]);
}

#[test]
fn typed_contexts_come_back_with_responses_and_errors() {
    let mut d = scripted(|i| match i {
        Input::Request { .. } => vec![
            Effect::request(peer(), b"{}".to_vec(), 7, 41),
            Effect::notify(peer(), b"{}".to_vec()),
        ],
        _ => vec![],
    });
    let calls = d.step(t(1), request(b"go", false));
    let s = sends(&calls);
    assert_eq!(s.len(), 2);
    assert_eq!(s[1].1, None, "fire-and-forget carries no context");
    assert_eq!(s[0].1.as_ref().map(Vec::len), Some(9), "only an id travels");
    d.step(
        t(2),
        KernelEvent::Response {
            source: peer(),
            body: b"ok".to_vec(),
            blob: Some(b"bytes".to_vec()),
            context: s[0].1.clone(),
        },
    );
    assert_eq!(
        d.core().seen.last(),
        Some(&Input::Response {
            from: peer(),
            body: b"ok".to_vec(),
            blob: Some(b"bytes".to_vec()),
            ctx: 41
        })
    );
    // Its slot is gone: a second answer with the same context is not ours.
    let n = d.core().seen.len();
    d.step(
        t(3),
        KernelEvent::SendError {
            kind: SendErrorKind::Offline,
            target: peer(),
            context: s[0].1.clone(),
        },
    );
    d.step(
        t(4),
        KernelEvent::Response {
            source: peer(),
            body: vec![],
            blob: None,
            context: Some(vec![1, 2, 3]),
        },
    );
    assert_eq!(d.core().seen.len(), n);
}

#[test]
fn one_reply_per_request_and_always_an_answer() {
    let mut d = scripted(|i| match req_id(i) {
        Some(id) => vec![
            Effect::reply(id, b"1".to_vec()),
            Effect::reply(id, b"2".to_vec()),
        ],
        None => vec![],
    });
    assert_eq!(
        responses(&d.step(t(1), request(b"{}", true))),
        vec![b"1".to_vec()]
    );
    assert_eq!(d.dropped_replies(), 1);
    let mut silent = scripted(|_| vec![]);
    let r = responses(&silent.step(t(1), request(b"{}", true)));
    assert_eq!(
        decode_response::<()>(&r[0]).unwrap_err().code,
        ErrorCode::Internal
    );
    assert!(responses(&silent.step(t(2), request(b"{}", false))).is_empty());
    assert_eq!(silent.stats().auto_answered, 1);
}

/// The core relays a request to a peer and answers its caller when the peer's answer comes.
fn relay() -> Driver<Scripted> {
    let mut held: Vec<RequestId> = Vec::new();
    scripted(move |i| match i {
        Input::Request { id, body, .. } if body == b"relay" => {
            held.push(*id);
            vec![Effect::request(peer(), b"{}".to_vec(), 5, id.0 as u32)]
        }
        Input::Request { body, .. } if body == b"steal" => {
            // Try to answer a held request while another one is prompting.
            held.iter()
                .map(|id| Effect::reply(*id, b"stolen".to_vec()))
                .collect()
        }
        Input::Response { ctx, body, .. } if body == b"drop" => {
            let _ = ctx;
            vec![]
        }
        Input::Response { ctx, body, .. } => {
            vec![Effect::reply(RequestId(u64::from(*ctx)), body.clone())]
        }
        Input::SendFailed { ctx, kind, .. } => vec![Effect::reply(
            RequestId(u64::from(*ctx)),
            format!("failed {kind:?}").into_bytes(),
        )],
        _ => vec![],
    })
}

#[test]
fn replying_later_reaches_the_original_caller_after_a_round_trip() {
    let mut d = relay();
    let calls = d.step(t(1), request(b"relay", true));
    assert!(responses(&calls).is_empty(), "nothing answered yet");
    assert_eq!(d.pending_replies(), 1);
    let ctx = sends(&calls)[0].1.clone();
    let calls = d.step(
        t(50),
        KernelEvent::Response {
            source: peer(),
            body: b"from bob".to_vec(),
            blob: None,
            context: ctx,
        },
    );
    assert_eq!(responses(&calls), vec![b"from bob".to_vec()]);
    assert_eq!(d.pending_replies(), 0);
    assert_eq!(d.dropped_replies(), 0);
}

#[test]
fn a_send_error_is_answered_and_a_dropped_reply_gets_an_error() {
    let mut d = relay();
    let ctx = sends(&d.step(t(1), request(b"relay", true)))[0].1.clone();
    let calls = d.step(
        t(5_000),
        KernelEvent::SendError {
            kind: SendErrorKind::Offline,
            target: peer(),
            context: ctx,
        },
    );
    assert_eq!(responses(&calls), vec![b"failed Offline".to_vec()]);

    // The core drops it: the driver answers, at the only moment the kernel still routes it.
    let ctx = sends(&d.step(t(6_000), request(b"relay", true)))[0]
        .1
        .clone();
    let calls = d.step(
        t(6_050),
        KernelEvent::Response {
            source: peer(),
            body: b"drop".to_vec(),
            blob: None,
            context: ctx,
        },
    );
    let r = responses(&calls);
    assert_eq!(r.len(), 1);
    assert_eq!(
        decode_response::<()>(&r[0]).unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(d.pending_replies(), 0);
}

#[test]
fn a_held_request_cannot_be_answered_while_another_prompts_and_never_twice() {
    let mut d = relay();
    let ctx = sends(&d.step(t(1), request(b"relay", true)))[0].1.clone();
    // While "steal" prompts, the reply to the held request would reach steal's caller.
    let calls = d.step(t(2), request(b"steal", true));
    let r = responses(&calls);
    assert_eq!(
        r.len(),
        1,
        "steal's own caller gets the automatic error only"
    );
    assert_eq!(
        decode_response::<()>(&r[0]).unwrap_err().code,
        ErrorCode::Internal
    );
    assert_eq!(d.dropped_replies(), 1);
    // The held request is still answered when its own response comes.
    let calls = d.step(
        t(3),
        KernelEvent::Response {
            source: peer(),
            body: b"late".to_vec(),
            blob: None,
            context: ctx,
        },
    );
    assert_eq!(responses(&calls), vec![b"late".to_vec()]);
    // A fire-and-forget request does not change the kernel's prompt (the last one that
    // expected a response stays): a reply there to the answered request is refused.
    let calls = d.step(t(4), request(b"steal", false));
    assert!(responses(&calls).is_empty());
    assert_eq!(d.dropped_replies(), 2);
}

#[test]
fn timers_armed_while_a_request_prompts_can_answer_it_at_the_deadline() {
    let mut d = scripted(|i| match i {
        Input::Request { id, .. } => vec![Effect::timer(1_000, id.0 as u32)],
        Input::Timer(id) => vec![Effect::reply(
            RequestId(u64::from(*id)),
            b"deadline".to_vec(),
        )],
        _ => vec![],
    });
    let calls = d.step(t(1), request(b"x", true));
    assert!(responses(&calls).is_empty());
    let (timer, ctx) = sends(&calls).remove(0);
    let calls = d.step(
        t(1_001),
        KernelEvent::Response {
            source: timer,
            body: vec![],
            blob: None,
            context: ctx,
        },
    );
    assert_eq!(responses(&calls), vec![b"deadline".to_vec()]);
}

#[test]
fn requests_left_pending_past_their_callers_timeout_are_forgotten() {
    let mut d = scripted(|i| match i {
        Input::Request { .. } => vec![Effect::request(peer(), vec![], 600, 1)],
        _ => vec![],
    });
    d.step(t(0), request(b"x", true));
    assert_eq!(d.pending_replies(), 1);
    d.step(t(5_000 + PENDING_GRACE_MS + 1), request(b"y", false));
    assert_eq!(d.pending_replies(), 0);
    assert_eq!(d.stats().expired, 1);
}

#[test]
fn forced_batches_go_out_in_order_and_lazy_ones_are_merged_or_flushed() {
    let mut d = scripted(|i| match i {
        Input::Request { body, .. } if body == b"lazy" => {
            vec![Effect::Store(
                Batch::lazy().put(b"a".to_vec(), b"1".to_vec()),
            )]
        }
        Input::Request { id, body, .. } if body == b"forced" => vec![
            Effect::Store(
                Batch::forced()
                    .put(b"b".to_vec(), b"2".to_vec())
                    .delete(b"c".to_vec()),
            ),
            Effect::notify(peer(), vec![]),
            Effect::reply(*id, b"done".to_vec()),
        ],
        _ => vec![],
    });
    let calls = d.step(t(1), request(b"lazy", false));
    // Held, with a flush timer.
    assert!(!calls.iter().any(|c| matches!(c, KernelCall::Store { .. })));
    assert_eq!(d.unwritten_ops(), 1);
    let flush = sends(&calls).remove(0);
    let calls = d.step(t(2), request(b"forced", true));
    let kinds: Vec<&str> = calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::Store { .. } => Some("store"),
            KernelCall::SendRequest { .. } => Some("send"),
            KernelCall::SendResponse { .. } => Some("reply"),
            _ => None,
        })
        .collect();
    assert_eq!(kinds, vec!["store", "send", "reply"]);
    let KernelCall::Store { ops, forced } = &calls[0] else {
        panic!()
    };
    assert!(forced);
    assert_eq!(
        ops,
        &vec![
            (b"a".to_vec(), Some(b"1".to_vec())),
            (b"b".to_vec(), Some(b"2".to_vec())),
            (b"c".to_vec(), None)
        ],
        "the earlier lazy write goes first, in the same transaction"
    );
    // A lazy write alone is flushed by the driver's timer.
    d.step(t(3), request(b"lazy", false));
    let calls = d.step(
        t(1_010),
        KernelEvent::Response {
            source: flush.0,
            body: vec![],
            blob: None,
            context: flush.1,
        },
    );
    assert!(calls
        .iter()
        .any(|c| matches!(c, KernelCall::Store { forced: false, ops } if ops.len() == 1)));
    let s = d.stats();
    assert_eq!(
        (s.forced_batches, s.unforced_batches, s.store_calls),
        (1, 2, 2)
    );
}

#[test]
fn http_requests_and_websocket_pushes_go_through_the_mapping() {
    let mut d = scripted(|i| match i {
        Input::Http { id, request } => vec![
            Effect::HttpReply {
                id: *id,
                status: 200,
                headers: [("content-type".to_string(), "application/json".to_string())].into(),
                body: format!("{{\"path\":\"{}\"}}", request.path).into_bytes(),
            },
            Effect::WsPush {
                channel: 3,
                kind: WsKind::Text,
                data: b"pushed".to_vec(),
            },
        ],
        _ => vec![],
    });
    let process = our().process.to_string();
    let body = crate::http::request_body(
        "GET",
        "localhost:8080",
        &process,
        "/api/nodes",
        "/api/*",
        &Default::default(),
        &Default::default(),
    );
    let server = crate::http::http_server_address(&our().node);
    let calls = d.step(
        t(1),
        KernelEvent::Request {
            source: server.clone(),
            expects_response: Some(30),
            body: body.clone(),
            blob: None,
        },
    );
    let KernelCall::SendResponse { body: head, blob } = &calls[0] else {
        panic!("{calls:?}")
    };
    let head: crate::http::HttpResponse = serde_json::from_slice(head).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(blob.as_deref(), Some(&br#"{"path":"/api/nodes"}"#[..]));
    let KernelCall::SendRequest {
        target, body, blob, ..
    } = &calls[1]
    else {
        panic!()
    };
    assert_eq!(target, &server);
    assert_eq!(body, &crate::http::ws_push_body(3, WsKind::Text));
    assert_eq!(blob.as_deref(), Some(&b"pushed"[..]));
    // The same body from a remote node's "http-server" is only a claim: a plain request.
    let mut fake = server.clone();
    fake.node = crate::ids::NodeId::parse("mallory.os").unwrap();
    d.step(
        t(2),
        KernelEvent::Request {
            source: fake,
            expects_response: Some(30),
            body: body.clone(),
            blob: None,
        },
    );
    assert!(matches!(d.core().seen.last(), Some(Input::Request { .. })));
}

#[test]
fn a_fire_and_forget_request_cannot_answer_a_held_request() {
    let mut d = relay();
    sends(&d.step(t(1), request(b"relay", true)));
    // The held request is still pending; a fire-and-forget "steal" must not answer it
    // (the kernel's prompt then may be someone else's forwarded request).
    let calls = d.step(t(2), request(b"steal", false));
    assert!(responses(&calls).is_empty());
    assert_eq!(d.dropped_replies(), 1);
    assert_eq!(d.pending_replies(), 1);
}

/// http-server's message about WebSocket `channel` (open or close).
fn ws_event(open: bool, channel: u32) -> KernelEvent {
    let m = if open {
        crate::http::HttpServerRequest::WebSocketOpen {
            path: "/ws".into(),
            channel_id: channel,
            source_socket_addr: None,
            forwarded_for: None,
        }
    } else {
        crate::http::HttpServerRequest::WebSocketClose(channel)
    };
    KernelEvent::Request {
        source: crate::http::http_server_address(&our().node),
        expects_response: None,
        body: serde_json::to_vec(&m).unwrap(),
        blob: None,
    }
}

/// `POST /api` with `body`, as http-server sends it.
fn api_post(body: &[u8]) -> KernelEvent {
    let process = our().process.to_string();
    KernelEvent::Request {
        source: crate::http::http_server_address(&our().node),
        expects_response: Some(30),
        body: crate::http::request_body(
            "POST",
            "localhost:8080",
            &process,
            "/api",
            "/api",
            &Default::default(),
            &BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
        ),
        blob: Some(body.to_vec()),
    }
}

#[test]
fn the_web_api_answers_http_with_local_replies_and_pushes_events_to_websockets() {
    use crate::web;
    let me = our().node.clone();
    let me2 = me.clone();
    // A core that answers "Subscribe" from the UI caller only after a welcome it awaits
    // came back (as presence does), and anything else with NotFound.
    let mut held = None;
    let mut d = scripted(move |i| match i {
        Input::Http { id, request } => match web::route(*id, request.clone(), &me2) {
            Ok(Input::Request { id, from, body, .. }) if body == b"\"Subscribe\"" => {
                assert!(web::is_caller(&from, &me2));
                held = Some(id);
                vec![Effect::request(from, b"{\"Welcome\":{}}".to_vec(), 2, 7)]
            }
            Ok(Input::Request { id, .. }) => vec![Effect::reply(
                id,
                br#"{"Err":{"code":"NotFound","message":"no such thing"}}"#.to_vec(),
            )],
            Ok(_) => unreachable!(),
            Err(e) => vec![e],
        },
        Input::Response { ctx: 7, body, .. } => {
            assert_eq!(body, b"{\"Ok\":null}");
            vec![Effect::reply(
                held.take().unwrap(),
                br#"{"Ok":"Subscribed"}"#.to_vec(),
            )]
        }
        _ => vec![],
    });
    for c in 1..=web::MAX_WS_CLIENTS as u32 {
        assert!(d.step(t(1), ws_event(true, c)).is_empty());
    }
    assert_eq!(d.ws_clients(), web::MAX_WS_CLIENTS);
    // One client too many is closed at once and never reaches the core.
    let calls = d.step(t(1), ws_event(true, 99));
    assert!(calls
        .iter()
        .any(|c| matches!(c, KernelCall::SendRequest { body, .. }
        if body == &crate::http::ws_close_body(99))));
    assert_eq!(d.ws_clients(), web::MAX_WS_CLIENTS);
    assert!(!d
        .core()
        .seen
        .iter()
        .any(|i| matches!(i, Input::WsOpen { channel: 99, .. })));
    d.step(t(1), ws_event(false, 1));
    assert_eq!(d.ws_clients(), web::MAX_WS_CLIENTS - 1);

    let calls = d.step(t(2), api_post(b"\"Subscribe\""));
    // The welcome went to every open client as a frame, was answered in the same step, and
    // the held request was answered as HTTP: 200, JSON.
    let frames: Vec<&[u8]> = calls
        .iter()
        .filter_map(|c| match c {
            KernelCall::SendRequest { body, blob, .. }
                if body == &crate::http::ws_push_body(2, WsKind::Text) =>
            {
                blob.as_deref()
            }
            _ => None,
        })
        .collect();
    assert_eq!(frames.len(), 1, "{calls:?}");
    let v: serde_json::Value = serde_json::from_slice(frames[0]).unwrap();
    assert_eq!(v["process"], "scripted");
    assert_eq!(v["event"], serde_json::json!({"Welcome": {}}));
    let pushes = calls
        .iter()
        .filter(|c| matches!(c, KernelCall::SendRequest { blob: Some(b), .. } if b == frames[0]))
        .count();
    assert_eq!(pushes, web::MAX_WS_CLIENTS - 1);
    let KernelCall::SendResponse { body, blob } = calls.last().unwrap() else {
        panic!("{calls:?}")
    };
    let head: crate::http::HttpResponse = serde_json::from_slice(body).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.headers["Content-Type"], "application/json");
    assert_eq!(blob.as_deref(), Some(&br#"{"Ok":"Subscribed"}"#[..]));
    assert_eq!((d.pending_replies(), d.dropped_replies()), (0, 0));

    // An error answer gets its status; a bad path never reaches the core's API.
    let calls = d.step(t(3), api_post(b"\"Other\""));
    let KernelCall::SendResponse { body, .. } = calls.last().unwrap() else {
        panic!("{calls:?}")
    };
    let head: crate::http::HttpResponse = serde_json::from_slice(body).unwrap();
    assert_eq!(head.status, 404);
    // Nothing is sent to the UI caller through the kernel.
    assert!(!calls
        .iter()
        .any(|c| matches!(c, KernelCall::SendRequest { target, .. }
        if web::is_caller(target, &me))));
}

/// A core that serves the local API over HTTP (and does nothing else).
struct WebCore;
impl Service for WebCore {
    type Ctx = u32;
    type Timer = u32;
    const WEB_API: bool = true;
    fn name(&self) -> &'static str {
        "webcore"
    }
    fn handle(&mut self, _now: Now, _input: Input<u32, u32>) -> Vec<Effect<u32, u32>> {
        vec![]
    }
}

#[test]
fn the_host_binds_api_and_ws_for_a_web_core_and_nothing_for_others() {
    let mut d = Driver::new(our(), WebCore);
    assert!(d.start(t(0), None, Records::new(), 1).is_empty());
    let binds: Vec<Vec<u8>> = d
        .web_bindings(t(0))
        .into_iter()
        .map(|c| match c {
            KernelCall::SendRequest {
                target,
                body,
                expects_response: Some(_),
                ..
            } => {
                assert!(
                    crate::http::is_http_server(&target, &our().node),
                    "{target}"
                );
                body
            }
            other => panic!("not a binding: {other:?}"),
        })
        .collect();
    assert_eq!(
        binds,
        vec![
            crate::http::bind_body(crate::web::API_PATH, true),
            crate::http::ws_bind_body(crate::web::WS_PATH, true),
        ]
    );
    // A core that does not serve it gets no bindings.
    let mut s = scripted(|_| vec![]);
    assert!(s.web_bindings(t(0)).is_empty());
}
