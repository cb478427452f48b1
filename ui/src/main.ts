// The p2p-patterns page. Every call is a local-API request of one service, POSTed as JSON to
// that service's `/api` (p2p_common::web); events come on its `/ws`. On a node the page is
// served under presence's path and talks to this node; in the playground it talks to the
// node picked in the header, and the Network tab drives the simulator (`/sim/...`).
import "./style.css";

const PKG = ":p2p-patterns:p2p-patterns.os";
// The playground answers /sim/state; a node does not (set in main()).
let playground = false;

type Json = any;

let currentNode = "";
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

/** One local-API call; resolves with the `Ok` value, rejects with the service's message. */
async function api(process: string, request: Json, blob?: string): Promise<Json> {
  const init: RequestInit = { method: "POST", headers: {} };
  if (blob !== undefined) {
    (init.headers as Record<string, string>)["x-api-request"] = JSON.stringify(request);
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
let sockets: WebSocket[] = [];
function on(process: string, h: Handler) {
  (handlers[process] ||= []).push(h);
}
function connectSockets() {
  for (const s of sockets) s.close();
  sockets = [];
  for (const p of ["presence", "sync", "notify", "txcoord"]) {
    const ws = new WebSocket(wsUrl(p));
    ws.onmessage = (m) => {
      let f: Json;
      try {
        f = JSON.parse(m.data);
      } catch {
        return;
      }
      for (const h of handlers[p] || []) h(f);
    };
    sockets.push(ws);
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
    root.append(
      el("h2", {}, "Members as ", el("span", { "data-testid": "viewer" }, currentNode || "this node"), " sees them"),
      table,
      el("h3", {}, "Join through a bootstrap node"),
      form("join", [["bootstrap", "bootstrap nodes", nodes[0] ?? ""]], "Join", async (v) => {
        await api("presence", { Join: { bootstrap: list(v.bootstrap) } });
      }, "Join"),
      el("h3", {}, "Our own info"),
      form("setinfo", [["app_version", "app version", "1.0.0"], ["capabilities", "capabilities", ""]], "Publish", async (v) => {
        await api("presence", { SetInfo: { app_version: v.app_version, capabilities: list(v.capabilities), metadata: [] } });
        refresh();
      }, "SetInfo"),
      el("h3", {}, "Events"),
      log,
    );
    const refresh = () =>
      guarded("ListNodes", async () => {
        const r = await api("presence", { ListNodes: {} });
        table.innerHTML = "";
        table.append(el("tr", {}, ...["node", "status", "last seen", el("abbr", { title: "incarnation" }, "inc."), "capabilities"].map((h) => el("th", {}, h))));
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
});

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
        openDoc = doc;
        await api("sync", { Subscribe: { doc } });
        title.textContent = doc;
        await read();
        readPeers();
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
      editor,
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
    refreshers.push(() => guarded("Read", read), readPeers);
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
              const res = await fetch(`/node/${n}/notify/api`, { method: "POST", body: '"Stats"' });
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
        await api("notify", { Subscribe: { publisher: v.publisher, topic: v.topic } });
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
/** Transactions this page started and saw decided (txcoord's List shows only those in
 * progress, and a finished one's Status no longer has the votes). `finished`: the
 * coordinator ended it, so every participant has acknowledged the decision. */
const decided = new Map<string, { outcome: string; reason: string; votes: Json[]; finished: boolean }>();
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
    decided.set(d.tx_id, { outcome: d.outcome, reason: d.reason || "", votes: d.votes || [], finished: false });
    while (decided.size > 30) decided.delete(decided.keys().next().value as string);
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
        const r = await api("txcoord", { List: {} });
        const rows: Json[] = r.Transactions.transactions;
        const active = new Set(rows.filter((t) => t.role === "Coordinator").map((t) => t.tx_id));
        for (const [tx, d] of [...decided].reverse()) {
          if (active.has(tx)) continue;
          if (!d.finished) {
            const st = (await api("txcoord", { Status: { tx_id: tx } })).Status;
            d.finished = st.phase === "Committed" || st.phase === "Aborted";
          }
          const phase = d.finished ? (d.outcome === "Committed" ? "Committed" : "Aborted") : d.outcome === "Committed" ? "Committing" : "Aborting";
          rows.push({ tx_id: tx, role: "Coordinator", phase, reason: d.reason, votes: d.votes.map((v) => ({ ...v, acked: v.acked || d.finished })) });
        }
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
      el("p", {}, "Transactions in progress on this node, and those this page started since it was opened."),
      hist,
    );
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
  const res = await fetch(`/sim/${op}`, { method: "POST", body: JSON.stringify(body) });
  const v = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(v.error || `HTTP ${res.status}`);
  return v;
}
function reachText(r: Json): string {
  if (!r) return "—";
  const rtt = r.srtt_ms != null ? `, rtt ${r.srtt_ms} ms` : "";
  const f = r.consecutive_failures ? `, ${r.consecutive_failures} failures` : "";
  return `${r.status}${f}${rtt}`;
}
function breakerText(b: Json): string {
  if (!b) return "—";
  if (b.Closed) return b.Closed.consecutive_failures ? `closed (${b.Closed.consecutive_failures} failures)` : "closed";
  if (b.Open) return "open";
  if (b.HalfOpen) return "half-open";
  return JSON.stringify(b);
}

async function sim(op: string, body?: Json) {
  const res = await fetch(`/sim/${op}`, { method: "POST", body: body === undefined ? "" : JSON.stringify(body) });
  const v = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(v.error || `HTTP ${res.status}`);
  simState = v;
  if (active === "net") refreshers.forEach((r) => r());
}

function connectNet() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/sim/ws`);
  ws.onmessage = (m) => {
    const f = JSON.parse(m.data);
    if (f.type === "state") {
      simState = f.state;
      if (active === "net") refreshers.forEach((r) => r());
    } else if (f.type === "msg") {
      msgCount++;
      flows.push({ from: f.from, to: f.to, kind: `${f.process}:${f.kind}`, at: performance.now() });
      if (flows.length > 200) flows.splice(0, flows.length - 200);
    }
  };
  ws.onclose = () => setTimeout(connectNet, 1000);
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
      let s = "";
      for (let a = 0; a < ns.length; a++)
        for (let b = a + 1; b < ns.length; b++) {
          const [x1, y1] = pos(a, ns.length), [x2, y2] = pos(b, ns.length);
          const isCut = cut.has(`${ns[a].node}|${ns[b].node}`);
          s += `<line x1="${x1}" y1="${y1}" x2="${x2}" y2="${y2}" class="${isCut ? "cut" : "link"}"/>`;
        }
      const now = performance.now();
      for (const f of flows) {
        const t = (now - f.at) / 600;
        if (t > 1) continue;
        const a = idx.get(f.from), b = idx.get(f.to);
        if (a === undefined || b === undefined) continue;
        const [x1, y1] = pos(a, ns.length), [x2, y2] = pos(b, ns.length);
        s += `<circle r="3" cx="${x1 + (x2 - x1) * t}" cy="${y1 + (y2 - y1) * t}" class="msg"><title>${f.kind}</title></circle>`;
      }
      ns.forEach((n: Json, i: number) => {
        const [x, y] = pos(i, ns.length);
        s += `<g class="node ${n.up ? "up" : "down"}${n.slow_ms ? " slow" : ""}"><circle r="16" cx="${x}" cy="${y}"/><text x="${x}" y="${y + 30}" text-anchor="middle">${n.node}</text></g>`;
      });
      svg.innerHTML = s;
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
    const health = el("table", { "data-testid": "health" });
    const healthTitle = el("h3", {}, "Network health as ", el("span", { "data-testid": "health-viewer" }, currentNode), " sees it");
    root.append(
      healthTitle,
      el("p", {}, "Reachability from the node's own sends (presence's probes, notify's and sync's deliveries), the circuit breakers of notify's and sync's outboxes, and messages to and from each node (sent / delivered)."),
      health,
    );
    const healthError = el("p", { class: "inline-error", "data-testid": "health-error" });
    healthError.hidden = true;
    root.append(healthError);
    // A refresh shows its own failure here, leaving the banner to what the user did.
    const refreshHealth = async () => {
      let h: Json;
      try {
        h = await simQuery("health", { node: currentNode });
        healthError.hidden = true;
      } catch (e) {
        healthError.hidden = false;
        healthError.textContent = `Health: ${e instanceof Error ? e.message : String(e)}`;
        return;
      }
      {
        health.innerHTML = "";
        health.append(el("tr", {}, ...["node", "presence", "notify", "sync", "messages"].map((x) => el("th", {}, x))));
        for (const p of h.peers) {
          const n = p.node;
          const svc = (s: string, withBreaker: boolean) =>
            el("td", { "data-testid": `health-${n}-${s}` }, reachText(p.reachability[s]) + (withBreaker ? `; breaker ${breakerText(p.breakers[s])}` : ""));
          const m = p.messages;
          health.append(el("tr", {},
            el("td", {}, n),
            svc("presence", false),
            svc("notify", true),
            svc("sync", true),
            el("td", { "data-testid": `health-${n}-msgs` }, `to: ${m.sent} sent, ${m.delivered_to} delivered; from: ${m.received} sent, ${m.delivered_from} delivered`),
          ));
        }
      }
    };
    refreshers.push(table, refreshHealth);
    table();
    refreshHealth();
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
  connectSockets();
  // The page's own subscription to membership events (its address is the node owner's).
  await guarded("Subscribe", async () => {
    await api("presence", "Subscribe");
  });
  showTab(active);
}

async function main() {
  setInterval(() => refreshers.forEach((r) => r()), 2000);
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
    await selectNode(nodes[0] ?? "");
  } else {
    $("#mode").textContent = "this node";
    await selectNode("");
  }
}

main();
