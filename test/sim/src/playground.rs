//! The playground: a simulated cluster running the real cores in real time, with the UI,
//! each node's HTTP API and WebSocket, and the simulator's fault controls in a browser.
//!
//! The simulator lives on one thread and its virtual clock follows the wall clock. HTTP and
//! WebSocket traffic for a node goes through that node's simulated http-server into the
//! same mapping a real node uses (`Sim::http_with_headers`, `Sim::websocket`, so the cores
//! and the driver see what Hyperware's http-server sends). Routes (loopback only):
//!
//! - `GET /presence:p2p-patterns:p2p-patterns.os/` (where `/` redirects): the built page
//!   (`ui/dist`, or `--ui`), at the same path as on a node;
//! - `POST /node/<node>/<process>/api`, `GET /node/<node>/<process>/ws`: that node's API;
//! - `GET /sim/state`, `POST /sim/<control>` (crash, restart, isolate, partition, heal, net,
//!   slow) with a JSON body, `POST /sim/health` `{"node"}` (the simulator's counts of that
//!   node's messages to and from each other node; reachability and breakers are each
//!   process's own `Health`, through its API); `GET /sim/ws`: messages between nodes as they are delivered,
//!   and the cluster's state once a second.
//!
//! Every node also runs a resource manager ([`crate::playground_rm`]) for the resources
//! `stock` and `cash`, so a transaction started in the page commits, unless an operation
//! contains `refuse`.
//!
//! Nothing is buffered without bound: a browser WebSocket that falls [`CLIENT_QUEUE`]
//! frames behind is closed, and at most [`MAX_NET_FRAMES_PER_TICK`] messages per tick are
//! reported on `/sim/ws` (the rest are counted). A message from the browser is at most
//! [`MAX_WS_MESSAGE`] bytes (the cores ignore them anyway); a larger one closes the socket.
//!
//! Only the page itself may call: binding loopback keeps other machines out, not other web
//! pages in the user's browser. Every request must name the playground as its `Host`
//! (`127.0.0.1:<port>` or `localhost:<port>`, which stops DNS rebinding) and, if it has an
//! `Origin` (every browser WebSocket and cross-site POST does), exactly that origin; anything
//! else is 403 ([`check_request`]). A `/sim/*` POST with a body must be
//! `Content-Type: application/json` (415 otherwise), so a cross-site "simple" request cannot
//! reach a control; a node's `/api` has the same rule in its own mapping
//! ([`p2p_common::web::api_request`]). Every error is `{"error": "..."}`, the body limit's too.
//!
//! Ctrl-C stops the server, leaving calls in flight at most [`SHUTDOWN_GRACE`] to finish; a
//! second Ctrl-C exits at once (status 130).

use crate::sim::{factory, AppOutcome, Sim, SimConfig};
use crate::NetConfig;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use p2p_common::http::{HttpResponse, HttpServerRequest, WsMessageType};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::future::IntoFuture;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// Frames a browser WebSocket may fall behind before it is dropped.
pub const CLIENT_QUEUE: usize = 256;
/// Messages reported on `/sim/ws` per tick (the rest are counted as skipped).
pub const MAX_NET_FRAMES_PER_TICK: usize = 200;
/// Largest HTTP body the playground takes (the API's own cap is lower).
pub const MAX_BODY: usize = 2 << 20;
/// Largest message a browser WebSocket may send (the cores ignore them; docs say 64 KiB).
pub const MAX_WS_MESSAGE: usize = 64 * 1024;
/// The simulator's tick (real time).
pub const TICK: Duration = Duration::from_millis(20);
/// How long calls in flight may still run after Ctrl-C.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Where the page is served: under presence's path, as on a node.
pub const UI_PATH: &str = "/presence:p2p-patterns:p2p-patterns.os";
/// The processes a node runs.
pub const PROCESSES: [&str; 4] = ["presence", "sync", "notify", "txcoord"];

/// How to run it.
#[derive(Debug, Clone)]
pub struct Options {
    pub nodes: usize,
    pub port: u16,
    pub ui_dir: PathBuf,
    pub seed: u64,
}

/// The default UI build: `<workspace>/ui/dist`.
pub fn default_ui_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist")
}

type HttpAnswer = (u16, Vec<(String, String)>, Vec<u8>);

enum Cmd {
    Http {
        node: usize,
        process: String,
        headers: BTreeMap<String, String>,
        body: Vec<u8>,
        reply: oneshot::Sender<HttpAnswer>,
    },
    WsOpen {
        node: usize,
        process: String,
        tx: mpsc::Sender<String>,
        reply: oneshot::Sender<u32>,
    },
    WsFrame {
        node: usize,
        process: String,
        channel: u32,
        text: String,
    },
    WsClose {
        node: usize,
        process: String,
        channel: u32,
    },
    NetWs {
        tx: mpsc::Sender<String>,
    },
    Control {
        op: String,
        body: Value,
        reply: oneshot::Sender<Result<Value, (u16, String)>>,
    },
}

#[derive(Clone)]
struct AppState {
    cmds: std_mpsc::Sender<Cmd>,
    nodes: Vec<String>,
    /// The port we listen on (what `Host` and `Origin` must name).
    port: u16,
}

/// Run until Ctrl-C.
pub fn run(opts: Options) -> Result<(), String> {
    if !(1..=20).contains(&opts.nodes) {
        return Err(format!(
            "--nodes {} is out of range: use 1..=20",
            opts.nodes
        ));
    }
    let nodes: Vec<String> = (0..opts.nodes)
        .map(|i| crate::sim::node_name(i).to_string())
        .collect();
    let (tx, rx) = std_mpsc::channel::<Cmd>();
    let sim_opts = opts.clone();
    let sim_thread = std::thread::spawn(move || sim_loop(sim_opts, rx));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio: {e}"))?;
    let state = AppState {
        cmds: tx,
        nodes: nodes.clone(),
        port: 0,
    };
    let result = rt.block_on(serve(opts, state));
    // Dropping the runtime drops every command sender: the simulator thread ends.
    drop(rt);
    let _ = sim_thread.join();
    result
}

