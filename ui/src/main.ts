// The p2p-patterns page. Every call is a local-API request of one service, POSTed as JSON to
// that service's `/api` (p2p_common::web); events come on its `/ws`. On a node the page is
// served under presence's path and talks to this node; in the playground it talks to the
// node picked in the header, and the Network tab drives the simulator (`/sim/...`).
import "./style.css";

const PKG = ":p2p-patterns:p2p-patterns.os";
// The playground answers /sim/state; a node does not (set in main()).
let playground = false;

type Json = any;

// Query flags: `?node=bob.os` opens the playground on that node; `?poll=0` turns off the
// 2 s refresh, so that only the WebSocket events update the page (the browser tests use it
// to prove live updates).
const query = new URLSearchParams(location.search);

let currentNode = "";
/** Our node's name (the picked one in the playground; on a node, presence's Info says). */
let ourNode = "";
let nodes: string[] = [];

const $ = (sel: string) => document.querySelector(sel) as HTMLElement;
function el(tag: string, attrs: Record<string, string> = {}, ...children: (Node | string)[]) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  for (const c of children) e.append(c);
  return e;
}

function apiUrl(process: string): string {
  return playground ? `/node/${currentNode}/${process}/api` : `/${process}${PKG}/api`;
}
function wsUrl(process: string): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const path = playground ? `/node/${currentNode}/${process}/ws` : `/${process}${PKG}/ws`;
  return `${proto}//${location.host}${path}`;
}

// ----- errors -----

function showError(where: string, e: unknown) {
  const box = $("#error");
  box.hidden = false;
  box.textContent = `${where}: ${e instanceof Error ? e.message : String(e)}`;
}
function clearError() {
  $("#error").hidden = true;
}

/** One local-API call; resolves with the `Ok` value, rejects with the service's message.
 * Bodies are typed (JSON, or octet-stream for a blob): the API refuses untyped ones, which is
 * what keeps other sites' pages from posting to it. */
