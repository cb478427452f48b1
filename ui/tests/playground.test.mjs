// Browser tests of the page against the playground (`cargo xtask test --step ui`).
// Starts `$P2P_SIM playground --port 0`, drives Debian's chromium with playwright-core, and
// keeps a screenshot of each page under $UI_ARTIFACTS. Waits on page state, never on sleeps.
import { chromium } from "playwright-core";
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

const sim = process.env.P2P_SIM;
const browserPath = process.env.CHROMIUM || "/usr/bin/chromium";
const artifacts = process.env.UI_ARTIFACTS || "target/ui-artifacts";
if (!sim) {
  console.error("set P2P_SIM to the p2p-sim binary");
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });

const child = spawn(sim, ["playground", "--port", "0", ...(process.env.UI_DIR ? ["--ui", process.env.UI_DIR] : [])], {
  stdio: ["ignore", "pipe", "inherit"],
});
const url = await new Promise((resolve, reject) => {
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
    const m = out.match(/on (http:\/\/127\.0\.0\.1:\d+\/)/);
    if (m) resolve(m[1]);
  });
  child.on("exit", (c) => reject(new Error(`playground exited (${c}): ${out}`)));
  setTimeout(() => reject(new Error(`playground printed no URL: ${out}`)), 30000);
});

let failed = 0;
const results = [];
const browser = await chromium.launch({ executablePath: browserPath, args: ["--no-sandbox"] });
const page = await browser.newPage({ viewport: { width: 390, height: 844 } }); // phone width
page.setDefaultTimeout(20000);