async fn serve(opts: Options, mut state: AppState) -> Result<(), String> {
    let index = opts.ui_dir.join("index.html");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", opts.port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", opts.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    state.port = addr.port();
    let app = router(&opts, state.clone());
    if !index.exists() {
        eprintln!(
            "warning: no UI build at {} (run `cd ui && npm ci && npm run build`, or `cargo xtask build`); the API and /sim still work",
            opts.ui_dir.display()
        );
    }
    println!(
        "playground: {} nodes ({}) on http://{addr}/  (Ctrl-C stops)",
        state.nodes.len(),
        state.nodes.join(", ")
    );
    // The first Ctrl-C starts a graceful stop; a second one exits at once.
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        println!(
            "playground: stopping (calls in flight get {} s; Ctrl-C again exits now)",
            SHUTDOWN_GRACE.as_secs()
        );
        let _ = stop_tx.send(());
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("playground: second Ctrl-C: exiting now");
            std::process::exit(130);
        }
    });
    let (stopping_tx, stopping_rx) = oneshot::channel::<()>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop_rx.await;
            let _ = stopping_tx.send(());
        })
        .into_future();
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.map_err(|e| e.to_string()),
        _ = async {
            if stopping_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            eprintln!(
                "playground: calls still open after {} s; stopping without them",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    }
}

/// The routes, behind the same-origin check.
fn router(opts: &Options, state: AppState) -> Router {
    let index = opts.ui_dir.join("index.html");
    let missing = opts.ui_dir.display().to_string();
    let ui = tower_http::services::ServeDir::new(&opts.ui_dir)
        .fallback(tower_http::services::ServeFile::new(&index));
    let ui_router = if index.exists() {
        Router::new().nest_service(UI_PATH, ui)
    } else {
        let page = move || {
            let missing = missing.clone();
            async move {
                (
                    StatusCode::NOT_FOUND,
                    format!("The page is not built (no {missing}/index.html). Build it with `cd ui && npm ci && npm run build` (or `cargo xtask build`) and start the playground again; the API under /node/ and /sim/ works without it.\n"),
                )
            }
        };
        Router::new()
            .route(UI_PATH, get(page.clone()))
            .route(&format!("{UI_PATH}/"), get(page.clone()))
            .route(&format!("{UI_PATH}/{{*rest}}"), get(page))
    };
    Router::new()
        .route(
            "/",
            get(|| async { axum::response::Redirect::temporary(&format!("{UI_PATH}/")) }),
        )
        .merge(ui_router)
        .route("/node/{node}/{process}/api", post(api))
        .route("/node/{node}/{process}/ws", get(node_ws))
        .route("/sim/ws", get(net_ws))
        .route("/sim/state", get(sim_state))
        .route("/sim/{op}", post(control))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(middleware::from_fn_with_state(state.clone(), same_origin))
        .with_state(state)
}

