//! The one mapping between Hyperware's `http-server:distro:sys` and the service contract.
//!
//! On a node, http-server sends a process a Request whose JSON body is an
//! `HttpServerRequest` (process_lib's type) and whose blob is the HTTP body or WebSocket
//! frame; it expects an `HttpResponse` JSON body with the response body in the blob. Binding
//! paths and pushing WebSocket frames are requests *to* http-server (`HttpServerAction`).
//! These types mirror process_lib 3.0.0's field by field (process_lib is not compiled
//! natively, so the simulator and the playground use this same module).

use crate::ids::{Address, NodeId, ProcessId};
use crate::service::{HttpRequest, WsKind};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// `our@http-server:distro:sys`.
pub fn http_server_address(node: &NodeId) -> Address {
    Address::new(
        node.clone(),
        ProcessId {
            process: "http-server".into(),
            package: "distro".into(),
            publisher: "sys".into(),
        },
    )
}

/// Whether `a` is our node's http-server (only it may send us HTTP traffic).
pub fn is_http_server(a: &Address, our: &NodeId) -> bool {
    a.node == *our
        && a.process.process == "http-server"
        && a.process.package == "distro"
        && a.process.publisher == "sys"
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IncomingHttpRequest {
    pub source_socket_addr: Option<String>,
    pub method: String,
    pub url: String,
    pub bound_path: String,
    pub headers: HashMap<String, String>,
    pub url_params: HashMap<String, String>,
    pub query_params: HashMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum WsMessageType {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

/// What http-server sends a process.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum HttpServerRequest {
    Http(IncomingHttpRequest),
    WebSocketOpen {
        path: String,
        channel_id: u32,
        #[serde(default)]
        source_socket_addr: Option<String>,
        #[serde(default)]
        forwarded_for: Option<String>,
    },
    WebSocketPush {
        channel_id: u32,
        message_type: WsMessageType,
    },
    WebSocketClose(u32),
}

/// What a process asks of http-server (the variants we use).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum HttpServerAction {
    Bind {
        path: String,
        authenticated: bool,
        local_only: bool,
        cache: bool,
    },
    WebSocketBind {
        path: String,
        authenticated: bool,
        extension: bool,
    },
    WebSocketPush {
        channel_id: u32,
        message_type: WsMessageType,
    },
    WebSocketClose(u32),
}

/// The answer to an HTTP request; the body travels in the blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: HashMap<String, String>,
}

/// An http-server message, in contract terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Http(HttpRequest),
    WsOpen {
        channel: u32,
        path: String,
    },
    WsMessage {
        channel: u32,
        kind: WsKind,
        data: Vec<u8>,
    },
    WsClose {
        channel: u32,
    },
    /// A frame we do not hand to cores (ping, pong, close frames).
    Ignored,
}

/// The path of `url` below the process prefix `/<process-id>`, without the query string.
pub fn path_below_process(url: &str, process: &str) -> String {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = match after_scheme.find('/') {
        Some(i) if url.contains("://") => &after_scheme[i..],
        Some(_) | None if url.contains("://") => "/",
        _ => after_scheme,
    };
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let prefix = format!("/{process}");
    match path.strip_prefix(&prefix) {
        Some("") => "/".to_string(),
        Some(rest) if rest.starts_with('/') => rest.to_string(),
        _ => path.to_string(),
    }
}

/// Decode an http-server request body (with its blob) for the process `process` (its full
/// id, e.g. `presence:p2p-patterns:p2p-patterns.os`).
pub fn decode_incoming(
    body: &[u8],
    blob: Option<Vec<u8>>,
    process: &str,
) -> Result<Incoming, String> {
    let req: HttpServerRequest =
        serde_json::from_slice(body).map_err(|e| format!("not an http-server request: {e}"))?;
    Ok(match req {
        HttpServerRequest::Http(h) => Incoming::Http(HttpRequest {
            path: path_below_process(&h.url, process),
            method: h.method,
            bound_path: h.bound_path,
            query: h.query_params.into_iter().collect(),
            headers: h
                .headers
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
            body: blob.unwrap_or_default(),
        }),
        HttpServerRequest::WebSocketOpen {
            path, channel_id, ..
        } => Incoming::WsOpen {
            channel: channel_id,
            path,
        },
        HttpServerRequest::WebSocketPush {
            channel_id,
            message_type,
        } => match message_type {
            WsMessageType::Text => Incoming::WsMessage {
                channel: channel_id,
                kind: WsKind::Text,
                data: blob.unwrap_or_default(),
            },
            WsMessageType::Binary => Incoming::WsMessage {
                channel: channel_id,
                kind: WsKind::Binary,
                data: blob.unwrap_or_default(),
            },
            _ => Incoming::Ignored,
        },
        HttpServerRequest::WebSocketClose(channel) => Incoming::WsClose { channel },
    })
}

fn json(v: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(v).expect("http-server types serialize")
}

