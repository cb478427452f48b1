//! The one HTTP and WebSocket API of every service: the local API over the node's
//! http-server, for the UI (issue 15).
//!
//! - `POST /api` (below the process prefix, e.g.
//!   `/presence:p2p-patterns:p2p-patterns.os/api`) with a body that is exactly one local-API
//!   request of that service, as JSON. It is answered with that service's local-API answer
//!   as JSON, `{"Ok": ...}` or `{"Err": {"code", "message"}}`, with the HTTP status of the
//!   error code ([`status_of`]). A request that carries a blob (notify's `Publish`) puts the
//!   request JSON in the `x-api-request` header and the blob in the body. An answer's blob
//!   is not sent (its length is in the `x-blob-bytes` header).
//! - `/ws`, a WebSocket on which the page receives the service's events as JSON text
//!   frames ([`event_frame`]).
//!
//! Both are bound `authenticated` (the node's login, Hyperware's default). An HTTP caller is
//! the node's owner and is treated as a local app with the address [`caller`]:
//! `<our node>@ui:p2p-patterns:p2p-patterns.os`. No installed process has that name (it
//! lies in our own package), so no app can pose as the UI, and a remote node claiming it is
//! still a remote node. What the UI subscribes to (presence events, a document's changes, a
//! topic, its transactions' decisions) is subscribed by this address through `POST /api`;
//! the driver answers every request a core sends to it at once (with `{"Ok":null}`, which
//! every service takes as "received") and pushes it to every WebSocket client open on `/ws`
//! (at most [`MAX_WS_CLIENTS`]; one beyond gets a [`refusal_frame`] and is closed at once). Nothing is buffered for a
//! client: a frame goes to http-server when the event happens, and a client that does not
//! keep up is http-server's (and, in the playground, is dropped).
//!
//! Cores wire this in with one line in their `Input::Http` arm ([`route`]) and
//! `const WEB_API: bool = true` in their [`crate::service::Service`] impl; the host binds
//! [`bindings`] at every start ([`crate::driver::Driver::web_bindings`]) and the driver does
//! the rest.

use crate::api::{encode_result, ApiError, ApiResult, ErrorCode, MAX_REQUEST_BYTES};
use crate::ids::{Address, NodeId, ProcessId};
use crate::service::{Effect, HttpRequest, Input, RequestId};
use std::collections::BTreeMap;

/// The API path below the process prefix.
pub const API_PATH: &str = "/api";
/// The WebSocket path below the process prefix.
pub const WS_PATH: &str = "/ws";
/// The name of the UI caller's process (in our package).
pub const CALLER_PROCESS: &str = "ui";
/// WebSocket clients served at once per process.
pub const MAX_WS_CLIENTS: usize = 8;
/// Largest HTTP body (request JSON, or a blob with the request in the header).
pub const MAX_HTTP_BODY: usize = MAX_REQUEST_BYTES;
/// How long an HTTP caller waits for an answer (the core may answer later within it).
pub const HTTP_TIMEOUT_S: u64 = 30;
/// An event's blob shows in its frame as text up to this size.
pub const MAX_FRAME_BLOB: usize = 64 * 1024;
/// The header carrying the request when the body is its blob.
pub const REQUEST_HEADER: &str = "x-api-request";

/// Whether a `Content-Type` value is JSON (`application/json`, any parameters).
pub fn is_json_type(content_type: &str) -> bool {
    media_type(content_type) == "application/json"
}

/// The media type of a `Content-Type` value, lowercase, without parameters.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A header's value, whatever the case of its name.
fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The frame a WebSocket client refused by the [`MAX_WS_CLIENTS`] cap gets before it is
/// closed: `{"process", "error"}`.
pub fn refusal_frame(process: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "process": process,
        "error": format!("too many WebSocket clients: {process} serves at most {MAX_WS_CLIENTS} at once, so this one is closed (close another page or tab)"),
    }))
    .expect("json values serialize")
}

/// The address an HTTP caller (the node's owner) has for our services.
pub fn caller(node: &NodeId) -> Address {
    Address::new(node.clone(), ProcessId::ours(CALLER_PROCESS))
}

/// Whether `a` is the UI caller of node `our`.
pub fn is_caller(a: &Address, our: &NodeId) -> bool {
    a.node == *our && a.process == ProcessId::ours(CALLER_PROCESS)
}

/// The bindings a core makes at start: `/api` and `/ws`, both behind the node's login.
pub fn bindings<C, T>() -> Vec<Effect<C, T>> {
    vec![
        Effect::BindHttp {
            path: API_PATH.into(),
            authenticated: true,
        },
        Effect::BindWs {
            path: WS_PATH.into(),
            authenticated: true,
        },
    ]
}

/// The HTTP status of a local-API answer: 200 for `Ok`, else by error code.
pub fn status_of(body: &[u8]) -> u16 {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return 500;
    };
    let Some(err) = v.get("Err") else {
        return 200;
    };
    let code = err
        .get("code")
        .cloned()
        .and_then(|c| serde_json::from_value::<ErrorCode>(c).ok());
    match code {
        Some(ErrorCode::BadRequest) => 400,
        Some(ErrorCode::Forbidden) => 403,
        Some(ErrorCode::NotFound) => 404,
        Some(ErrorCode::VersionMismatch) => 409,
        Some(ErrorCode::TooLarge) => 413,
        Some(ErrorCode::Overloaded) => 429,
        Some(ErrorCode::Unavailable) => 503,
        Some(ErrorCode::Internal) | None => 500,
    }
}