/// Whether a request may reach the playground: `Host` names it, `Origin` (if any) is it, and
/// a `/sim/*` POST with a body is JSON. The error is `(status, message)`.
pub fn check_request(
    port: u16,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Result<(), (u16, String)> {
    let text = |name: header::HeaderName| header_text(headers, name);
    let allowed = [format!("127.0.0.1:{port}"), format!("localhost:{port}")];
    let host = text(header::HOST)?.ok_or((
        403,
        "no Host header: the playground answers only requests for itself".to_string(),
    ))?;
    if !allowed.iter().any(|a| a.eq_ignore_ascii_case(host)) {
        return Err((
            403,
            format!(
                "Host {host:?} is not this playground: use http://{}/ or http://{}/",
                allowed[0], allowed[1]
            ),
        ));
    }
    if let Some(origin) = text(header::ORIGIN)? {
        if !origin.eq_ignore_ascii_case(&format!("http://{host}")) {
            return Err((
                403,
                format!("Origin {origin:?} is not this playground's (http://{host}): cross-site calls are refused"),
            ));
        }
    }
    let has_body = headers.contains_key(header::TRANSFER_ENCODING)
        || text(header::CONTENT_LENGTH)?.is_some_and(|l| l.trim() != "0");
    if *method == Method::POST && path.starts_with("/sim/") && has_body {
        let ct = text(header::CONTENT_TYPE)?.unwrap_or("");
        if !p2p_common::web::is_json_type(ct) {
            return Err((
                415,
                format!(
                    "send the body as Content-Type: application/json (got {:?})",
                    if ct.is_empty() { "none" } else { ct }
                ),
            ));
        }
    }
    Ok(())
}

/// A header's value as text, if present.
fn header_text(
    headers: &HeaderMap,
    name: header::HeaderName,
) -> Result<Option<&str>, (u16, String)> {
    headers
        .get(&name)
        .map(|v| {
            v.to_str()
                .map_err(|_| (400, format!("the {name} header is not text")))
        })
        .transpose()
}

async fn same_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match check_request(state.port, req.method(), req.uri().path(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err((status, message)) => error(status, message),
    }
}

/// A body the limit refused, as our JSON error.
fn body_error(e: BytesRejection) -> Response {
    let status = e.status().as_u16();
    if status == 413 {
        error(
            413,
            format!("the body is larger than the playground's limit of {MAX_BODY} bytes"),
        )
    } else {
        error(status, format!("cannot read the body: {}", e.body_text()))
    }
}

fn error(status: u16, message: impl Into<String>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (code, axum::Json(json!({"error": message.into()}))).into_response()
}

fn node_index(state: &AppState, node: &str) -> Result<usize, Response> {
    state.nodes.iter().position(|n| n == node).ok_or_else(|| {
        error(
            404,
            format!("no node {node}; nodes: {}", state.nodes.join(", ")),
        )
    })
}

fn check_process(process: &str) -> Result<(), Response> {
    if PROCESSES.contains(&process) {
        Ok(())
    } else {
        Err(error(
            404,
            format!("no process {process}; processes: {}", PROCESSES.join(", ")),
        ))
    }
}

async fn api(
    State(state): State<AppState>,
    Path((node, process)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let node = match node_index(&state, &node) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = check_process(&process) {
        return r;
    }
    let headers: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let (reply, answer) = oneshot::channel();
    let cmd = Cmd::Http {
        node,
        process,
        headers,
        body: body.to_vec(),
        reply,
    };
    if state.cmds.send(cmd).is_err() {
        return error(503, "the simulator stopped");
    }
    match answer.await {
        Ok((status, headers, body)) => {
            let mut b = Response::builder()
                .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
            for (k, v) in headers {
                b = b.header(k, v);
            }
            b.body(axum::body::Body::from(body))
                .unwrap_or_else(|e| error(500, e.to_string()))
        }
        Err(_) => error(504, "no answer from the simulated node (it crashed?)"),
    }
}

async fn node_ws(
    State(state): State<AppState>,
    Path((node, process)): Path<(String, String)>,
    ws: WebSocketUpgrade,
) -> Response {
    let node = match node_index(&state, &node) {
        Ok(n) => n,
        Err(r) => return r,
    };
    if let Err(r) = check_process(&process) {
        return r;
    }
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |socket| node_socket(state, node, process, socket))
}

async fn node_socket(state: AppState, node: usize, process: String, mut socket: WebSocket) {
    let (tx, mut rx) = mpsc::channel::<String>(CLIENT_QUEUE);
    let (reply, channel) = oneshot::channel();
    let open = Cmd::WsOpen {
        node,
        process: process.clone(),
        tx,
        reply,
    };
    if state.cmds.send(open).is_err() {
        return;
    }
    let Ok(channel) = channel.await else { return };
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(text) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                // The simulator dropped us (too slow, or the node's process closed it).
                None => break,
            },
            inc = socket.recv() => match inc {
                Some(Ok(Message::Text(t))) => {
                    let _ = state.cmds.send(Cmd::WsFrame { node, process: process.clone(), channel, text: t.to_string() });
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = state.cmds.send(Cmd::WsClose {
        node,
        process,
        channel,
    });
    let _ = socket.send(Message::Close(None)).await;
}

async fn net_ws(State(state): State<AppState>, ws: WebSocketUpgrade) -> Response {
    ws.max_message_size(MAX_WS_MESSAGE)
        .max_frame_size(MAX_WS_MESSAGE)
        .on_upgrade(move |mut socket| async move {
        let (tx, mut rx) = mpsc::channel::<String>(CLIENT_QUEUE);
        if state.cmds.send(Cmd::NetWs { tx }).is_err() {
            return;
        }
        loop {
            tokio::select! {
                out = rx.recv() => match out {
                    Some(text) => if socket.send(Message::Text(text.into())).await.is_err() { break },
                    None => break,
                },
                inc = socket.recv() => match inc {
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
            }
        }
    })
}

async fn sim_state(State(state): State<AppState>) -> Response {
    control_call(state, "state".into(), Value::Null).await
}

async fn control(
    State(state): State<AppState>,
    Path(op): Path<String>,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e),
    };
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => return error(400, format!("the body is not JSON: {e}")),
        }
    };
    control_call(state, op, body).await
}

async fn control_call(state: AppState, op: String, body: Value) -> Response {
    let (reply, answer) = oneshot::channel();
    if state.cmds.send(Cmd::Control { op, body, reply }).is_err() {
        return error(503, "the simulator stopped");
    }
    match answer.await {
        Ok(Ok(v)) => axum::Json(v).into_response(),
        Ok(Err((status, message))) => error(status, message),
        Err(_) => error(503, "the simulator stopped"),
    }
}

// ----- the simulator thread -----

/// A message seen on the wire, for the network view.
struct Seen {
    at: u64,
    from: String,
    to: String,
    process: String,
    kind: String,
}

struct Loop {
    sim: Sim,
    http: Vec<(u64, oneshot::Sender<HttpAnswer>)>,
    /// Browser WebSockets by (node, process name, channel).
    clients: HashMap<(usize, String, u32), mpsc::Sender<String>>,
    net_clients: Vec<mpsc::Sender<String>>,
    next_channel: u32,
    seen: Rc<RefCell<Vec<Seen>>>,
    /// What each node's processes bound at http-server since they started: (node, process,
    /// path; a WebSocket path as `ws:<path>`). As on a node, nothing else is routed.
    bound: std::collections::BTreeSet<(usize, String, String)>,
    /// Messages delivered between nodes, by (from, to) node index.
    delivered: Rc<RefCell<BTreeMap<(usize, usize), u64>>>,
    skipped: u64,
}

fn sim_loop(opts: Options, rx: std_mpsc::Receiver<Cmd>) {
    let mut lp = Loop::new(&opts);
    let started = Instant::now();
    let mut last_state = Instant::now();
    loop {
        match rx.recv_timeout(TICK) {
            Ok(cmd) => lp.command(cmd),
            Err(std_mpsc::RecvTimeoutError::Timeout) => {}
            Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
        }
        while let Ok(cmd) = rx.try_recv() {
            lp.command(cmd);
        }
        let target = started.elapsed().as_millis() as u64;
        if let Err(e) = lp.sim.run_until(target) {
            eprintln!("playground: the simulator reported: {e}");
        }
        lp.after_run();
        if last_state.elapsed() >= Duration::from_secs(1) {
            last_state = Instant::now();
            let s = json!({"type": "state", "state": lp.state()}).to_string();
            lp.net_clients.retain(|c| c.try_send(s.clone()).is_ok());
        }
    }
}