/// Body of a request binding an HTTP path.
pub fn bind_body(path: &str, authenticated: bool) -> Vec<u8> {
    json(&HttpServerAction::Bind {
        path: path.to_string(),
        authenticated,
        local_only: false,
        cache: false,
    })
}

/// Body of a request binding a WebSocket path.
pub fn ws_bind_body(path: &str, authenticated: bool) -> Vec<u8> {
    json(&HttpServerAction::WebSocketBind {
        path: path.to_string(),
        authenticated,
        extension: false,
    })
}

/// Body of a WebSocket push (the frame goes in the blob).
pub fn ws_push_body(channel: u32, kind: WsKind) -> Vec<u8> {
    json(&HttpServerAction::WebSocketPush {
        channel_id: channel,
        message_type: match kind {
            WsKind::Text => WsMessageType::Text,
            WsKind::Binary => WsMessageType::Binary,
        },
    })
}

/// Body of a request closing a WebSocket.
pub fn ws_close_body(channel: u32) -> Vec<u8> {
    json(&HttpServerAction::WebSocketClose(channel))
}

/// Body of the answer to an HTTP request (the HTTP body goes in the blob).
pub fn response_body(status: u16, headers: &BTreeMap<String, String>) -> Vec<u8> {
    json(&HttpResponse {
        status,
        headers: headers.clone().into_iter().collect(),
    })
}

/// An http-server request body, as a node's http-server would send it (simulator,
/// playground, tests).
pub fn request_body(
    method: &str,
    host: &str,
    process: &str,
    path: &str,
    bound_path: &str,
    query: &BTreeMap<String, String>,
    headers: &BTreeMap<String, String>,
) -> Vec<u8> {
    let qs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let url = if qs.is_empty() {
        format!("http://{host}/{process}{path}")
    } else {
        format!("http://{host}/{process}{path}?{}", qs.join("&"))
    };
    json(&HttpServerRequest::Http(IncomingHttpRequest {
        source_socket_addr: Some("127.0.0.1:0".into()),
        method: method.to_string(),
        url,
        bound_path: format!("/{process}{bound_path}"),
        headers: headers.clone().into_iter().collect(),
        url_params: HashMap::new(),
        query_params: query.clone().into_iter().collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_lose_the_process_prefix_and_the_query() {
        let p = "presence:p2p-patterns:p2p-patterns.os";
        assert_eq!(
            path_below_process(&format!("http://localhost:8080/{p}/api/nodes?x=1"), p),
            "/api/nodes"
        );
        assert_eq!(path_below_process(&format!("http://h/{p}"), p), "/");
        assert_eq!(path_below_process("http://h/other/x", p), "/other/x");
        assert_eq!(path_below_process("http://h", p), "/");
    }

    #[test]
    fn a_request_built_like_http_server_decodes_to_the_same_request() {
        let p = "sync:p2p-patterns:p2p-patterns.os";
        let q = BTreeMap::from([("limit".to_string(), "5".to_string())]);
        let h = BTreeMap::from([("Content-Type".to_string(), "application/json".to_string())]);
        let body = request_body("POST", "localhost:8080", p, "/api/docs", "/api/*", &q, &h);
        let Incoming::Http(r) = decode_incoming(&body, Some(b"{}".to_vec()), p).unwrap() else {
            panic!()
        };
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/docs");
        assert_eq!(r.query, q);
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body, b"{}");
        // process_lib's exact JSON for the other requests.
        let open = br#"{"WebSocketOpen":{"path":"/ws","channel_id":7}}"#;
        assert_eq!(
            decode_incoming(open, None, p).unwrap(),
            Incoming::WsOpen {
                channel: 7,
                path: "/ws".into()
            }
        );
        let push = br#"{"WebSocketPush":{"channel_id":7,"message_type":"Text"}}"#;
        assert_eq!(
            decode_incoming(push, Some(b"hi".to_vec()), p).unwrap(),
            Incoming::WsMessage {
                channel: 7,
                kind: WsKind::Text,
                data: b"hi".to_vec()
            }
        );
        assert_eq!(
            decode_incoming(br#"{"WebSocketClose":7}"#, None, p).unwrap(),
            Incoming::WsClose { channel: 7 }
        );
        assert!(decode_incoming(b"{}", None, p).is_err());
    }

    #[test]
    fn actions_serialize_as_process_lib_does() {
        assert_eq!(
            String::from_utf8(bind_body("/api/*", true)).unwrap(),
            r#"{"Bind":{"path":"/api/*","authenticated":true,"local_only":false,"cache":false}}"#
        );
        assert_eq!(
            String::from_utf8(ws_push_body(3, WsKind::Binary)).unwrap(),
            r#"{"WebSocketPush":{"channel_id":3,"message_type":"Binary"}}"#
        );
        assert_eq!(
            String::from_utf8(response_body(404, &BTreeMap::new())).unwrap(),
            r#"{"status":404,"headers":{}}"#
        );
    }
}