async function api(process: string, request: Json, blob?: string): Promise<Json> {
  const init: RequestInit = { method: "POST", headers: { "Content-Type": "application/json" } };
  if (blob !== undefined) {
    init.headers = { "Content-Type": "application/octet-stream", "x-api-request": JSON.stringify(request) };
    init.body = blob;
  } else {
    init.body = JSON.stringify(request);
  }
  let res: Response;
  try {
    res = await fetch(apiUrl(process), init);
  } catch (e) {
    throw new Error(`${process} did not answer (${e})`);
  }
  const text = await res.text();
  let v: Json;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error(`${process} answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  if (v && v.Err) throw new Error(`${v.Err.code}: ${v.Err.message}`);
  if (v && v.error) throw new Error(v.error);
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return v.Ok;
}

/** Run `f`; show its error in the banner under `where`. */
async function guarded(where: string, f: () => Promise<void>) {
  try {
    await f();
    clearError();
  } catch (e) {
    showError(where, e);
  }
}

// ----- WebSockets: one per service of the current node -----

type Handler = (frame: Json) => void;
const handlers: Record<string, Handler[]> = {};
const PROCESSES = ["presence", "sync", "notify", "txcoord"];
function on(process: string, h: Handler) {
  (handlers[process] ||= []).push(h);
}

/** The subscriptions this page made, per node and process (request JSON by its text), to
 * make again when that process's socket comes back (a restarted node may have lost them). */
const subscriptions = new Map<string, Map<string, Set<string>>>();
async function subscribe(process: string, request: Json): Promise<Json> {
  const r = await api(process, request);
  let byProcess = subscriptions.get(currentNode);
  if (!byProcess) subscriptions.set(currentNode, (byProcess = new Map()));
  let set = byProcess.get(process);
  if (!set) byProcess.set(process, (set = new Set()));
  set.add(JSON.stringify(request));
  // Bounded: the oldest go first.
  while (set.size > 50) set.delete(set.values().next().value!);
  return r;
}
async function resubscribe(process: string) {
  for (const r of subscriptions.get(currentNode)?.get(process) ?? []) {
    await api(process, JSON.parse(r)).catch((e) => showError(`Subscribe again (${process})`, e));
  }
}

/** Sockets that are down, with why: shown in the live banner until they are back. */
const lost = new Map<string, string>();
function showLost() {
  const box = $("#live");
  box.hidden = lost.size === 0;
  box.textContent = [...lost].map(([p, why]) => `Live updates lost for ${p} (${why}); reconnecting…`).join(" ");
}

/** Reconnect delays: doubling from 0.5 s to at most 15 s, each drawn in [½, 1] of it. */
const RECONNECT_MIN_MS = 500;
const RECONNECT_MAX_MS = 15_000;
function backoff(attempt: number): number {
  const cap = Math.min(RECONNECT_MAX_MS, RECONNECT_MIN_MS * 2 ** attempt);
  return cap * (0.5 + Math.random() / 2);
}

/** A socket that comes back: on close it reconnects after a backoff while `alive()`, and
 * `reopened` runs when it is open again after a loss. A frame `{"error"}` without an event
 * (the process refused us: too many clients) is the reason shown. */
function liveSocket(name: string, url: () => string, onFrame: (f: Json) => void, alive: () => boolean, reopened: () => void): WebSocket {
  let attempt = 0;
  let current: WebSocket;
  const open = () => {
    const ws = new WebSocket(url());
    current = ws;
    let why = "";
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      if (lost.has(name)) {
        lost.delete(name);
        showLost();
        reopened();
      }
    };
    ws.onmessage = (m) => {
      let f: Json;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      if (f && typeof f.error === "string" && f.event === undefined) {
        why = f.error;
        return;
      }
      onFrame(f);
    };
    ws.onclose = () => {
      if (!alive() || current !== ws) return;
      // A socket that stayed up a while starts the backoff again from the shortest delay.
      if (openedAt && Date.now() - openedAt > 10_000) attempt = 0;
      lost.set(name, why || (openedAt ? "connection closed" : "cannot connect"));
      showLost();
      setTimeout(() => alive() && open(), backoff(attempt++));
    };
  };
  open();
  return current!;
}

let socketGeneration = 0;
let sockets: WebSocket[] = [];
function connectSockets() {
  const gen = ++socketGeneration;
  for (const s of sockets) s.close();
  sockets = [];
  for (const p of PROCESSES) lost.delete(p);
  showLost();
  for (const p of PROCESSES) {
    sockets.push(
      liveSocket(p, () => wsUrl(p), (f) => {
        for (const h of handlers[p] || []) h(f);
      }, () => gen === socketGeneration, () => {
        // Back: subscribe again and catch up on what the events missed.
        resubscribe(p).then(() => refreshers.forEach((r) => r()));
      }),
    );
  }
}

// ----- tabs -----

interface Tab {
  id: string;
  title: string;
  render: (root: HTMLElement) => void;
  playgroundOnly?: boolean;
}
const tabs: Tab[] = [];
let active = "nodes";
let refreshers: (() => void)[] = [];

function showTab(id: string) {
  active = id;
  for (const b of document.querySelectorAll("#tabs button")) {
    b.setAttribute("aria-selected", String(b.getAttribute("data-tab") === id));
  }
  const root = $("#view");
  root.innerHTML = "";
  refreshers = [];
  tabs.find((t) => t.id === id)!.render(root);
}

function form(id: string, fields: [string, string, string?][], button: string, submit: (v: Record<string, string>) => Promise<void>, where: string) {
  const f = el("form", { "data-testid": id, class: "row" });
  for (const [name, label, value] of fields) {
    f.append(el("label", {}, label, el("input", { name, value: value ?? "", "data-testid": `${id}-${name}` })));
  }
  f.append(el("button", { type: "submit", "data-testid": `${id}-submit` }, button));
  f.addEventListener("submit", (e) => {
    e.preventDefault();
    const v: Record<string, string> = {};
    for (const [name] of fields) v[name] = (f.querySelector(`[name=${name}]`) as HTMLInputElement).value.trim();
    guarded(where, () => submit(v));
  });
  return f;
}

const list = (s: string) => s.split(/[\s,]+/).filter((x) => x);

// ----- Nodes (presence) -----

const presenceLog: string[] = [];
on("presence", (f) => {
  const e = f.event?.PresenceEvent;
  if (e) presenceLog.unshift(`${new Date().toLocaleTimeString()} ${e.kind} ${e.node} (incarnation ${e.incarnation})`);
  presenceLog.splice(30);
  if (active === "nodes") refreshers.forEach((r) => r());
});

function ago(ms: number): string {
  if (!ms) return "—";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 2 ? "just now" : `${s} s ago`;
}

tabs.push({
  id: "nodes",
  title: "Nodes",
  render(root) {
    const table = el("table", { "data-testid": "members" });
    const log = el("ul", { class: "log", "data-testid": "presence-log" });
    // Our own info as presence has it: the form shows it, and a change keeps the metadata
    // (which the form does not edit).
    let ownInfo: Json = null;
    let infoShown = false;
    const infoForm = form("setinfo", [["app_version", "app version", ""], ["capabilities", "capabilities", ""]], "Publish", async (v) => {
      const metadata = ownInfo?.metadata ?? [];
      await api("presence", { SetInfo: { app_version: v.app_version, capabilities: list(v.capabilities), metadata } });
      infoShown = false;
      refresh();
    }, "SetInfo");
    let infoEdited = false;
    infoForm.addEventListener("input", () => (infoEdited = true));
    infoForm.addEventListener("submit", () => (infoEdited = false));
    root.append(
      el("h2", {}, "Members as ", el("span", { "data-testid": "viewer" }, currentNode || "this node"), " sees them"),
      table,
      el("h3", {}, "Join through a bootstrap node"),
      form("join", [["bootstrap", "bootstrap nodes", nodes[0] ?? ""]], "Join", async (v) => {
        await api("presence", { Join: { bootstrap: list(v.bootstrap) } });
      }, "Join"),
      el("h3", {}, "Our own info"),
      infoForm,
      el("h3", {}, "Events"),
      log,
    );
    const refresh = () =>
      guarded("ListNodes", async () => {
        const r = await api("presence", { ListNodes: {} });
        table.innerHTML = "";
        table.append(el("tr", {}, ...["node", "status", "last seen", el("abbr", { title: "incarnation" }, "inc."), "capabilities"].map((h) => el("th", {}, h))));
        const self = r.Nodes.nodes.find((m: Json) => m.is_self);
        if (self) {
          ownInfo = self.info;
          if (!infoShown && !infoEdited) {
            (infoForm.querySelector("[name=app_version]") as HTMLInputElement).value = self.info.app_version ?? "";
            (infoForm.querySelector("[name=capabilities]") as HTMLInputElement).value = (self.info.capabilities ?? []).join(", ");
            infoShown = true;
          }
        }
        for (const m of r.Nodes.nodes) {
          const n = m.info.node_id;
          table.append(
            el("tr", { "data-node": n },
              el("td", {}, n + (m.is_self ? " (us)" : "")),
              el("td", { class: `status ${m.status}`, "data-testid": `status-${n}` }, m.status),
              el("td", {}, m.is_self ? "—" : ago(m.info.last_seen)),
              el("td", {}, String(m.incarnation)),
              el("td", {}, m.info.capabilities.join(", ") || "—"),
            ),
          );
        }
        log.innerHTML = "";
        for (const l of presenceLog) log.append(el("li", {}, l));
      });
    refreshers.push(refresh);
    refresh();
  },
});

// ----- Documents (sync) -----

let openDoc = "";
let shownVersion: Json = [];
let opSeq = 0;
on("sync", (f) => {
  if (f.event?.Changed && f.event.Changed.doc === openDoc && active === "docs") refreshers.forEach((r) => r());
  if (f.event?.AwarenessChanged && f.event.AwarenessChanged.doc === openDoc && active === "docs") awarenessChanged();
});
/** Set by the Documents tab while it shows: fetch and draw the other carets again. */
let awarenessChanged: () => void = () => {};

// ----- remote carets and selections (sync's awareness) -----

const CARET_COLORS = ["#d93025", "#1a73e8", "#188038", "#e37400", "#9334e6", "#007b83", "#c5221f", "#5f6368"];
function colorOf(node: string): string {
  let h = 0;
  for (const c of node) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return CARET_COLORS[h % CARET_COLORS.length];
}
/** A peer's colour: the one its page chose (awareness state `color`, which is the remote
 * app's data: taken only as `#rrggbb`), else one from its name. */
function peerColor(p: Json): string {
  const c = p.state?.find?.((e: Json) => e.key === "color")?.value;
  return typeof c === "string" && /^#[0-9a-fA-F]{6}$/.test(c) ? c : colorOf(String(p.node));
}
/** A peer's label: its state `name` as text, else its node. */
function peerName(p: Json): string {
  const n = p.state?.find?.((e: Json) => e.key === "name")?.value;
  return typeof n === "string" && n ? n.slice(0, 64) : String(p.node);
}
/** Draw each peer's caret (a bar with its name) and selection (its colour, faint) over the
 * editor: `layer` mirrors the textarea's text and box, transparent, at the same scroll. */
function drawCarets(layer: HTMLElement, editor: HTMLTextAreaElement, peers: Json[]) {
  const cs = getComputedStyle(editor);
  for (const k of ["fontFamily", "fontSize", "fontWeight", "lineHeight", "letterSpacing", "paddingTop", "paddingRight", "paddingBottom", "paddingLeft", "borderTopWidth", "borderRightWidth", "borderBottomWidth", "borderLeftWidth", "tabSize"] as const) {
    (layer.style as any)[k] = (cs as any)[k];
  }
  const text = editor.value;
  const clamp = (n: number) => Math.max(0, Math.min(text.length, n));
  const shown = peers.filter((p) => p.cursor);
  const cuts = new Set([0, text.length]);
  for (const p of shown) {
    cuts.add(clamp(p.cursor.anchor));
    cuts.add(clamp(p.cursor.head));
  }
  const points = [...cuts].sort((a, b) => a - b);
  layer.innerHTML = "";
  const caretsAt = (pos: number) => {
    for (const p of shown.filter((p) => clamp(p.cursor.head) === pos)) {
      const color = peerColor(p);
      const label = el("span", { class: "rlabel" }, peerName(p));
      label.style.setProperty("background-color", color);
      const caret = el("span", { class: "rcaret", "data-testid": `remote-caret-${p.node}`, "data-pos": String(pos) }, label);
      caret.style.setProperty("border-color", color);
      layer.append(caret);
    }
  };
  for (let i = 0; i < points.length - 1; i++) {
    const [a, b] = [points[i], points[i + 1]];
    caretsAt(a);
    const covering = shown.find((p) => {
      const lo = clamp(Math.min(p.cursor.anchor, p.cursor.head)), hi = clamp(Math.max(p.cursor.anchor, p.cursor.head));
      return lo <= a && b <= hi && lo < hi;
    });
    const seg = text.slice(a, b);
    if (covering) {
      const mark = el("mark", { class: "rsel", "data-testid": `remote-selection-${covering.node}` }, seg);
      mark.style.setProperty("background-color", `${peerColor(covering)}33`);
      layer.append(mark);
    } else {
      layer.append(seg);
    }
  }
  if (text.length > 0) caretsAt(text.length);
  else caretsAt(0);
  // A trailing newline needs a character after it to take its line.
  layer.append("\u200b");
  layer.scrollTop = editor.scrollTop;
}

/** A field value typed in the page: true/false, null, an integer, a number, else text. */
function parseValue(v: string): Json {
  if (v === "true" || v === "false") return { Bool: v === "true" };
  if (v === "null") return "Null";
  if (/^-?\d+$/.test(v)) {
    const n = Number(v);
    if (Number.isSafeInteger(n)) return { Int: n };
  }
  if (v !== "" && /^-?[\d.]+(e[+-]?\d+)?$/i.test(v) && Number.isFinite(Number(v))) return { Float: Number(v) };
  return { Str: v };
}
function showValue(v: Json): string {
  if (v === "Null" || v == null) return "null";
  const [k, x] = Object.entries(v)[0] as [string, Json];
  return k === "Str" ? JSON.stringify(x) : String(x);
}

/** The splice turning `a` into `b`: [pos, deleted, inserted] in code points. */
function splice(a: string, b: string): [number, number, string] {
  const x = Array.from(a), y = Array.from(b);
  let p = 0;
  while (p < x.length && p < y.length && x[p] === y[p]) p++;
  let s = 0;
  while (s < x.length - p && s < y.length - p && x[x.length - 1 - s] === y[y.length - 1 - s]) s++;
  return [p, x.length - p - s, y.slice(p, y.length - s).join("")];
}

tabs.push({
  id: "docs",
  title: "Documents",
  render(root) {
    const docs = el("ul", { "data-testid": "docs" });
    const editor = el("textarea", { "data-testid": "editor", rows: "8", placeholder: "open a document" }) as HTMLTextAreaElement;
    const carets = el("div", { class: "rlayer", "data-testid": "remote-carets", "aria-hidden": "true" });
    const editorBox = el("div", { class: "editor-box" }, editor, carets);
    const awarenessError = el("p", { class: "inline-error", "data-testid": "awareness-error" });
    awarenessError.hidden = true;
    const awareFail = (e: unknown) => {
      awarenessError.hidden = false;
      awarenessError.textContent = `Awareness: ${e instanceof Error ? e.message : String(e)}`;
    };
    // Others' carets: fetched on their AwarenessChanged events and every refresh (entries
    // expire 30 s after their app last set them), drawn over the editor.
    let remote: Json[] = [];
    const readAwareness = async () => {
      if (!openDoc) return;
      const doc = openDoc;
      try {
        const r = await api("sync", { GetAwareness: { doc, utf16: true } });
        if (doc !== openDoc) return;
        awarenessError.hidden = true;
        remote = r.Awareness.peers.filter((p: Json) => p.node !== ourNode);
        drawCarets(carets, editor, remote);
      } catch (e) {
        awareFail(e);
      }
    };
    let awarenessQueued = false;
    awarenessChanged = () => {
      if (awarenessQueued) return;
      awarenessQueued = true;
      setTimeout(() => {
        awarenessQueued = false;
        readAwareness();
      }, 50);
    };
    // Ours: the caret or selection, throttled (one SetAwareness per 150 ms at most), and
    // renewed every 10 s while the document is open so that it does not expire.
    let lastSent = "";
    let lastSentAt = 0;
    let sendQueued = false;
    const sendAwareness = (renew: boolean) => {
      if (!openDoc) return;
      const back = editor.selectionDirection === "backward";
      const anchor = back ? editor.selectionEnd : editor.selectionStart;
      const head = back ? editor.selectionStart : editor.selectionEnd;
      const key = `${openDoc} ${anchor} ${head}`;
      if (key === lastSent && !renew) return;
      lastSent = key;
      lastSentAt = Date.now();
      const state = [{ key: "color", value: colorOf(ourNode) }, { key: "name", value: ourNode }];
      api("sync", { SetAwareness: { doc: openDoc, cursor: { anchor, head }, state, utf16: true } }).then(() => {
        awarenessError.hidden = true;
        carets.setAttribute("data-sent", key);
      }, awareFail);
    };
    const caretMoved = () => {
      if (sendQueued) return;
      sendQueued = true;
      setTimeout(() => {
        sendQueued = false;
        sendAwareness(false);
      }, 150);
    };
    for (const ev of ["select", "keyup", "click", "focus", "input"]) editor.addEventListener(ev, caretMoved);
    editor.addEventListener("scroll", () => (carets.scrollTop = editor.scrollTop));
    editor.addEventListener("input", () => drawCarets(carets, editor, remote));
    const renewAwareness = () => {
      if (lastSent && Date.now() - lastSentAt > 10_000) sendAwareness(true);
    };
    const title = el("h3", { "data-testid": "doc-title" }, "no document open");
    const items = el("table", { "data-testid": "items" });
    const peers = el("table", { "data-testid": "peers" });
    const peersError = el("p", { class: "inline-error", "data-testid": "peers-error" });
    peersError.hidden = true;
    const showItems = (c: Json) => {
      items.innerHTML = "";
      items.append(el("tr", {}, ...["item", "field", "value"].map((h) => el("th", {}, h))));
      for (const it of c.items) for (const f of it.fields) {
        items.append(el("tr", {}, el("td", {}, it.item_id), el("td", {}, f.field), el("td", { "data-testid": `value-${it.item_id}-${f.field}` }, showValue(f.value))));
      }
      if (!c.items.length) items.append(el("tr", {}, el("td", { colspan: "3" }, "no items yet")));
    };
    // Each other holder of the document against our copy (sync's Peers); a failure shows
    // here, not in the banner, as this runs on every refresh.
    const readPeers = async () => {
      if (!openDoc) return;
      try {
        const r = await api("sync", { Peers: { doc: openDoc } });
        peersError.hidden = true;
        peers.innerHTML = "";
        peers.append(el("tr", {}, el("th", {}, "peer"), el("th", {}, "sync state")));
        const label: Record<string, string> = { InSync: "in sync", Behind: "behind (lacks our changes)", Ahead: "ahead (has changes we lack)", Diverged: "diverged (each lacks some)", Unknown: "unknown (not heard from yet)", Unreachable: "unreachable" };
        for (const p of r.Peers.peers) {
          peers.append(el("tr", {}, el("td", {}, p.node), el("td", { "data-testid": `peer-${p.node}`, class: `sync ${p.state}` }, label[p.state] ?? p.state)));
        }
        if (!r.Peers.peers.length) peers.append(el("tr", {}, el("td", { colspan: "2" }, "no other node holds it yet")));
      } catch (e) {
        peersError.hidden = false;
        peersError.textContent = `Peers: ${e instanceof Error ? e.message : String(e)}`;
      }
    };
    let text = "";
    const openIt = (doc: string) =>
      guarded("Open", async () => {
        const was = lastSent.split(" ")[0];
        if (was && was !== doc) {
          // Our caret leaves the document we were in.
          api("sync", { SetAwareness: { doc: was, cursor: null, state: null, utf16: true } }).catch(awareFail);
          lastSent = "";
        }
        openDoc = doc;
        await subscribe("sync", { Subscribe: { doc } });
        title.textContent = doc;
        await read();
        readPeers();
        readAwareness();
      });
    const read = async () => {
      if (!openDoc) return;
      if (inFlight > 0) return;
      const typed = keystrokes;
      const r = await api("sync", { Read: { doc: openDoc } });
      showItems(r.Content);
      // A read answered after the user typed may predate that edit (the two calls race):
      // showing it would take the keystrokes back out of the editor.
      if (typed !== keystrokes || inFlight > 0 || editor.value !== text) return;
      shownVersion = r.Content.version;
      // Remote edits show unless the user has typed something not yet sent.
      if (inFlight === 0 && editor.value === text) {
        text = r.Content.text;
        editor.value = text;
        drawCarets(carets, editor, remote);
      }
    };
    // Edits go one at a time, each the splice from what the service last took to what the
    // editor shows now, at the version that text had.
    let chain = Promise.resolve();
    let inFlight = 0;
    let keystrokes = 0;
    const sendEdit = () =>
      guarded("Edit", async () => {
        const [pos, del, ins] = splice(text, editor.value);
        const ops: Json[] = [];
        if (del) ops.push({ Delete: { pos, len: del } });
        if (ins) ops.push({ Insert: { pos, text: ins } });
        if (!ops.length || !openDoc) return;
        const next = editor.value;
        const r = await api("sync", { Edit: { doc: openDoc, op_id: `ui-${Date.now()}-${opSeq++}`, ops, at: shownVersion } });
        text = next;
        shownVersion = r.Edited.version;
      });
    editor.addEventListener("input", () => {
      keystrokes++;
      inFlight++;
      chain = chain.then(sendEdit).finally(() => inFlight--);
    });
    const refreshList = () =>
      guarded("List", async () => {
        const r = await api("sync", "List");
        docs.innerHTML = "";
        for (const d of r.Docs.docs) {
          const b = el("button", { "data-testid": `open-${d.doc}` }, `${d.doc}${d.joined ? "" : " (not joined)"}`);
          b.onclick = () => openIt(d.doc);
          docs.append(el("li", {}, b, ` ${d.members.map((m: Json) => `${m.node}:${m.role}`).join(", ")}`));
        }
      });
    root.append(
      el("h2", {}, "Documents"),
      docs,
      form("create", [["name", "name", "notes"], ["writers", "writers (nodes)", nodes.filter((n) => n !== currentNode).join(", ")]], "Create", async (v) => {
        const r = await api("sync", { Create: { name: v.name, members: list(v.writers).map((node) => ({ node, role: "Writer" })) } });
        refreshList();
        await openIt(r.Created.doc);
      }, "Create"),
      form("joindoc", [["doc", "document", nodes[0] ? `${nodes[0]}/notes` : ""]], "Join", async (v) => {
        await api("sync", { Join: { doc: v.doc } });
        refreshList();
        await openIt(v.doc);
      }, "Join"),
      form("share", [["node", "share the open document with", ""]], "Share", async (v) => {
        if (!openDoc) throw new Error("open a document first");
        await api("sync", { SetMember: { doc: openDoc, node: v.node, role: "Writer" } });
        refreshList();
      }, "Share"),
      title,
      editorBox,
      awarenessError,
      el("h3", {}, "Fields"),
      items,
      form("field", [["item_id", "item", "task-1"], ["field", "field", "done"], ["value", "value (true, false, null, a number or text)", "false"]], "Set field", async (v) => {
        if (!openDoc) throw new Error("open a document first");
        if (!v.item_id || !v.field) throw new Error("give an item and a field");
        await api("sync", { Edit: { doc: openDoc, op_id: `ui-${Date.now()}-${opSeq++}`, ops: [{ Update: { item_id: v.item_id, field: v.field, value: parseValue(v.value) } }] } });
        await read();
      }, "Set field"),
      el("h3", {}, "Sync state per peer"),
      peers,
      peersError,
    );
    refreshers.push(() => guarded("Read", read), readPeers, readAwareness, renewAwareness);
    refreshList();
    if (openDoc) openIt(openDoc);
  },
});

// ----- Notifications (notify) -----

const feed: string[] = [];
on("notify", (f) => {
  const n = f.event?.HandleNotification;
  const lost = f.event?.Lost;
  if (n) feed.unshift(`${n.publisher}/${n.topic} #${n.seq}: ${f.blob_text ?? `(${f.blob_bytes} bytes)`}`);
  if (lost) feed.unshift(`${lost.publisher}/${lost.topic}: lost ${lost.range.from}..${lost.range.to}`);
  feed.splice(50);
  if (active === "notify") refreshers.forEach((r) => r());
});

tabs.push({
  id: "notify",
  title: "Notifications",
  render(root) {
    const topics = el("ul", { "data-testid": "topics" });
    const delivery = el("div", { "data-testid": "delivery" });
    const subs = el("table", { "data-testid": "subscriptions" });
    const dups = el("p", { "data-testid": "dups" });
    const list_ = el("ul", { class: "log", "data-testid": "feed" });
    const refresh = () =>
      guarded("ListTopics", async () => {
        const [r, st] = await Promise.all([api("notify", "ListTopics"), api("notify", "Stats")]);
        const stats = st.Stats;
        topics.innerHTML = "";
        for (const t of r.Topics.topics) topics.append(el("li", {}, `${t.topic} (${JSON.stringify(t.policy)}), last #${t.last_seq}, ${t.subscriber_nodes} subscriber node(s)`));
        // Publisher side: per topic of ours, per subscriber node. Duplicates are suppressed
        // by the subscriber's node, which counts them over all its topics: in the
        // playground the page asks that node; on a node only our own count is known.
        const subscriberNodes = new Set<string>();
        for (const t of stats.topics) for (const s of t.subscribers) subscriberNodes.add(s.node);
        const dupsOf = new Map<string, number>();
        dupsOf.set(currentNode, stats.duplicates_suppressed);
        if (playground) {
          await Promise.all([...subscriberNodes].filter((n) => n !== currentNode).map(async (n) => {
            try {
              const res = await fetch(`/node/${n}/notify/api`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '"Stats"' });
              const v = await res.json();
              if (v.Ok) dupsOf.set(n, v.Ok.Stats.duplicates_suppressed);
            } catch {
              // that node is down: its count shows as unknown
            }
          }));
        }
        delivery.innerHTML = "";
        for (const t of stats.topics) {
          const table = el("table", { "data-testid": `delivery-${t.topic}` });
          table.append(el("tr", {}, ...["subscriber", "delivered", "pending", el("abbr", { title: "missed because they left the retention window first" }, "dropped by retention"), "sent / failed", el("abbr", { title: "copies the subscriber's node had already received, over all its topics" }, "duplicates suppressed (node)")].map((h) => el("th", {}, h))));
          for (const s of t.subscribers) {
            const d = dupsOf.get(s.node);
            table.append(el("tr", { "data-testid": `sub-${t.topic}-${s.node}` },
              el("td", {}, s.node),
              el("td", { "data-testid": `sub-${t.topic}-${s.node}-delivered` }, String(s.delivered)),
              el("td", { "data-testid": `sub-${t.topic}-${s.node}-pending` }, String(s.pending)),
              el("td", {}, String(s.dropped_by_retention)),
              el("td", {}, `${s.sent} / ${s.failed}`),
              el("td", { "data-testid": `sub-${t.topic}-${s.node}-dups` }, d === undefined ? "—" : String(d)),
            ));
          }
          if (!t.subscribers.length) table.append(el("tr", {}, el("td", { colspan: "6" }, "no subscriber node yet")));
          delivery.append(el("h4", {}, `${t.topic}: ${t.published} published, ${t.delivered} delivered, ${t.pending} pending, ${t.dropped_by_retention} dropped by retention`), table);
        }
        // Receiver side: our apps' subscriptions.
        subs.innerHTML = "";
        subs.append(el("tr", {}, ...["app", "stream", "delivered", "pending", "dropped by retention", "failed"].map((h) => el("th", {}, h))));
        for (const s of stats.subscriptions) {
          subs.append(el("tr", { "data-testid": `mysub-${s.publisher}-${s.topic}` },
            el("td", {}, s.app.split("@")[1]?.split(":")[0] ?? s.app),
            el("td", {}, `${s.publisher}/${s.topic}`),
            el("td", {}, String(s.delivered)),
            el("td", {}, String(s.pending)),
            el("td", {}, String(s.dropped_by_retention)),
            el("td", {}, String(s.failed)),
          ));
        }
        dups.textContent = `This node suppressed ${stats.duplicates_suppressed} duplicate notification(s) and refused ${stats.refused} protocol message(s).`;
        list_.innerHTML = "";
        for (const l of feed) list_.append(el("li", {}, l));
      });
    root.append(
      el("h2", {}, "Our topics"),
      topics,
      form("topic", [["topic", "new topic", "news"]], "Create (open)", async (v) => {
        await api("notify", { SetTopic: { topic: v.topic, policy: "Open" } });
        refresh();
      }, "SetTopic"),
      form("publish", [["topic", "topic", "news"], ["text", "message", "hello"]], "Publish", async (v) => {
        await api("notify", { Publish: { topic: v.topic, kind: "Blob" } }, v.text);
        refresh();
      }, "Publish"),
      form("subscribe", [["publisher", "publisher node", currentNode], ["topic", "topic", "news"]], "Subscribe", async (v) => {
        await subscribe("notify", { Subscribe: { publisher: v.publisher, topic: v.topic } });
      }, "Subscribe"),
      el("h3", {}, "Delivery per subscriber"),
      delivery,
      el("h3", {}, "Our subscriptions"),
      subs,
      dups,
      el("h3", {}, "Live feed"),
      list_,
    );
    refreshers.push(refresh);
    refresh();
  },
});

// ----- Transactions (txcoord) -----

const decisions: { tx: string; text: string; outcome: string }[] = [];
/** Transactions in the order this page saw them decided, newest last (for the history's
 * order: txcoord lists by id). */
const decidedOrder: string[] = [];
/** One participant's vote as text: `bob.os/stock: Yes`, `charlie.os/cash: No (reason)`. */
function voteText(v: Json): string {
  return `${v.node}/${v.resource}: ${v.vote ?? "no vote"}${v.reason ? ` (${v.reason})` : ""}`;
}
/** What a participant ended with, as the coordinator knows it. */
function participantOutcome(phase: string, v: Json): string {
  if (phase === "Committed" || phase === "Committing") return v.acked ? "committed" : "being told: commit";
  if (phase === "Aborted" || phase === "Aborting") return v.acked ? "aborted" : "being told: abort";
  return v.vote ? "waiting for the decision" : "voting";
}
on("txcoord", (f) => {
  const d = f.event?.TxDecided;
  if (d) {
    const votes = (d.votes || []).map(voteText).join("; ");
    decisions.unshift({ tx: d.tx_id, outcome: d.outcome, text: `${d.tx_id}: ${d.outcome}${d.reason ? ` (${d.reason})` : ""} — votes: ${votes || "none"}` });
    decidedOrder.push(d.tx_id);
    decidedOrder.splice(0, Math.max(0, decidedOrder.length - 200));
  }
  decisions.splice(30);
  if (active === "tx") refreshers.forEach((r) => r());
});

const started = el("p", { "data-testid": "started" });

tabs.push({
  id: "tx",
  title: "Transactions",
  render(root) {
    const hist = el("table", { "data-testid": "txs" });
    const dec = el("ul", { class: "log", "data-testid": "decisions" });
    const refresh = () =>
      guarded("List", async () => {
        // In progress (both roles) and, from the coordinator's history, the finished ones
        // this node coordinated, with each participant's vote as it ended: what a reload keeps.
        // Pages are by id, so a few pages cover the history (1,000) and what is open.
        const all: Json[] = [];
        let cursor: string | null = null;
        for (let page = 0; page < 4; page++) {
          const r = await api("txcoord", { List: { include_finished: true, limit: 500, cursor } });
          all.push(...r.Transactions.transactions);
          cursor = r.Transactions.next_cursor;
          if (!cursor) break;
        }
        const open = all.filter((t) => t.phase !== "Committed" && t.phase !== "Aborted");
        const rank = new Map(decidedOrder.map((tx, i) => [tx, i]));
        // Finished: those this page saw decided first (newest first), then the rest by id.
        const finished = all.filter((t) => !open.includes(t)).sort((a, b) => (rank.get(b.tx_id) ?? -1) - (rank.get(a.tx_id) ?? -1));
        const rows = [...open, ...finished];
        hist.innerHTML = "";
        hist.append(el("tr", {}, ...["transaction", "role", "phase", "participants: vote → outcome"].map((h) => el("th", {}, h))));
        for (const t of rows) {
          const parts = el("ul", { class: "plain" });
          for (const v of t.votes || []) {
            parts.append(el("li", { "data-testid": `part-${t.tx_id}-${v.node}-${v.resource}` }, `${voteText(v)} → ${participantOutcome(t.phase, v)}`));
          }
          hist.append(
            el("tr", { "data-tx": t.tx_id },
              el("td", {}, t.tx_id),
              el("td", {}, t.role),
              el("td", { "data-testid": `phase-${t.tx_id}` }, t.phase + (t.reason ? ` (${t.reason})` : "")),
              el("td", {}, parts),
            ),
          );
        }
        dec.innerHTML = "";
        for (const d of decisions) dec.append(el("li", { "data-tx": d.tx, class: `outcome ${d.outcome}` }, d.text));
      });
    const managers = simState?.managers;
    root.append(
      el("h2", {}, "Start a transaction"),
      el("p", {}, "Participants are separated by commas, each node:resource or node:resource:operation; a node votes through the app registered as that resource's manager (none: the vote times out and the transaction aborts)."),
      managers
        ? el("p", { "data-testid": "managers-note" },
            `In the playground every node runs a resource manager for ${managers.resources.join(" and ")}: it votes yes, and no to an operation containing "${managers.refuse}" (try charlie.os:stock:${managers.refuse}).`)
        : "",
      form("start", [["participants", "participants", nodes.map((n) => `${n}:stock`).join(", ")], ["timeout_ms", "vote timeout (ms)", "3000"]], "Start", async (v) => {
        const participants = v.participants.split(",").map((p) => p.trim()).filter((p) => p).map((p) => {
          const [node, resource, ...op] = p.split(":");
          if (!node || !resource) throw new Error(`"${p}" is not node:resource or node:resource:operation`);
          return { node, resource, operation: op.join(":") };
        });
        const timeout = Number(v.timeout_ms);
        if (!Number.isInteger(timeout) || timeout <= 0) throw new Error("the vote timeout is a positive number of milliseconds");
        // Never leave the previous transaction's id showing while this one starts.
        started.textContent = "starting…";
        let r: Json;
        try {
          r = await api("txcoord", { Start: { participants, timeout_ms: timeout } });
        } catch (e) {
          started.textContent = "";
          throw e;
        }
        started.textContent = `started ${r.Started.tx_id}`;
        refresh();
      }, "Start"),
      started,
      el("h3", {}, "Decisions"),
      dec,
      el("h3", {}, "History"),
      el("p", {}, "Transactions in progress on this node, and the finished ones it coordinated (its last 1,000), with each participant's vote and outcome."),
      hist,
    );
    refreshers.push(refresh);
    refresh();
  },
});
// ----- Health (presence, notify, sync: each one's `Health`) -----

/** One service's view of a peer: reachability from its own sends, its outbox's breaker
 * (notify and sync), and the messages between them since the process started. */
function healthText(p: Json): string {
  if (!p) return "—";
  const plural = (n: number) => `${n} failure${n === 1 ? "" : "s"}`;
  const f = p.consecutive_failures ? `, ${plural(p.consecutive_failures)}` : "";
  const rtt = p.srtt_ms != null ? `, rtt ${p.srtt_ms} ms` : "";
  let b = "";
  if (p.breaker) {
    const label: Record<string, string> = { Closed: "closed", Open: "open", HalfOpen: "half-open" };
    b = `; breaker ${label[p.breaker] ?? p.breaker}${p.breaker === "Closed" && p.breaker_failures ? ` (${plural(p.breaker_failures)})` : ""}`;
  }
  return `${p.status}${f}${rtt}${b}; ${p.sent} sent, ${p.received} received`;
}

const HEALTH_SERVICES = ["presence", "notify", "sync"];

tabs.push({
  id: "health",
  title: "Health",
  render(root) {
    const table = el("table", { "data-testid": "health" });
    const notes = el("p", { "data-testid": "health-notes" });
    const errors = el("p", { class: "inline-error", "data-testid": "health-error" });
    errors.hidden = true;
    const simTable = el("table", { "data-testid": "sim-health" });
    root.append(
      el("h2", {}, "Network health as ", el("span", { "data-testid": "health-viewer" }, currentNode || "this node"), " sees it"),
      el("p", {}, "Per node, what each service's own sends found: reachability (status, failures in a row, round-trip time), the circuit breaker of notify's and sync's outboxes, and the messages sent to it and received from it since the service started (each service's Health)."),
      table,
      notes,
      errors,
    );
    if (playground) {
      root.append(
        el("h3", {}, "Simulator's counts"),
        el("p", {}, "Messages between the nodes as the simulator carried them: sent, and delivered (playground only)."),
        simTable,
      );
    }
    // A refresh shows its failures here, leaving the banner to what the user did.
    const refresh = async () => {
      const answers = await Promise.all(HEALTH_SERVICES.map((s) => api(s, "Health").then((r) => r.Health, (e) => e as Error)));
      const failed = answers.map((a, i) => (a instanceof Error ? `${HEALTH_SERVICES[i]}: ${a.message}` : "")).filter((x) => x);
      errors.hidden = !failed.length;
      errors.textContent = failed.length ? `Health: ${failed.join("; ")}` : "";
      const byNode = new Map<string, Record<string, Json>>();
      answers.forEach((a, i) => {
        if (a instanceof Error) return;
        for (const p of a.peers) {
          if (!byNode.has(p.node)) byNode.set(p.node, {});
          byNode.get(p.node)![HEALTH_SERVICES[i]] = p;
        }
      });
      table.innerHTML = "";
      table.append(el("tr", {}, ...["node", ...HEALTH_SERVICES].map((x) => el("th", {}, x))));
      for (const n of [...byNode.keys()].sort()) {
        const row = byNode.get(n)!;
        table.append(el("tr", { "data-node": n }, el("td", {}, n), ...HEALTH_SERVICES.map((s) => el("td", { "data-testid": `health-${n}-${s}` }, healthText(row[s])))));
      }
      if (!byNode.size) table.append(el("tr", {}, el("td", { colspan: "4" }, "no other node known yet")));
      const ok = answers.filter((a) => !(a instanceof Error));
      const more = ok.map((a, i) => (a.more ? `${HEALTH_SERVICES[i]} knows ${a.more} more` : "")).filter((x) => x);
      const ours = ok.some((a) => a.own_trouble) ? "Failures are presumed ours for now (just started, or others reach the nodes we fail to reach): no node is blamed. " : "";
      notes.textContent = ours + (more.length ? `Only the busiest 64 nodes are listed (${more.join(", ")}).` : "");
      if (playground) {
        try {
          const h = await simQuery("health", { node: currentNode });
          simTable.innerHTML = "";
          simTable.append(el("tr", {}, ...["node", "messages to it", "messages from it"].map((x) => el("th", {}, x))));
          for (const p of h.peers) {
            const m = p.messages;
            simTable.append(el("tr", {}, el("td", {}, p.node),
              el("td", { "data-testid": `sim-msgs-to-${p.node}` }, `${m.sent} sent, ${m.delivered_to} delivered`),
              el("td", { "data-testid": `sim-msgs-from-${p.node}` }, `${m.received} sent, ${m.delivered_from} delivered`)));
          }
        } catch (e) {
          errors.hidden = false;
          errors.textContent = `${errors.textContent ? errors.textContent + "; " : ""}simulator: ${e instanceof Error ? e.message : String(e)}`;
        }
      }
    };
    refreshers.push(refresh);
    refresh();
  },
});

// ----- Network (playground only) -----

let simState: Json = null;
const flows: { from: string; to: string; kind: string; at: number }[] = [];
let msgCount = 0;
/** A /sim call that answers something other than the cluster's state. */
async function simQuery(op: string, body: Json): Promise<Json> {
  const res = await fetch(`/sim/${op}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const v = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(v.error || `HTTP ${res.status}`);
  return v;
}
async function sim(op: string, body?: Json) {
  const res = await fetch(`/sim/${op}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: body === undefined ? "" : JSON.stringify(body) });
  const v = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(v.error || `HTTP ${res.status}`);
  simState = v;
  if (active === "net") refreshers.forEach((r) => r());
}

