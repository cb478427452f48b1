//! The one HTTP and WebSocket API of every service (`p2p_common::web`), through the real
//! cores and the driver, as a node's http-server would use it.

use p2p_common::http::{HttpResponse, HttpServerRequest};
use p2p_common::web::{self, MAX_HTTP_BODY, MAX_WS_CLIENTS};
use p2p_common::ProcessId;
use p2p_sim::net::NetConfig;
use p2p_sim::sim::{factory, AppOutcome, Sim, SimConfig};

const SERVICES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

fn cluster(nodes: usize) -> Sim {
    let mut cfg = SimConfig::new(15, nodes);
    cfg.net = NetConfig::realistic();
    Sim::new(cfg)
        .with_process("presence", factory(presence::core::new))
        .with_process("sync", factory(sync::core::new))
        .with_process("notify", factory(notify::core::new))
        .with_process("txcoord", factory(txcoord::core::new))
}

/// POST `body` to `path` of `service` on node `i`: (status, body as text).
fn post(sim: &mut Sim, i: usize, service: &str, path: &str, body: &[u8]) -> (u16, String) {
    call(sim, i, service, "POST", path, body)
}

fn call(
    sim: &mut Sim,
    i: usize,
    service: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> (u16, String) {
    let h = sim.http(i, service, method, path, body.to_vec());
    sim.run_for(3_000).unwrap();
    let Some(AppOutcome::Response(head)) = sim.outcome(h) else {
        panic!("{service} {path}: no answer: {:?}", sim.outcome(h))
    };
    let head: HttpResponse = serde_json::from_slice(head).unwrap();
    let text = String::from_utf8_lossy(sim.outcome_blob(h).unwrap_or_default()).into_owned();
    (head.status, text)
}

fn ws(sim: &mut Sim, i: usize, service: &str, channel: u32) {
    sim.websocket(
        i,
        service,
        &HttpServerRequest::WebSocketOpen {
            path: "/ws".into(),
            channel_id: channel,
            source_socket_addr: None,
            forwarded_for: None,
        },
        None,
    );
}

/// WebSocket frames pushed on node `i` by `service`, as JSON.
fn frames(sim: &Sim, i: usize, service: &str) -> Vec<serde_json::Value> {
    let server = p2p_common::http::http_server_address(sim.node_id(i));
    sim.system_messages
        .iter()
        .filter(|(from, to, body, _)| {
            *to == server
                && from.process.process == service
                && body.starts_with(br#"{"WebSocketPush""#)
        })
        .filter_map(|(_, _, _, blob)| serde_json::from_slice(blob.as_deref()?).ok())
        .collect()
}

#[test]
fn every_service_answers_its_local_api_over_http() {
    let mut sim = cluster(1);
    for s in SERVICES {
        let (status, body) = post(&mut sim, 0, s, "/api", b"\"Info\"");
        assert_eq!(status, 200, "{s}: {body}");
        assert!(body.contains(&format!("\"name\":\"{s}\"")), "{s}: {body}");
    }
    let (status, body) = post(&mut sim, 0, "presence", "/api", b"\"Stats\"");
    assert_eq!(status, 200, "{body}");
    let (status, body) = post(
        &mut sim,
        0,
        "sync",
        "/api",
        br#"{"Create":{"name":"notes","members":[]}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("alice.os/notes"), "{body}");
    let (status, body) = post(
        &mut sim,
        0,
        "sync",
        "/api",
        br#"{"Read":{"doc":"alice.os/none"}}"#,
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn hostile_http_requests_get_clear_errors_from_every_service() {
    let mut sim = cluster(1);
    for s in SERVICES {
        let (status, body) = post(&mut sim, 0, s, "/api", b"{not json");
        assert_eq!(status, 400, "{s}: {body}");
        assert!(
            body.contains("BadRequest") && body.contains("not valid JSON"),
            "{s}: {body}"
        );
        let (status, body) = post(&mut sim, 0, s, "/api", br#"{"Dance":{}}"#);
        assert_eq!(status, 400, "{s}: {body}");
        assert!(body.contains("unknown variant `Dance`"), "{s}: {body}");
        let (status, body) = post(&mut sim, 0, s, "/api", br#"{"Ping":{"x":1}}"#);
        assert_eq!(status, 400, "{s}: {body}");
        assert!(body.contains("unknown field `x`"), "{s}: {body}");
        let big = vec![b' '; MAX_HTTP_BODY + 1];
        let (status, body) = post(&mut sim, 0, s, "/api", &big);
        assert_eq!(status, 413, "{s}: {body}");
        let (status, body) = call(&mut sim, 0, s, "GET", "/api", b"");
        assert_eq!(status, 400, "{s}: {body}");
        let (status, body) = post(&mut sim, 0, s, "/api/other", b"\"Ping\"");
        assert_eq!(status, 404, "{s}: {body}");
    }
    // A body a cross-site page could send without a CORS preflight (text/plain, a form,
    // no type) is refused before the core sees it: nothing is created.
    for s in SERVICES {
        for ct in [
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            None,
        ] {
            let headers: std::collections::BTreeMap<String, String> = ct
                .map(|c| ("content-type".to_string(), c.to_string()))
                .into_iter()
                .collect();
            let body = br#"{"SetTopic":{"topic":"csrf","policy":"Open"}}"#.to_vec();
            let h = sim.http_with_headers(0, s, "POST", "/api", &headers, body);
            sim.run_for(3_000).unwrap();
            let Some(AppOutcome::Response(head)) = sim.outcome(h) else {
                panic!("{s} {ct:?}: no answer")
            };
            let head: HttpResponse = serde_json::from_slice(head).unwrap();
            let text =
                String::from_utf8_lossy(sim.outcome_blob(h).unwrap_or_default()).into_owned();
            assert_eq!(head.status, 400, "{s} {ct:?}: {text}");
            assert!(
                text.contains("application/json") && text.contains("BadRequest"),
                "{s} {ct:?}: {text}"
            );
        }
    }
    let (_, topics) = post(&mut sim, 0, "notify", "/api", b"\"ListTopics\"");
    assert!(!topics.contains("csrf"), "{topics}");
    // Protocol messages are not the owner's to send.
    let (status, body) = post(
        &mut sim,
        0,
        "presence",
        "/api",
        br#"{"Probe":{"from":"bob.os","incarnation":1,"seq":1}}"#,
    );
    assert!(status >= 400, "{status} {body}");
}

#[test]
fn a_remote_node_claiming_to_be_the_ui_is_still_remote() {
    let mut sim = cluster(2);
    let alice = sim.addr(0, "presence");
    let h = sim.request_from(
        1,
        ProcessId::ours(web::CALLER_PROCESS),
        &alice,
        br#"{"Join":{"bootstrap":["bob.os"]}}"#.to_vec(),
        10,
    );
    sim.run_for(3_000).unwrap();
    let Some(AppOutcome::Response(body)) = sim.outcome(h) else {
        panic!()
    };
    assert!(
        String::from_utf8_lossy(body).contains("Forbidden"),
        "{}",
        String::from_utf8_lossy(body)
    );
}

#[test]
fn the_page_subscribes_over_http_and_gets_events_on_its_websocket() {
    let mut sim = cluster(2);
    ws(&mut sim, 0, "presence", 1);
    sim.run_for(10).unwrap();
    let (status, body) = post(&mut sim, 0, "presence", "/api", b"\"Subscribe\"");
    assert_eq!((status, body.as_str()), (200, r#"{"Ok":"Subscribed"}"#));
    let (status, body) = post(
        &mut sim,
        1,
        "presence",
        "/api",
        br#"{"Join":{"bootstrap":["alice.os"]}}"#,
    );
    assert_eq!(status, 200, "{body}");
    sim.run_for(30_000).unwrap();
    let f = frames(&sim, 0, "presence");
    assert!(
        f.iter()
            .any(|v| v["event"]["Welcome"]["node"] == "alice.os"),
        "{f:?}"
    );
    assert!(
        f.iter().any(|v| v["process"] == "presence"
            && v["event"]["PresenceEvent"]["kind"] == "NodeJoined"
            && v["event"]["PresenceEvent"]["node"] == "bob.os"),
        "{f:?}"
    );
}

#[test]
fn too_many_websocket_clients_are_closed() {
    let mut sim = cluster(1);
    for c in 0..=MAX_WS_CLIENTS as u32 {
        ws(&mut sim, 0, "notify", c);
    }
    sim.run_for(10).unwrap();
    let closes = sim
        .system_messages
        .iter()
        .filter(|(_, _, body, _)| body.starts_with(br#"{"WebSocketClose""#))
        .count();
    assert_eq!(closes, 1);
    // The refused one is told why first (the page shows it), on its own channel only.
    let refused = format!(r#"{{"WebSocketPush":{{"channel_id":{MAX_WS_CLIENTS},"#);
    let told: Vec<serde_json::Value> = sim
        .system_messages
        .iter()
        .filter(|(_, _, body, _)| body.starts_with(br#"{"WebSocketPush""#))
        .map(|(_, _, body, blob)| {
            assert!(
                body.starts_with(refused.as_bytes()),
                "{}",
                String::from_utf8_lossy(body)
            );
            serde_json::from_slice(blob.as_deref().unwrap()).unwrap()
        })
        .collect();
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["process"], "notify");
    let e = told[0]["error"].as_str().unwrap();
    assert!(e.contains(&format!("at most {MAX_WS_CLIENTS}")), "{e}");
}