impl Loop {
    /// The cluster of `opts`, everyone joining through the first node.
    fn new(opts: &Options) -> Loop {
        let mut cfg = SimConfig::new(opts.seed, opts.nodes);
        cfg.net = NetConfig::realistic();
        let seen: Rc<RefCell<Vec<Seen>>> = Rc::default();
        let log = seen.clone();
        let delivered: Rc<RefCell<BTreeMap<(usize, usize), u64>>> = Rc::default();
        let count = delivered.clone();
        let mut sim = Sim::new(cfg)
            .with_process("presence", factory(presence::core::new))
            .with_process("sync", factory(sync::core::new))
            .with_process("notify", factory(notify::core::new))
            .with_process("txcoord", factory(txcoord::core::new))
            .with_process(
                crate::playground_rm::PROCESS,
                factory(crate::playground_rm::PlaygroundRm::new),
            )
            .with_delivery_observer(move |sim, _to_node, from, to, body| {
                if from.node == to.node {
                    return;
                }
                if let (Some(a), Some(b)) = (sim.node_index(&from.node), sim.node_index(&to.node)) {
                    *count.borrow_mut().entry((a, b)).or_default() += 1;
                }
                let mut log = log.borrow_mut();
                if log.len() >= 10 * MAX_NET_FRAMES_PER_TICK {
                    return;
                }
                log.push(Seen {
                    at: sim.now(),
                    from: from.node.to_string(),
                    to: to.node.to_string(),
                    process: to.process.process.clone(),
                    kind: kind_of(body),
                });
            });
        // Wall clocks read real Unix time (what the page shows as "last seen").
        let unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        for i in 0..opts.nodes {
            sim.jump_wall_clock(i, unix_ms);
        }
        for i in 1..opts.nodes {
            let to = sim.addr(i, "presence");
            let join = json!({"Join": {"bootstrap": [sim.node_id(0).to_string()]}});
            sim.request(i, &to, serde_json::to_vec(&join).expect("json"), 10);
        }
        let mut lp = Loop {
            sim,
            http: Vec::new(),
            clients: HashMap::new(),
            net_clients: Vec::new(),
            next_channel: 1,
            seen,
            bound: Default::default(),
            delivered,
            skipped: 0,
        };
        // Start the nodes, so their processes' bindings are known before the first call.
        if let Err(e) = lp.sim.run_until(0) {
            eprintln!("playground: the simulator reported: {e}");
        }
        lp.after_run();
        lp
    }
}