function connectNet() {
  const url = () => `${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/sim/ws`;
  liveSocket("the simulator", url, (f) => {
    if (f.type === "state") {
      simState = f.state;
      if (active === "net") refreshers.forEach((r) => r());
    } else if (f.type === "msg") {
      msgCount++;
      flows.push({ from: f.from, to: f.to, kind: `${f.process}:${f.kind}`, at: performance.now() });
      if (flows.length > 200) flows.splice(0, flows.length - 200);
    }
  }, () => true, () => {});
}

tabs.push({
  id: "net",
  title: "Network",
  playgroundOnly: true,
  render(root) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "-120 -120 240 240");
    svg.setAttribute("data-testid", "netview");
    const controls = el("table", { "data-testid": "sim-nodes" });
    const counter = el("p", { "data-testid": "msg-count" });
    root.append(el("h2", {}, "Network"), svg, counter, controls,
      el("p", { class: "row" },
        button("heal", "Heal all partitions", () => sim("heal")),
      ),
      form("netcfg", [["loss", "message loss (0..0.9)", "0"], ["latency", "latency min,max ms", "20,200"]], "Apply", async (v) => {
        const loss = Number(v.loss);
        if (!Number.isFinite(loss)) throw new Error(`loss "${v.loss}" is not a number`);
        const lat = list(v.latency).map(Number);
        await sim("net", { loss, latency_ms: lat });
      }, "Network"),
    );
    const pos = (i: number, n: number) => [Math.round(90 * Math.sin((2 * Math.PI * i) / n)), Math.round(-90 * Math.cos((2 * Math.PI * i) / n))];
    const draw = () => {
      if (!simState) return;
      const ns: Json[] = simState.nodes;
      const idx = new Map(ns.map((n: Json, i: number) => [n.node, i]));
      const cut = new Set(simState.cut.map((c: string[]) => c.join("|")));
      // Built as elements, never as markup: node names and message kinds are data.
      const SVG = "http://www.w3.org/2000/svg";
      const shape = (tag: string, attrs: Record<string, string | number>, text?: string) => {
        const e = document.createElementNS(SVG, tag);
        for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
        if (text !== undefined) e.textContent = text;
        return e;
      };
      const parts: Element[] = [];
      for (let a = 0; a < ns.length; a++)
        for (let b = a + 1; b < ns.length; b++) {
          const [x1, y1] = pos(a, ns.length), [x2, y2] = pos(b, ns.length);
          const isCut = cut.has(`${ns[a].node}|${ns[b].node}`);
          parts.push(shape("line", { x1, y1, x2, y2, class: isCut ? "cut" : "link" }));
        }
      const now = performance.now();
      for (const f of flows) {
        const t = (now - f.at) / 600;
        if (t > 1) continue;
        const a = idx.get(f.from), b = idx.get(f.to);
        if (a === undefined || b === undefined) continue;
        const [x1, y1] = pos(a, ns.length), [x2, y2] = pos(b, ns.length);
        const dot = shape("circle", { r: 3, cx: x1 + (x2 - x1) * t, cy: y1 + (y2 - y1) * t, class: "msg" });
        dot.append(shape("title", {}, f.kind));
        parts.push(dot);
      }
      ns.forEach((n: Json, i: number) => {
        const [x, y] = pos(i, ns.length);
        const g = shape("g", { class: `node ${n.up ? "up" : "down"}${n.slow_ms ? " slow" : ""}` });
        g.append(shape("circle", { r: 16, cx: x, cy: y }), shape("text", { x, y: y + 30, "text-anchor": "middle" }, String(n.node)));
        parts.push(g);
      });
      svg.replaceChildren(...parts);
      counter.textContent = `${msgCount} messages between nodes seen; virtual time ${Math.round(simState.now_ms / 1000)} s; loss ${simState.loss}`;
    };
    const table = () => {
      if (!simState) return;
      controls.innerHTML = "";
      controls.append(el("tr", {}, ...["node", "state", ""].map((h) => el("th", {}, h))));
      for (const n of simState.nodes) {
        controls.append(el("tr", {},
          el("td", {}, n.node),
          el("td", { "data-testid": `sim-${n.node}` }, n.up ? (n.slow_ms ? `up, slow +${n.slow_ms} ms` : "up") : "crashed"),
          el("td", { class: "row" },
            n.up ? button(`crash-${n.node}`, "Crash", () => sim("crash", { node: n.node })) : button(`restart-${n.node}`, "Restart", () => sim("restart", { node: n.node })),
            button(`isolate-${n.node}`, "Isolate", () => sim("isolate", { node: n.node })),
            button(`slow-${n.node}`, n.slow_ms ? "Normal speed" : "Slow (1.5 s)", () => sim("slow", { node: n.node, ms: n.slow_ms ? 0 : 1500 })),
          )));
      }
    };
    refreshers.push(table);
    table();
    const tick = () => {
      if (active !== "net") return;
      draw();
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  },
});