/// JSON response headers.
pub fn json_headers() -> BTreeMap<String, String> {
    BTreeMap::from([("Content-Type".to_string(), "application/json".to_string())])
}

/// An HTTP answer with a local-API error (status from its code).
pub fn error_reply<C, T>(id: RequestId, error: ApiError) -> Effect<C, T> {
    let body = encode_result::<()>(&Err(error));
    Effect::HttpReply {
        id,
        status: status_of(&body),
        headers: json_headers(),
        body,
    }
}

/// The local-API request an HTTP request stands for: `(body, blob)`, or the error to answer.
pub fn api_request(request: &HttpRequest) -> ApiResult<(Vec<u8>, Option<Vec<u8>>)> {
    if request.path != API_PATH {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!(
                "no HTTP path {}: the API is POST {API_PATH} (WebSocket {WS_PATH})",
                request.path
            ),
        ));
    }
    if request.method != "POST" {
        return Err(ApiError::bad_request(format!(
            "{} {API_PATH}: send the request with POST",
            request.method
        )));
    }
    if request.body.len() > MAX_HTTP_BODY {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "body is {} bytes; the HTTP API accepts at most {MAX_HTTP_BODY}",
                request.body.len()
            ),
        ));
    }
    // A body must be typed as one a cross-site page cannot send without the browser asking
    // us first (CORS preflight): JSON, or for a blob (request in the header) also
    // application/octet-stream. text/plain, forms and no type are refused, whatever the
    // login cookie's SameSite.
    let request_header = header(request, REQUEST_HEADER);
    if !request.body.is_empty() {
        let ct = header(request, "content-type").unwrap_or("");
        let blob_ok = request_header.is_some() && media_type(ct) == "application/octet-stream";
        if !is_json_type(ct) && !blob_ok {
            return Err(ApiError::bad_request(format!(
                "Content-Type {:?}: send the body as application/json (a blob, with the request in {REQUEST_HEADER}, may be application/octet-stream)",
                if ct.is_empty() { "none" } else { ct }
            )));
        }
    }
    match request_header {
        Some(r) => Ok((r.as_bytes().to_vec(), Some(request.body.clone()))),
        None => Ok((request.body.clone(), None)),
    }
}

/// What a core does with an `Input::Http`: the local request to handle as if the node's
/// owner sent it (from [`caller`], answered within [`HTTP_TIMEOUT_S`]; the driver turns its
/// `Reply` into the HTTP answer), or the HTTP error to answer at once.
pub fn route<C, T>(
    id: RequestId,
    request: HttpRequest,
    our: &NodeId,
) -> Result<Input<C, T>, Effect<C, T>> {
    match api_request(&request) {
        Ok((body, blob)) => Ok(Input::Request {
            id,
            from: caller(our),
            body,
            blob,
            timeout_s: Some(HTTP_TIMEOUT_S),
        }),
        Err(e) => Err(error_reply(id, e)),
    }
}

