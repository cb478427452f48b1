//! The playground's server as a browser (or a hostile web page) meets it: the real
//! `p2p-sim playground` binary on a free port, spoken to over raw HTTP/1.1 and WebSocket
//! frames, and stopped with SIGINT.

use p2p_sim::playground::{MAX_BODY, MAX_WS_MESSAGE, SHUTDOWN_GRACE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Playground {
    child: Child,
    port: u16,
    /// What it printed after its URL.
    out: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Playground {
    /// Started with no UI build (`--ui` pointing nowhere).
    fn start() -> Playground {
        let mut child = Command::new(env!("CARGO_BIN_EXE_p2p-sim"))
            .args(["playground", "--port", "0", "--ui", "/nonexistent/ui-dist"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("p2p-sim starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        let port = line
            .split("http://127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        // Keep reading stdout so the child never blocks on a full pipe.
        let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let keep = printed.clone();
        std::thread::spawn(move || {
            let mut line = String::new();
            while out.read_line(&mut line).unwrap_or(0) > 0 {
                keep.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Playground {
            child,
            port,
            out: printed,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn origin(&self) -> String {
        format!("http://{}", self.host())
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request: (status, body). `headers` are sent as given (Host included).
    fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, String) {
        let mut s = self.connect();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).unwrap();
        // A server may answer (413) before reading a large body, and then close.
        let _ = s.write_all(body);
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer);
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// A same-origin JSON POST, as the page sends it.
    fn post(&self, path: &str, body: &str) -> (u16, String) {
        let (host, origin) = (self.host(), self.origin());
        self.request(
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", &origin),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// A WebSocket upgrade: the status line's code, and the open stream on 101.
    fn upgrade(&self, path: &str, host: &str, origin: &str) -> (u16, TcpStream) {
        let mut s = self.connect();
        let head = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        s.write_all(head.as_bytes()).unwrap();
        // Read the head byte by byte: nothing of the frames after it is consumed.
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n\r\n") {
            if s.read(&mut b).unwrap_or(0) == 0 {
                break;
            }
            got.push(b[0]);
        }
        let text = String::from_utf8_lossy(&got);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, s)
    }

    fn sigint(&self) {
        let ok = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -INT");
    }

    /// The exit status, if the process ends within `limit`.
    fn wait_for_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Holds a call that cannot be answered for 30 s (a Join of a document on an isolated
    /// node), on another thread; returns once the playground has it.
    fn hold_a_call(&self) {
        assert_eq!(self.post("/sim/isolate", r#"{"node":"charlie.os"}"#).0, 200);
        let (host, origin) = (self.host(), self.origin());
        let mut s = self.connect();
        let body = r#"{"Join":{"doc":"charlie.os/x"}}"#;
        let req = format!("POST /node/bob.os/sync/api HTTP/1.1\r\nHost: {host}\r\nOrigin: {origin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        s.write_all(req.as_bytes()).unwrap();
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        // The call is in the simulator once a later one on the same path is answered.
        assert_eq!(self.post("/node/bob.os/sync/api", r#""Info""#).0, 200);
    }
}

impl Drop for Playground {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_json_error(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(|s| !s.is_empty()))
        .unwrap_or(false)
}

fn charlie_up(p: &Playground) -> bool {
    let host = p.host();
    let (status, body) = p.request("GET", "/sim/state", &[("Host", &host)], b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["nodes"][2]["up"].as_bool().unwrap()
}

#[test]
fn cross_site_and_rebound_requests_are_refused_and_the_page_own_ones_served() {
    let p = Playground::start();
    let (host, origin) = (p.host(), p.origin());
    let crash = br#"{"node":"charlie.os"}"#;
    // A cross-site "simple" POST (no preflight), a DNS-rebinding page (its own name as
    // Host), and a cross-site JSON POST: none reaches the control.
    let cases: [(&str, &[(&str, &str)], u16); 5] = [
        (
            "cross-site text/plain",
            &[
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Content-Type", "text/plain"),
            ],
            403,
        ),
        (
            "rebinding",
            &[
                ("Host", "evil.example:8090"),
                ("Origin", "http://evil.example:8090"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            "rebinding, no origin",
            &[
                ("Host", "evil.example"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            "cross-site json",
            &[
                ("Host", &host),
                ("Origin", "null"),
                ("Content-Type", "application/json"),
            ],
            403,
        ),
        (
            "same host, text/plain",
            &[
                ("Host", &host),
                ("Content-Type", "text/plain;charset=UTF-8"),
            ],
            415,
        ),
    ];
    for (name, headers, want) in cases {
        let (status, body) = p.request("POST", "/sim/crash", headers, crash);
        assert_eq!(status, want, "{name}: {body}");
        assert!(is_json_error(&body), "{name}: {body}");
        assert!(charlie_up(&p), "{name} crashed charlie");
    }
    let (status, body) = p.request("POST", "/sim/crash", &[("Host", &host)], crash);
    assert_eq!(status, 415, "no type: {body}");
    let (status, body) = p.request("GET", "/sim/state", &[("Host", "evil.example")], b"");
    assert_eq!((status, is_json_error(&body)), (403, true), "{body}");
    let (status, body) = p.request("GET", "/sim/state", &[], b"");
    assert_eq!(status, 403, "no Host: {body}");
    // A node's API: the node's own mapping refuses a text/plain body (nothing created).
    let (status, body) = p.request(
        "POST",
        "/node/alice.os/notify/api",
        &[("Host", &host), ("Content-Type", "text/plain")],
        br#"{"SetTopic":{"topic":"csrf","policy":"Open"}}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("application/json"), "{body}");
    assert!(!p
        .post("/node/alice.os/notify/api", r#""ListTopics""#)
        .1
        .contains("csrf"));
    // The page's own requests, by either loopback name.
    assert_eq!(p.post("/sim/heal", "").0, 200);
    let local = format!("localhost:{}", p.port);
    let local_origin = format!("http://{local}");
    let (status, body) = p.request(
        "POST",
        "/sim/slow",
        &[
            ("Host", &local),
            ("Origin", &local_origin),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        br#"{"node":"bob.os","ms":0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let (status, body) = p.post("/sim/crash", r#"{"node":"charlie.os"}"#);
    assert_eq!(status, 200, "{body}");
    assert!(!charlie_up(&p));
    // WebSocket upgrades: another origin or host is refused before the upgrade.
    let ws = "/node/alice.os/notify/ws";
    assert_eq!(p.upgrade(ws, &host, "http://evil.example").0, 403);
    assert_eq!(p.upgrade(ws, "evil.example", "http://evil.example").0, 403);
    assert_eq!(p.upgrade("/sim/ws", &host, "http://evil.example").0, 403);
    assert_eq!(p.upgrade(ws, &host, &origin).0, 101);
    assert_eq!(p.upgrade("/sim/ws", &host, &origin).0, 101);
}

/// A masked client text frame of `len` bytes (mask 0: the payload as is).
fn text_frame(len: usize) -> Vec<u8> {
    let mut f = vec![0x81, 0x80 | 127];
    f.extend_from_slice(&(len as u64).to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend(std::iter::repeat_n(b'a', len));
    f
}

/// Whether the server ends the socket (a close frame or EOF) within 20 s.
fn closed_by_server(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => {
                // A close frame (opcode 8) from the server.
                if buf[..n].first().is_some_and(|b| b & 0x0f == 8) {
                    return true;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn bodies_and_browser_frames_over_the_limits_get_clear_answers() {
    let p = Playground::start();
    let (host, origin) = (p.host(), p.origin());
    let big = vec![b' '; MAX_BODY + 1];
    for path in ["/sim/crash", "/node/alice.os/sync/api"] {
        let (status, body) = p.request(
            "POST",
            path,
            &[
                ("Host", &host),
                ("Origin", &origin),
                ("Content-Type", "application/json"),
            ],
            &big,
        );
        assert_eq!(status, 413, "{path}: {body}");
        assert!(is_json_error(&body), "{path}: {body}");
    }
    // A frame at the limit is taken (and ignored: the socket stays open); one over it ends
    // the socket.
    let (status, mut s) = p.upgrade("/node/alice.os/notify/ws", &host, &origin);
    assert_eq!(status, 101);
    s.write_all(&text_frame(MAX_WS_MESSAGE)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    let r = s.read(&mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut),
        "a frame at the limit ended the socket: {r:?}"
    );
    s.write_all(&text_frame(MAX_WS_MESSAGE + 1)).unwrap();
    assert!(closed_by_server(&mut s), "a frame over the limit was taken");
    // Without a UI build the page's path explains how to build it.
    let (status, body) = p.request(
        "GET",
        "/presence:p2p-patterns:p2p-patterns.os/",
        &[("Host", &host)],
        b"",
    );
    assert_eq!(status, 404);
    assert!(body.contains("npm ci && npm run build"), "{body}");
}

#[test]
fn ctrl_c_stops_within_the_grace_even_with_a_call_in_flight() {
    let mut p = Playground::start();
    p.hold_a_call();
    p.sigint();
    // The call would hold the server 30 s; the grace is 2 s. The bound is loose (a loaded
    // machine), far below the call's 30 s.
    let status = p
        .wait_for_exit(SHUTDOWN_GRACE + Duration::from_secs(12))
        .expect("the playground still runs long after Ctrl-C");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_second_ctrl_c_exits_at_once() {
    let mut p = Playground::start();
    p.hold_a_call();
    p.sigint();
    // The first one is taken (it said so) before the second is sent.
    let t0 = Instant::now();
    while !p.out.lock().unwrap().contains("stopping") {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    p.sigint();
    let status = p
        .wait_for_exit(Duration::from_secs(14))
        .expect("the playground still runs after a second Ctrl-C");
    // 130: the second Ctrl-C's own exit, not the graceful stop's 0.
    assert_eq!(status.code(), Some(130), "{status:?}");
}