function button(id: string, label: string, f: () => Promise<void>) {
  const b = el("button", { type: "button", "data-testid": id }, label);
  b.onclick = () => guarded(label, f);
  return b;
}

// ----- start -----

async function selectNode(n: string) {
  currentNode = n;
  ourNode = n;
  connectSockets();
  if (!ourNode) {
    await guarded("Info", async () => {
      ourNode = (await api("presence", "Info")).Info.node;
    });
  }
  // The page's own subscription to membership events (its address is the node owner's).
  await guarded("Subscribe", async () => {
    await subscribe("presence", "Subscribe");
  });
  showTab(active);
}

async function main() {
  if (query.get("poll") !== "0") setInterval(() => refreshers.forEach((r) => r()), 2000);
  try {
    const r = await fetch("/sim/state");
    if (r.ok && (r.headers.get("content-type") || "").includes("json")) {
      simState = await r.json();
      nodes = simState.nodes.map((n: Json) => n.node);
      playground = true;
    }
  } catch {
    // not the playground
  }
  const nav = $("#tabs");
  for (const t of tabs) {
    if (t.playgroundOnly && !playground) continue;
    const b = el("button", { role: "tab", "data-tab": t.id, "data-testid": `tab-${t.id}` }, t.title);
    b.onclick = () => showTab(t.id);
    nav.append(b);
  }
  if (playground) {
    $("#mode").textContent = "playground (simulated cluster)";
    const pick = $("#node-picker") as HTMLSelectElement;
    for (const n of nodes) pick.append(el("option", { value: n }, n));
    $("#node-picker-label").hidden = false;
    pick.onchange = () => selectNode(pick.value);
    connectNet();
    const wanted = query.get("node");
    const first = wanted && nodes.includes(wanted) ? wanted : nodes[0] ?? "";
    pick.value = first;
    await selectNode(first);
  } else {
    $("#mode").textContent = "this node";
    await selectNode("");
  }
}

main();