/// The WebSocket frame for a request a core sent the UI caller: `{"process", "event",
/// "blob_bytes", "blob_text"}` (`event` is the request's JSON, or its text if it is not
/// JSON; `blob_text` the blob as UTF-8 text if it is that and at most [`MAX_FRAME_BLOB`]).
pub fn event_frame(process: &str, body: &[u8], blob: Option<&[u8]>) -> Vec<u8> {
    let event = serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into()));
    let blob_text = blob
        .filter(|b| b.len() <= MAX_FRAME_BLOB)
        .and_then(|b| std::str::from_utf8(b).ok());
    serde_json::to_vec(&serde_json::json!({
        "process": process,
        "event": event,
        "blob_bytes": blob.map_or(0, <[u8]>::len),
        "blob_text": blob_text,
    }))
    .expect("json values serialize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn http(method: &str, path: &str, body: &[u8]) -> HttpRequest {
        HttpRequest {
            method: method.into(),
            path: path.into(),
            bound_path: API_PATH.into(),
            query: Default::default(),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: body.to_vec(),
        }
    }

    #[test]
    fn statuses_follow_error_codes() {
        assert_eq!(status_of(br#"{"Ok":"Pong"}"#), 200);
        let cases = [
            ("BadRequest", 400),
            ("Forbidden", 403),
            ("NotFound", 404),
            ("VersionMismatch", 409),
            ("TooLarge", 413),
            ("Overloaded", 429),
            ("Unavailable", 503),
            ("Internal", 500),
            ("Nonsense", 500),
        ];
        for (code, status) in cases {
            let body = format!(r#"{{"Err":{{"code":"{code}","message":"m"}}}}"#);
            assert_eq!(status_of(body.as_bytes()), status, "{code}");
        }
        assert_eq!(status_of(b"not json"), 500);
    }

    #[test]
    fn a_post_to_api_is_a_local_request_of_the_owner() {
        let our = NodeId::parse("alice.os").unwrap();
        let r = route::<(), ()>(RequestId(4), http("POST", "/api", b"\"Ping\""), &our).unwrap();
        assert_eq!(
            r,
            Input::Request {
                id: RequestId(4),
                from: caller(&our),
                body: b"\"Ping\"".to_vec(),
                blob: None,
                timeout_s: Some(HTTP_TIMEOUT_S),
            }
        );
        assert!(is_caller(&caller(&our), &our));
        assert!(!is_caller(&caller(&NodeId::parse("bob.os").unwrap()), &our));
        assert_eq!(
            caller(&our).to_string(),
            "alice.os@ui:p2p-patterns:p2p-patterns.os"
        );
        // The blob form: request in the header, blob in the body (JSON or octet-stream).
        let mut h = http("POST", "/api", b"payload");
        h.headers
            .insert(REQUEST_HEADER.into(), r#"{"Publish":{}}"#.into());
        assert_eq!(
            api_request(&h).unwrap(),
            (br#"{"Publish":{}}"#.to_vec(), Some(b"payload".to_vec()))
        );
        h.headers
            .insert("content-type".into(), "Application/Octet-Stream".into());
        assert!(api_request(&h).is_ok());
        // Parameters and the header name's case do not matter.
        let mut h = http("POST", "/api", b"\"Ping\"");
        h.headers.clear();
        h.headers.insert(
            "Content-Type".into(),
            "application/json; charset=utf-8".into(),
        );
        assert!(api_request(&h).is_ok());
        // No body, no type needed (the request then fails as JSON in the core).
        let mut h = http("POST", "/api", b"");
        h.headers.clear();
        assert!(api_request(&h).is_ok());
    }

    #[test]
    fn hostile_http_requests_get_clear_errors() {
        let our = NodeId::parse("alice.os").unwrap();
        let answer = |req: HttpRequest| match route::<(), ()>(RequestId(1), req, &our) {
            Err(Effect::HttpReply { status, body, .. }) => {
                (status, String::from_utf8(body).unwrap())
            }
            other => panic!("{other:?}"),
        };
        let big = vec![b' '; MAX_HTTP_BODY + 1];
        let (s, b) = answer(http("POST", "/api", &big));
        assert_eq!(s, 413);
        assert!(b.contains("TooLarge") && b.contains("at most"), "{b}");
        let (s, b) = answer(http("GET", "/api", b""));
        assert_eq!(s, 400);
        assert!(b.contains("POST"), "{b}");
        let (s, b) = answer(http("POST", "/api/../../etc", b"{}"));
        assert_eq!(s, 404);
        assert!(b.contains("POST /api"), "{b}");
        // What a cross-site page can send without a preflight (text/plain, a form, no
        // type) is refused, as is octet-stream without the request header.
        for ct in [
            Some("text/plain;charset=UTF-8"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            Some("application/octet-stream"),
            Some("application/jsonx"),
            None,
        ] {
            let mut h = http(
                "POST",
                "/api",
                br#"{"SetTopic":{"topic":"t","policy":"Open"}}"#,
            );
            h.headers.clear();
            if let Some(ct) = ct {
                h.headers.insert("content-type".into(), ct.into());
            }
            let (s, b) = answer(h);
            assert_eq!(s, 400, "{ct:?}: {b}");
            assert!(b.contains("application/json"), "{ct:?}: {b}");
        }
        let mut h = http("POST", "/api", b"payload");
        h.headers.insert("content-type".into(), "text/plain".into());
        h.headers
            .insert(REQUEST_HEADER.into(), r#"{"Publish":{}}"#.into());
        assert_eq!(answer(h).0, 400);
    }

    #[test]
    fn a_refused_websocket_client_is_told_why() {
        let v: serde_json::Value = serde_json::from_slice(&refusal_frame("sync")).unwrap();
        assert_eq!(v["process"], "sync");
        let e = v["error"].as_str().unwrap();
        assert!(e.contains(&format!("at most {MAX_WS_CLIENTS}")), "{e}");
    }

    #[test]
    fn frames_carry_the_event_and_text_blobs() {
        let f = event_frame(
            "notify",
            br#"{"HandleNotification":{"seq":1}}"#,
            Some(b"hi"),
        );
        let v: serde_json::Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["process"], "notify");
        assert_eq!(v["event"]["HandleNotification"]["seq"], 1);
        assert_eq!(v["blob_text"], "hi");
        assert_eq!(v["blob_bytes"], 2);
        let big = vec![b'a'; MAX_FRAME_BLOB + 1];
        let v: serde_json::Value =
            serde_json::from_slice(&event_frame("notify", b"\"X\"", Some(&big))).unwrap();
        assert_eq!(v["blob_text"], serde_json::Value::Null);
        assert_eq!(v["blob_bytes"], MAX_FRAME_BLOB + 1);
        let v: serde_json::Value =
            serde_json::from_slice(&event_frame("presence", b"not json", None)).unwrap();
        assert_eq!(v["event"], "not json");
    }
}