// UI_ONLY=<regex> runs only the tests whose name matches it (for working on one; later
// tests may need what earlier ones did).
const only = process.env.UI_ONLY;
async function test(name, f) {
  if (only && !new RegExp(only).test(name)) return;
  const t0 = Date.now();
  try {
    await f();
    results.push(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed++;
    results.push(`FAIL ${name}: ${e.message.split("\n")[0]}`);
    await page.screenshot({ path: join(artifacts, `failed-${name.replace(/\W+/g, "-")}.png`), fullPage: true }).catch(() => {});
  }
}
const shot = (n) => page.screenshot({ path: join(artifacts, `${n}.png`), fullPage: true });
const status = (node) => page.getByTestId(`status-${node}`);

try {
  await page.goto(url);
  await test("the cluster forms: alice sees bob and charlie alive", async () => {
    await page.getByTestId("tab-nodes").click();
    await status("bob.os").filter({ hasText: "Alive" }).waitFor();
    await status("charlie.os").filter({ hasText: "Alive" }).waitFor();
    await shot("nodes");
  });

  await test("crash charlie: marked dead; restart: alive again", async () => {
    await page.getByTestId("tab-net").click();
    await page.getByTestId("crash-charlie.os").click();
    await page.getByTestId("sim-charlie.os").filter({ hasText: "crashed" }).waitFor();
    await shot("network-charlie-crashed");
    await page.getByTestId("tab-nodes").click();
    await status("charlie.os").filter({ hasText: "Dead" }).waitFor({ timeout: 120000 });
    await shot("nodes-charlie-dead");
    await page.getByTestId("tab-net").click();
    await page.getByTestId("restart-charlie.os").click();
    await page.getByTestId("tab-nodes").click();
    await status("charlie.os").filter({ hasText: "Alive" }).waitFor({ timeout: 120000 });
  });

  await test("a bad input in a form shows a clear error", async () => {
    await page.getByTestId("tab-nodes").click();
    await page.getByTestId("join-bootstrap").fill("not a node!");
    await page.getByTestId("join-submit").click();
    const err = page.getByTestId("error");
    await err.filter({ hasText: "Join: BadRequest" }).waitFor();
    await shot("error-bad-join");
    await page.getByTestId("tab-net").click();
    await page.getByTestId("netcfg-loss").fill("lots");
    await page.getByTestId("netcfg-submit").click();
    await err.filter({ hasText: "is not a number" }).waitFor();
  });

  await test("edit text on alice and see it on bob", async () => {
    await page.getByTestId("tab-docs").click();
    await page.getByTestId("create-name").fill("notes");
    await page.getByTestId("create-writers").fill("bob.os");
    await page.getByTestId("create-submit").click();
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await page.getByTestId("editor").pressSequentially("hello from alice");
    await page.waitForFunction(() => document.querySelector('[data-testid="error"]').hidden);
    await shot("docs-alice");
    await page.getByTestId("node-picker").selectOption("bob.os");
    await page.getByTestId("joindoc-doc").fill("alice.os/notes");
    await page.getByTestId("joindoc-submit").click();
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="editor"]').value === "hello from alice");
    await shot("docs-bob");
  });

  await test("partition bob, edit on both sides, heal: both converge", async () => {
    const editor = page.getByTestId("editor");
    const typeAtEnd = async (text) => {
      await editor.click();
      await editor.press("Control+End");
      await editor.pressSequentially(text);
      await page.waitForFunction(() => document.querySelector('[data-testid="error"]').hidden);
    };
    await page.getByTestId("tab-net").click();
    await page.getByTestId("isolate-bob.os").click();
    await page.getByTestId("tab-docs").click();
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await typeAtEnd(" +bob");
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await page.waitForFunction(() => document.querySelector('[data-testid="editor"]').value === "hello from alice");
    await typeAtEnd(" +alice");
    await shot("docs-partitioned-alice");
    await page.getByTestId("tab-net").click();
    await page.getByTestId("heal").click();
    await page.getByTestId("tab-docs").click();
    const both = () => {
      const v = document.querySelector('[data-testid="editor"]').value;
      return v.includes("+bob") && v.includes("+alice");
    };
    await page.waitForFunction(both, null, { timeout: 120000 });
    const onAlice = await editor.inputValue();
    await page.getByTestId("node-picker").selectOption("bob.os");
    await page.waitForFunction((want) => document.querySelector('[data-testid="editor"]').value === want, onAlice, { timeout: 120000 });
    await shot("docs-healed-bob");
  });

  await test("documents: a field edited on alice shows on bob; sync state per peer", async () => {
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("tab-docs").click();
    await page.getByTestId("open-alice.os/notes").click();
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await page.getByTestId("field-item_id").fill("task-1");
    await page.getByTestId("field-field").fill("done");
    await page.getByTestId("field-value").fill("true");
    await page.getByTestId("field-submit").click();
    await page.getByTestId("value-task-1-done").filter({ hasText: /^true$/ }).waitFor();
    await page.getByTestId("peer-bob.os").filter({ hasText: "in sync" }).waitFor({ timeout: 60000 });
    await shot("docs-fields-alice");
    await page.getByTestId("node-picker").selectOption("bob.os");
    await page.getByTestId("value-task-1-done").filter({ hasText: /^true$/ }).waitFor({ timeout: 60000 });
    await page.getByTestId("peer-alice.os").filter({ hasText: "in sync" }).waitFor({ timeout: 60000 });
    // Cut bob off and edit on alice: alice sees bob behind (or unreachable), then in sync.
    await page.getByTestId("tab-net").click();
    await page.getByTestId("isolate-bob.os").click();
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("tab-docs").click();
    await page.getByTestId("doc-title").filter({ hasText: "alice.os/notes" }).waitFor();
    await page.getByTestId("field-value").fill("42");
    await page.getByTestId("field-submit").click();
    await page.getByTestId("value-task-1-done").filter({ hasText: /^42$/ }).waitFor();
    await page.getByTestId("peer-bob.os").filter({ hasText: /behind|unreachable/ }).waitFor({ timeout: 60000 });
    await shot("docs-peer-behind");
    await page.getByTestId("tab-net").click();
    // Back to one network (that bob catches up is the native test's: test/sim/tests/sync.rs).
    await page.getByTestId("heal").click();
  });

  await test("publish and see the feed", async () => {
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("tab-notify").click();
    await page.getByTestId("topic-submit").click();
    await page.getByTestId("topics").filter({ hasText: "news" }).waitFor();
    await page.getByTestId("subscribe-publisher").fill("alice.os");
    await page.getByTestId("subscribe-submit").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="error"]').hidden);
    await page.getByTestId("publish-text").fill("first news");
    await page.getByTestId("publish-submit").click();
    await page.getByTestId("feed").filter({ hasText: "alice.os/news #1: first news" }).waitFor();
    await shot("notifications");
  });

  await test("notifications: delivery stats per subscriber, per topic", async () => {
    await page.getByTestId("node-picker").selectOption("bob.os");
    await page.getByTestId("tab-notify").click();
    await page.getByTestId("subscribe-publisher").fill("alice.os");
    await page.getByTestId("subscribe-topic").fill("news");
    await page.getByTestId("subscribe-submit").click();
    await page.waitForFunction(() => document.querySelector('[data-testid="error"]').hidden);
    await page.getByTestId("mysub-alice.os-news").waitFor();
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("publish-text").fill("second news");
    await page.getByTestId("publish-submit").click();
    await page.getByTestId("sub-news-bob.os-delivered").filter({ hasText: /^[1-9]\d*$/ }).waitFor({ timeout: 60000 });
    await page.getByTestId("sub-news-bob.os-pending").filter({ hasText: /^0$/ }).waitFor({ timeout: 60000 });
    await page.getByTestId("sub-news-bob.os-dups").filter({ hasText: /^\d+$/ }).waitFor();
    await page.getByTestId("dups").filter({ hasText: "duplicate notification" }).waitFor();
    await shot("notifications-delivery");
  });

  await test("a transaction commits at the playground's managers; a refused one aborts", async () => {
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("tab-tx").click();
    await page.getByTestId("managers-note").filter({ hasText: "refuse" }).waitFor();
    // The id shown after this click, not the previous transaction's (the line says
    // "starting…" until txcoord answers; reading it too early took the old id).
    let previous = "";
    const start = async (participants) => {
      await page.getByTestId("start-participants").fill(participants);
      await page.getByTestId("start-timeout_ms").fill("3000");
      await page.getByTestId("start-submit").click();
      const started = page.getByTestId("started").filter({ hasText: /^started alice\.os\// }).filter({ hasNotText: previous || "\u0000" });
      await started.waitFor();
      previous = (await started.textContent()).replace("started ", "");
      return previous;
    };
    const tx = await start("bob.os:stock:take 1, charlie.os:cash:pay 5");
    const decided = (id) => page.locator(`[data-testid="decisions"] li[data-tx="${id}"]`);
    await decided(tx).filter({ hasText: "Committed" }).waitFor({ timeout: 60000 });
    await decided(tx).filter({ hasText: "bob.os/stock: Yes" }).filter({ hasText: "charlie.os/cash: Yes" }).waitFor();
    // History: each participant's vote and outcome.
    await page.getByTestId(`phase-${tx}`).filter({ hasText: "Committed" }).waitFor({ timeout: 60000 });
    await page.getByTestId(`part-${tx}-bob.os-stock`).filter({ hasText: "Yes → committed" }).waitFor();
    await page.getByTestId(`part-${tx}-charlie.os-cash`).filter({ hasText: "Yes → committed" }).waitFor();
    await shot("transactions-committed");
    const refused = await start("bob.os:stock:take 1, charlie.os:stock:refuse");
    await decided(refused).filter({ hasText: "Aborted" }).waitFor({ timeout: 60000 });
    await page.getByTestId(`part-${refused}-charlie.os-stock`).filter({ hasText: "No (the playground manager refuses" }).waitFor({ timeout: 60000 });
    await page.getByTestId(`part-${refused}-bob.os-stock`).filter({ hasText: "aborted" }).waitFor({ timeout: 60000 });
    await shot("transactions");
  });
  await test("network health: reachability, breakers and message counters per node", async () => {
    await page.getByTestId("node-picker").selectOption("alice.os");
    await page.getByTestId("tab-net").click();
    await page.getByTestId("health-viewer").filter({ hasText: "alice.os" }).waitFor();
    const cell = (node, what) => page.getByTestId(`health-${node}-${what}`);
    await cell("bob.os", "presence").filter({ hasText: /^Reachable/ }).waitFor();
    await cell("bob.os", "notify").filter({ hasText: "breaker closed" }).waitFor();
    await cell("bob.os", "sync").filter({ hasText: "breaker closed" }).waitFor();
    await cell("bob.os", "msgs").filter({ hasText: /^to: [1-9]\d* sent, [1-9]\d* delivered; from: [1-9]\d* sent, [1-9]\d* delivered$/ }).waitFor();
    await page.getByTestId("isolate-charlie.os").click();
    await cell("charlie.os", "presence").filter({ hasText: /^(Unreachable|Degraded)/ }).waitFor({ timeout: 90000 });
    await shot("network-health-charlie-isolated");
    await page.getByTestId("heal").click();
    await cell("charlie.os", "presence").filter({ hasText: /^Reachable/ }).waitFor({ timeout: 90000 });
  });
} finally {
  await browser.close();
  child.kill("SIGINT");
}
for (const r of results) console.log(r);
console.log(`${results.length - failed} passed, ${failed} failed; screenshots in ${artifacts}`);
process.exit(failed ? 1 : 0);