/// The first key of a JSON object body (`Probe`, `Ok`...), or its string value.
fn kind_of(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m.keys().next().cloned().unwrap_or_default(),
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

impl Loop {
    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Http {
                node,
                process,
                headers,
                body,
                reply,
            } => {
                if !self.sim.node(node).up {
                    let _ = reply.send((
                        503,
                        vec![("content-type".into(), "application/json".into())],
                        json!({"error": format!("{} is down (crashed); restart it on the Network tab", self.sim.node_id(node))})
                            .to_string()
                            .into_bytes(),
                    ));
                    return;
                }
                if !self.bound.contains(&(node, process.clone(), "/api".into())) {
                    let _ = reply.send((
                        404,
                        vec![("content-type".into(), "application/json".into())],
                        json!({"error": format!("{process} on {} has not bound /api at its http-server", self.sim.node_id(node))})
                            .to_string()
                            .into_bytes(),
                    ));
                    return;
                }
                let h = self
                    .sim
                    .http_with_headers(node, &process, "POST", "/api", &headers, body);
                self.http.push((h, reply));
            }
            Cmd::WsOpen {
                node,
                process,
                tx,
                reply,
            } => {
                if !self
                    .bound
                    .contains(&(node, process.clone(), "ws:/ws".into()))
                {
                    // Dropping `tx` closes the browser's socket.
                    let _ = reply.send(0);
                    return;
                }
                let channel = self.next_channel;
                self.next_channel += 1;
                self.sim.websocket(
                    node,
                    &process,
                    &HttpServerRequest::WebSocketOpen {
                        path: "/ws".into(),
                        channel_id: channel,
                        source_socket_addr: Some("127.0.0.1:0".into()),
                        forwarded_for: None,
                    },
                    None,
                );
                self.clients.insert((node, process, channel), tx);
                let _ = reply.send(channel);
            }
            Cmd::WsFrame {
                node,
                process,
                channel,
                text,
            } => {
                if self.clients.contains_key(&(node, process.clone(), channel)) {
                    self.sim.websocket(
                        node,
                        &process,
                        &HttpServerRequest::WebSocketPush {
                            channel_id: channel,
                            message_type: WsMessageType::Text,
                        },
                        Some(text.into_bytes()),
                    );
                }
            }
            Cmd::WsClose {
                node,
                process,
                channel,
            } => {
                if self
                    .clients
                    .remove(&(node, process.clone(), channel))
                    .is_some()
                {
                    self.close_in_sim(node, &process, channel);
                }
            }
            Cmd::NetWs { tx } => {
                let _ = tx.try_send(json!({"type": "state", "state": self.state()}).to_string());
                self.net_clients.push(tx);
            }
            Cmd::Control { op, body, reply } => {
                let _ = reply.send(self.control(&op, &body));
            }
        }
    }

    fn close_in_sim(&mut self, node: usize, process: &str, channel: u32) {
        if self.sim.node(node).up {
            self.sim.websocket(
                node,
                process,
                &HttpServerRequest::WebSocketClose(channel),
                None,
            );
        }
    }

    fn after_run(&mut self) {
        // HTTP answers that arrived.
        let mut waiting = Vec::new();
        for (h, reply) in std::mem::take(&mut self.http) {
            match self.sim.outcome(h) {
                None => waiting.push((h, reply)),
                Some(AppOutcome::Response(head)) => {
                    let blob = self.sim.outcome_blob(h).unwrap_or_default().to_vec();
                    let answer = match serde_json::from_slice::<HttpResponse>(head) {
                        Ok(r) => (r.status, r.headers.into_iter().collect(), blob),
                        Err(e) => (
                            502,
                            vec![],
                            format!("the process answered no HTTP response: {e}").into_bytes(),
                        ),
                    };
                    let _ = reply.send(answer);
                }
                Some(other) => {
                    let _ = reply.send((
                        504,
                        vec![("content-type".into(), "application/json".into())],
                        json!({"error": format!("no answer from the process: {other:?}")})
                            .to_string()
                            .into_bytes(),
                    ));
                }
            }
        }
        self.http = waiting;
        // WebSocket frames the processes pushed, and channels they closed.
        let mut dropped = Vec::new();
        for (from, _to, body, blob) in std::mem::take(&mut self.sim.system_messages) {
            let Some(node) = self.sim.node_index(&from.node) else {
                continue;
            };
            let Ok(action) = serde_json::from_slice::<p2p_common::http::HttpServerAction>(&body)
            else {
                continue;
            };
            match action {
                p2p_common::http::HttpServerAction::WebSocketPush { channel_id, .. } => {
                    let key = (node, from.process.process.clone(), channel_id);
                    if let Some(c) = self.clients.get(&key) {
                        let text = String::from_utf8_lossy(blob.as_deref().unwrap_or_default())
                            .into_owned();
                        if c.try_send(text).is_err() {
                            dropped.push(key);
                        }
                    }
                }
                p2p_common::http::HttpServerAction::WebSocketClose(channel_id) => {
                    self.clients
                        .remove(&(node, from.process.process.clone(), channel_id));
                }
                p2p_common::http::HttpServerAction::Bind { path, .. } => {
                    self.bound
                        .insert((node, from.process.process.clone(), path));
                }
                p2p_common::http::HttpServerAction::WebSocketBind { path, .. } => {
                    self.bound
                        .insert((node, from.process.process.clone(), format!("ws:{path}")));
                }
            }
        }
        for key in dropped {
            // Too slow (or gone): drop it, never buffer without bound.
            self.clients.remove(&key);
            self.close_in_sim(key.0, &key.1, key.2);
        }
        // A crashed node's channels are gone with its http-server.
        let down: Vec<_> = self
            .clients
            .keys()
            .filter(|k| !self.sim.node(k.0).up)
            .cloned()
            .collect();
        for k in down {
            self.clients.remove(&k);
        }
        // The network view.
        let seen = std::mem::take(&mut *self.seen.borrow_mut());
        if self.net_clients.is_empty() {
            return;
        }
        let n = seen.len();
        for s in seen.into_iter().take(MAX_NET_FRAMES_PER_TICK) {
            let f = json!({"type": "msg", "at": s.at, "from": s.from, "to": s.to, "process": s.process, "kind": s.kind})
                .to_string();
            self.net_clients.retain(|c| c.try_send(f.clone()).is_ok());
        }
        if n > MAX_NET_FRAMES_PER_TICK {
            self.skipped += (n - MAX_NET_FRAMES_PER_TICK) as u64;
        }
    }

    fn state(&self) -> Value {
        let n = self.sim.len();
        let nodes: Vec<Value> = (0..n)
            .map(|i| {
                let node = self.sim.node(i);
                let applied = self
                    .sim
                    .core::<crate::playground_rm::PlaygroundRm>(i, crate::playground_rm::PROCESS)
                    .map_or(0, |m| m.store.applied);
                json!({"node": node.id.to_string(), "up": node.up, "slow_ms": node.slow_ms, "applied": applied})
            })
            .collect();
        let mut cut = Vec::new();
        for a in 0..n {
            for b in a + 1..n {
                if !self.sim.connected(a, b) {
                    cut.push(json!([
                        self.sim.node_id(a).to_string(),
                        self.sim.node_id(b).to_string()
                    ]));
                }
            }
        }
        json!({
            "now_ms": self.sim.now(),
            "nodes": nodes,
            "cut": cut,
            "loss": self.sim.net.loss,
            "latency_ms": [self.sim.net.latency.min_ms, self.sim.net.latency.max_ms],
            "messages_skipped": self.skipped,
            "processes": PROCESSES,
            "managers": {
                "resources": crate::playground_rm::RESOURCES,
                "refuse": crate::playground_rm::REFUSE,
            },
        })
    }

    /// What only the simulator knows of node `i`'s links: per other node, the messages
    /// between the two (sent, as the simulator counted them, and delivered), and the
    /// messages lost overall. Reachability and breakers are the cores' own answer to
    /// `Health`, through each node's API as on a real node.
    fn health(&self, i: usize) -> Result<Value, (u16, String)> {
        let node = self.sim.node(i);
        if !node.up {
            return Err((
                409,
                format!("{} is down: restart it to see its health", node.id),
            ));
        }
        let delivered = self.delivered.borrow();
        let link = |a: usize, b: usize| {
            let key = format!("{} -> {}", self.sim.node_id(a), self.sim.node_id(b));
            self.sim.stats.per_link.get(&key).map_or(0, |c| c.msgs)
        };
        let peers: Vec<Value> = (0..self.sim.len())
            .filter(|&j| j != i)
            .map(|j| {
                json!({
                    "node": self.sim.node_id(j).to_string(),
                    "messages": {
                        "sent": link(i, j),
                        "received": link(j, i),
                        "delivered_to": delivered.get(&(i, j)).copied().unwrap_or(0),
                        "delivered_from": delivered.get(&(j, i)).copied().unwrap_or(0),
                    },
                })
            })
            .collect();
        Ok(json!({
            "node": node.id.to_string(),
            "now_ms": self.sim.node_now(i).mono,
            "peers": peers,
            "lost": self.sim.stats.lost,
        }))
    }

    fn node_arg(&self, body: &Value) -> Result<usize, (u16, String)> {
        let name = body
            .get("node")
            .and_then(Value::as_str)
            .ok_or((400, "give the node as {\"node\": \"bob.os\"}".to_string()))?;
        let id = p2p_common::NodeId::parse(name)
            .map_err(|e| (400, format!("{name:?} is not a node name: {e}")))?;
        self.sim
            .node_index(&id)
            .ok_or((404, format!("no node {name} in this playground")))
    }

    fn control(&mut self, op: &str, body: &Value) -> Result<Value, (u16, String)> {
        match op {
            "state" => {}
            "crash" => {
                let i = self.node_arg(body)?;
                if !self.sim.node(i).up {
                    return Err((409, format!("{} is already down", self.sim.node_id(i))));
                }
                self.sim.crash(i);
                // Its http-server is gone with it: the processes bind again when restarted.
                self.bound.retain(|b| b.0 != i);
            }
            "restart" => {
                let i = self.node_arg(body)?;
                if self.sim.node(i).up {
                    return Err((409, format!("{} is already up", self.sim.node_id(i))));
                }
                self.sim.restart(i);
                // Its processes bound their paths as they started: route to them at once.
                self.after_run();
            }
            "isolate" => {
                let i = self.node_arg(body)?;
                self.sim.isolate(i);
            }
            "partition" => {
                let groups = body
                    .get("groups")
                    .and_then(Value::as_array)
                    .ok_or((400, "give {\"groups\": [[\"alice.os\"], [\"bob.os\", \"charlie.os\"]]}".to_string()))?;
                let mut idx = Vec::new();
                for g in groups {
                    let names = g
                        .as_array()
                        .ok_or((400, "each group is a list of node names".to_string()))?;
                    let mut group = Vec::new();
                    for n in names {
                        group.push(self.node_arg(&json!({"node": n}))?);
                    }
                    idx.push(group);
                }
                self.sim.partition(&idx);
            }
            "heal" => self.sim.heal(),
            "health" => return self.health(self.node_arg(body)?),
            "net" => {
                if let Some(loss) = body.get("loss") {
                    let loss = loss
                        .as_f64()
                        .filter(|l| (0.0..=0.9).contains(l))
                        .ok_or((400, "loss is a probability from 0 to 0.9".to_string()))?;
                    self.sim.net.loss = loss;
                }
                if let Some(l) = body.get("latency_ms") {
                    let pair = l
                        .as_array()
                        .and_then(|a| Some((a.first()?.as_u64()?, a.get(1)?.as_u64()?)))
                        .filter(|(lo, hi)| lo <= hi && *hi <= 10_000)
                        .ok_or((400, "latency_ms is [min, max] with min ≤ max ≤ 10000".to_string()))?;
                    self.sim.net.latency.min_ms = pair.0;
                    self.sim.net.latency.max_ms = pair.1;
                }
            }
            "slow" => {
                let i = self.node_arg(body)?;
                let ms = body
                    .get("ms")
                    .and_then(Value::as_u64)
                    .filter(|ms| *ms <= 60_000)
                    .ok_or((400, "ms is a delay from 0 to 60000".to_string()))?;
                self.sim.set_slow(i, ms);
            }
            other => {
                return Err((
                    404,
                    format!("no control {other}; controls: crash, restart, isolate, partition, heal, net, slow, health"),
                ))
            }
        }
        Ok(self.state())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lp(nodes: usize) -> Loop {
        Loop::new(&Options {
            nodes,
            port: 0,
            ui_dir: default_ui_dir(),
            seed: 3,
        })
    }

    fn post(lp: &mut Loop, node: usize, process: &str, body: &str) -> HttpAnswer {
        let (reply, mut answer) = oneshot::channel();
        lp.command(Cmd::Http {
            node,
            process: process.into(),
            headers: BTreeMap::from([("content-type".into(), "application/json".into())]),
            body: body.as_bytes().to_vec(),
            reply,
        });
        for _ in 0..100 {
            lp.sim.run_for(100).unwrap();
            lp.after_run();
            if let Ok(a) = answer.try_recv() {
                return a;
            }
        }
        panic!("no answer to {body}");
    }

    #[test]
    fn the_api_of_a_node_goes_through_the_mapping_and_a_down_node_says_so() {
        let mut lp = lp(2);
        let (status, _, body) = post(&mut lp, 1, "sync", r#""Info""#);
        assert_eq!(status, 200);
        assert!(String::from_utf8_lossy(&body).contains(r#""node":"bob.os""#));
        let (status, _, body) = post(&mut lp, 0, "notify", "{oops");
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
        lp.control("crash", &json!({"node": "bob.os"})).unwrap();
        let (status, _, body) = post(&mut lp, 1, "sync", r#""Info""#);
        assert_eq!(status, 503);
        assert!(String::from_utf8_lossy(&body).contains("bob.os is down"));
    }

    /// The status of `tx` on the coordinator (node 0) once it is finished.
    fn finished(lp: &mut Loop, tx: &str) -> Value {
        for _ in 0..100 {
            let (_, _, body) = post(
                lp,
                0,
                "txcoord",
                &json!({"Status": {"tx_id": tx}}).to_string(),
            );
            let v: Value = serde_json::from_slice(&body).unwrap();
            let phase = v["Ok"]["Status"]["phase"].clone();
            if phase == "Committed" || phase == "Aborted" {
                return v["Ok"]["Status"].clone();
            }
            lp.sim.run_for(500).unwrap();
        }
        panic!("{tx} did not finish");
    }

    #[test]
    fn transactions_commit_at_the_playground_managers_and_a_refused_one_aborts() {
        let mut lp = lp(3);
        lp.sim.run_for(3_000).unwrap();
        let start = |lp: &mut Loop, op: &str| {
            let body = json!({"Start": {"participants": [
                {"node": "bob.os", "resource": "stock", "operation": "take 1"},
                {"node": "charlie.os", "resource": "cash", "operation": op},
            ], "timeout_ms": 3000}});
            let (status, _, body) = post(lp, 0, "txcoord", &body.to_string());
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let v: Value = serde_json::from_slice(&body).unwrap();
            v["Ok"]["Started"]["tx_id"].as_str().unwrap().to_string()
        };
        let tx = start(&mut lp, "pay 5");
        let s = finished(&mut lp, &tx);
        assert_eq!(s["phase"], "Committed", "{s}");
        let state = lp.state();
        assert_eq!(state["nodes"][1]["applied"], 1, "{state}");
        assert_eq!(state["nodes"][2]["applied"], 1, "{state}");
        let tx = start(&mut lp, "refuse to pay");
        let s = finished(&mut lp, &tx);
        assert_eq!(s["phase"], "Aborted", "{s}");
        // charlie.os's manager said no; bob.os's applied nothing more.
        let rm = |lp: &Loop, i: usize| {
            lp.sim
                .core::<crate::playground_rm::PlaygroundRm>(i, crate::playground_rm::PROCESS)
                .map(|m| (m.store.applied, m.store.refused))
        };
        assert_eq!(rm(&lp, 2), Some((1, 1)));
        assert_eq!(rm(&lp, 1), Some((1, 0)));
    }

    #[test]
    fn health_through_each_api_follows_an_isolation_and_the_simulator_adds_its_counts() {
        let mut lp = lp(3);
        lp.sim.run_for(30_000).unwrap();
        // What alice.os's `process` says about `peer` in its Health answer.
        let entry = |lp: &mut Loop, process: &str, peer: &str| {
            let (status, _, body) = post(lp, 0, process, r#""Health""#);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
            let v: Value = serde_json::from_slice(&body).unwrap();
            let h = &v["Ok"]["Health"];
            assert_eq!(h["node"], "alice.os", "{v}");
            h["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["node"] == peer)
                .cloned()
                .unwrap_or_else(|| panic!("{process}: no {peer} in {v}"))
        };
        let bob = entry(&mut lp, "presence", "bob.os");
        assert_eq!(bob["status"], "Reachable", "{bob}");
        assert_eq!(bob["breaker"], Value::Null, "presence has no outbox: {bob}");
        assert!(bob["sent"].as_u64().unwrap() > 0, "{bob}");
        assert!(bob["received"].as_u64().unwrap() > 0, "{bob}");
        assert!(bob["srtt_ms"].as_u64().is_some(), "{bob}");
        for process in ["notify", "sync"] {
            let (status, _, body) = post(&mut lp, 0, process, r#""Health""#);
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        }
        let h = lp.control("health", &json!({"node": "alice.os"})).unwrap();
        let sim_bob = h["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"] == "bob.os")
            .cloned()
            .unwrap();
        let m = &sim_bob["messages"];
        for k in ["sent", "received", "delivered_to", "delivered_from"] {
            assert!(m[k].as_u64().unwrap() > 0, "{k}: {h}");
        }
        assert!(m["delivered_to"].as_u64() <= m["sent"].as_u64(), "{h}");
        lp.control("isolate", &json!({"node": "charlie.os"}))
            .unwrap();
        lp.sim.run_for(30_000).unwrap();
        let charlie = entry(&mut lp, "presence", "charlie.os");
        let status = charlie["status"].clone();
        assert!(status == "Unreachable" || status == "Degraded", "{charlie}");
        assert!(
            charlie["consecutive_failures"].as_u64().unwrap() > 0,
            "{charlie}"
        );
        lp.control("crash", &json!({"node": "bob.os"})).unwrap();
        let e = lp
            .control("health", &json!({"node": "bob.os"}))
            .unwrap_err();
        assert_eq!(e.0, 409, "{e:?}");
        assert_eq!(lp.control("health", &Value::Null).unwrap_err().0, 400);
    }

    #[test]
    fn only_what_a_process_bound_is_served_and_a_restart_binds_again() {
        let mut lp = lp(2);
        // Every process bound /api and /ws at start (the host does it for them).
        for p in PROCESSES {
            for path in ["/api", "ws:/ws"] {
                assert!(
                    lp.bound.contains(&(1, p.to_string(), path.to_string())),
                    "{p} {path}"
                );
            }
        }
        lp.control("crash", &json!({"node": "bob.os"})).unwrap();
        assert!(!lp.bound.iter().any(|b| b.0 == 1));
        lp.control("restart", &json!({"node": "bob.os"})).unwrap();
        let (status, _, body) = post(&mut lp, 1, "sync", r#""Info""#);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        // Without the binding, http-server routes nothing to the process.
        lp.bound.retain(|b| !(b.0 == 1 && b.1 == "sync"));
        let (status, _, body) = post(&mut lp, 1, "sync", r#""Info""#);
        assert_eq!(status, 404);
        assert!(String::from_utf8_lossy(&body).contains("has not bound /api"));
    }

    #[test]
    fn only_requests_for_this_playground_from_its_own_origin_pass() {
        let check = |method: Method, path: &str, pairs: &[(&str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(
                    header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            check_request(8090, &method, path, &h).map_err(|e| e.0)
        };
        let host = ("host", "127.0.0.1:8090");
        let json = ("content-type", "application/json");
        let body = ("content-length", "12");
        assert_eq!(check(Method::GET, "/sim/state", &[host]), Ok(()));
        assert_eq!(
            check(Method::GET, "/sim/state", &[("host", "LOCALHOST:8090")]),
            Ok(())
        );
        assert_eq!(check(Method::GET, "/sim/state", &[]), Err(403));
        for bad in [
            "127.0.0.1:8091",
            "127.0.0.1",
            "evil.example:8090",
            "[::1]:8090",
        ] {
            assert_eq!(check(Method::GET, "/", &[("host", bad)]), Err(403), "{bad}");
        }
        let same = ("origin", "http://127.0.0.1:8090");
        assert_eq!(
            check(Method::POST, "/sim/heal", &[host, same, json, body]),
            Ok(())
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://localhost:8090",
            "https://127.0.0.1:8090",
        ] {
            assert_eq!(
                check(
                    Method::POST,
                    "/sim/heal",
                    &[host, ("origin", bad), json, body]
                ),
                Err(403),
                "{bad}"
            );
        }
        // A /sim body must be JSON; an empty one needs no type; a node's API is its own.
        for ct in ["text/plain", "application/x-www-form-urlencoded", ""] {
            let typed = [host, same, ("content-type", ct), body];
            let pairs: &[(&str, &str)] = if ct.is_empty() {
                &[host, same, body]
            } else {
                &typed
            };
            assert_eq!(check(Method::POST, "/sim/crash", pairs), Err(415), "{ct}");
        }
        assert_eq!(
            check(
                Method::POST,
                "/sim/heal",
                &[host, same, ("content-length", "0")]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                Method::POST,
                "/sim/crash",
                &[
                    host,
                    same,
                    ("content-type", "application/json; charset=utf-8"),
                    body
                ]
            ),
            Ok(())
        );
        assert_eq!(
            check(
                Method::POST,
                "/node/alice.os/notify/api",
                &[host, same, ("content-type", "text/plain"), body]
            ),
            Ok(())
        );
    }

    #[test]
    fn bad_controls_get_clear_errors() {
        let mut lp = lp(3);
        let err = |lp: &mut Loop, op: &str, body: Value| lp.control(op, &body).unwrap_err();
        assert_eq!(err(&mut lp, "dance", Value::Null).0, 404);
        assert_eq!(err(&mut lp, "crash", Value::Null).0, 400);
        assert_eq!(err(&mut lp, "crash", json!({"node": "zed.os"})).0, 404);
        assert_eq!(err(&mut lp, "crash", json!({"node": "NOT A NODE"})).0, 400);
        assert_eq!(err(&mut lp, "restart", json!({"node": "bob.os"})).0, 409);
        assert_eq!(err(&mut lp, "net", json!({"loss": 2.0})).0, 400);
        assert_eq!(
            err(&mut lp, "net", json!({"latency_ms": [300, 100]})).0,
            400
        );
        assert_eq!(
            err(&mut lp, "slow", json!({"node": "bob.os", "ms": 999_999})).0,
            400
        );
        assert_eq!(err(&mut lp, "partition", json!({"groups": "x"})).0, 400);
        assert_eq!(
            err(&mut lp, "partition", json!({"groups": [["zed.os"]]})).0,
            404
        );
        // And good ones change the state.
        let s = lp.control("crash", &json!({"node": "charlie.os"})).unwrap();
        assert_eq!(s["nodes"][2]["up"], false);
        assert_eq!(err(&mut lp, "crash", json!({"node": "charlie.os"})).0, 409);
        let s = lp
            .control("partition", &json!({"groups": [["alice.os"], ["bob.os"]]}))
            .unwrap();
        assert!(s["cut"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!(["alice.os", "bob.os"])));
        let s = lp.control("heal", &Value::Null).unwrap();
        assert!(!s["cut"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == &json!(["alice.os", "bob.os"])));
        let s = lp
            .control("net", &json!({"loss": 0.2, "latency_ms": [5, 50]}))
            .unwrap();
        assert_eq!(
            (s["loss"].as_f64(), s["latency_ms"].clone()),
            (Some(0.2), json!([5, 50]))
        );
    }

    #[test]
    fn events_reach_a_browser_socket_and_a_client_that_falls_behind_is_dropped() {
        let mut lp = lp(3);
        // A client that keeps up (we read it) and one whose queue holds a single frame.
        let (fast, mut fast_rx) = mpsc::channel(CLIENT_QUEUE);
        let (slow, _slow_rx) = mpsc::channel(1);
        for tx in [fast, slow] {
            let (reply, _) = oneshot::channel();
            lp.command(Cmd::WsOpen {
                node: 0,
                process: "presence".into(),
                tx,
                reply,
            });
        }
        let (status, _, _) = post(&mut lp, 0, "presence", r#""Subscribe""#);
        assert_eq!(status, 200);
        let mut frames = Vec::new();
        for _ in 0..300 {
            lp.sim.run_for(100).unwrap();
            lp.after_run();
            while let Ok(f) = fast_rx.try_recv() {
                frames.push(f);
            }
        }
        assert!(frames.iter().any(|f| f.contains("Welcome")), "{frames:?}");
        assert!(
            frames
                .iter()
                .any(|f| f.contains("NodeJoined") && f.contains("charlie.os")),
            "{frames:?}"
        );
        // Only the fast client is left.
        assert_eq!(lp.clients.len(), 1);
        assert_eq!(
            lp.sim
                .driver_stats(0, "presence")
                .map(|s| s.dropped_replies),
            Some(0)
        );
    }
}
