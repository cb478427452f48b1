//! `http-echo`: an example process with an HTTP API, a WebSocket and a UI, built on
//! p2p-common's service contract. Its core (`Echo`, below) binds `/api/*` and `/ws`
//! through `Effect::BindHttp`/`BindWs`; everything between http-server and the core goes
//! through `p2p_common::http`, the one mapping our services use. The emulator's tests
//! (`test/emu/tests/http.rs`) run the built component behind an emulated http-server and
//! vfs; the wasm32 glue also serves `pkg/ui/` with process_lib's `serve_ui` when there is
//! one.
//!
//! - `<method> /http-echo:<package>/api/<anything>?<query>` answers
//!   `{"method", "path", "query", "body"}` (the body as text);
//! - a WebSocket client on `/ws` gets `welcome` and then `echo:<frame>` for every frame.

use p2p_common::service::{log, Effect, Input, Level, Now, Service, WsKind};
use std::collections::BTreeMap;

/// The core.
pub struct Echo {
    our: p2p_common::Address,
    /// HTTP requests answered since start.
    pub answered: u64,
}

impl Echo {
    pub fn new(our: p2p_common::Address) -> Echo {
        Echo { our, answered: 0 }
    }
}

impl Service for Echo {
    type Ctx = ();
    type Timer = ();

    fn name(&self) -> &'static str {
        "http-echo"
    }

    fn handle(&mut self, _now: Now, input: Input<(), ()>) -> Vec<Effect<(), ()>> {
        match input {
            Input::Start { .. } => vec![
                Effect::BindHttp {
                    path: "/api/*".into(),
                    authenticated: true,
                },
                Effect::BindWs {
                    path: "/ws".into(),
                    authenticated: true,
                },
                log(Level::Info, format!("http-echo started on {}", self.our)),
            ],
            Input::Http { id, request } => {
                self.answered += 1;
                let body = serde_json::json!({
                    "method": request.method,
                    "path": request.path,
                    "query": request.query,
                    "body": String::from_utf8_lossy(&request.body),
                });
                vec![Effect::HttpReply {
                    id,
                    status: 200,
                    headers: BTreeMap::from([(
                        "Content-Type".to_string(),
                        "application/json".to_string(),
                    )]),
                    body: serde_json::to_vec(&body).expect("json"),
                }]
            }
            Input::WsOpen { channel, .. } => vec![Effect::WsPush {
                channel,
                kind: WsKind::Text,
                data: b"welcome".to_vec(),
            }],
            Input::WsMessage {
                channel,
                kind,
                data,
            } => {
                let mut out = b"echo:".to_vec();
                out.extend_from_slice(&data);
                vec![Effect::WsPush {
                    channel,
                    kind,
                    data: out,
                }]
            }
            Input::WsClose { channel } => {
                vec![log(Level::Info, format!("WebSocket {channel} closed"))]
            }
            Input::Request {
                id,
                timeout_s: Some(_),
                ..
            } => vec![Effect::reply(
                id,
                br#"{"Err":{"code":"BadRequest","message":"http-echo has only an HTTP API"}}"#
                    .to_vec(),
            )],
            _ => vec![],
        }
    }
}

// ----- wasm32 glue: serve pkg/ui (if any), then the shared runner around `Echo` -----

#[cfg(target_arch = "wasm32")]
wit_bindgen::generate!({
    path: "../../target/wit",
    world: "process-v1",
});

// (`call_init!` expects process_lib's `Address` under that name here.)
#[cfg(target_arch = "wasm32")]
use hyperware_process_lib::Address;

#[cfg(target_arch = "wasm32")]
hyperware_process_lib::call_init!(init);

#[cfg(target_arch = "wasm32")]
fn init(our: Address) {
    use hyperware_process_lib::http::server::{HttpBindingConfig, HttpServer};
    use hyperware_process_lib::print_to_terminal;
    let mut server = HttpServer::new(5);
    match server.serve_ui("ui", vec!["/"], HttpBindingConfig::default()) {
        Ok(()) => print_to_terminal(2, "http-echo: serving pkg/ui"),
        Err(e) => print_to_terminal(1, &format!("http-echo: no UI served: {e}")),
    }
    p2p_common::runner::run(our, Echo::new);
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_common::service::HttpRequest;

    #[test]
    fn binds_answers_and_echoes() {
        let mut e = Echo::new(p2p_common::Address::parse("a.os@http-echo:x:y.os").unwrap());
        let now = Now { mono: 0, wall: 0 };
        let start = e.handle(
            now,
            Input::Start {
                persisted: None,
                records: Default::default(),
                seed: 0,
            },
        );
        assert!(
            matches!(&start[0], Effect::BindHttp { path, authenticated: true } if path == "/api/*")
        );
        assert!(matches!(&start[1], Effect::BindWs { path, .. } if path == "/ws"));
        let out = e.handle(
            now,
            Input::Http {
                id: p2p_common::RequestId(3),
                request: HttpRequest {
                    method: "GET".into(),
                    path: "/api/x".into(),
                    bound_path: "/api/*".into(),
                    query: BTreeMap::from([("q".into(), "1".into())]),
                    headers: Default::default(),
                    body: b"hi".to_vec(),
                },
            },
        );
        let Effect::HttpReply {
            id, status, body, ..
        } = &out[0]
        else {
            panic!("{out:?}")
        };
        assert_eq!((*id, *status), (p2p_common::RequestId(3), 200));
        let v: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"method": "GET", "path": "/api/x", "query": {"q": "1"}, "body": "hi"})
        );
        let out = e.handle(
            now,
            Input::WsMessage {
                channel: 1,
                kind: WsKind::Text,
                data: b"p".to_vec(),
            },
        );
        assert!(matches!(&out[0], Effect::WsPush { channel: 1, data, .. } if data == b"echo:p"));
    }
}
