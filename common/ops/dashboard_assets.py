"""The dashboard's stylesheet and its two small scripts, inlined into each page (no build step).

The overview script polls ``api/status`` and swaps in the tables the server rendered (so all
escaping happens in one place, in Python). The dead-letter script POSTs JSON with the
``X-Ops-Dashboard`` header (a cross-site form cannot set it) and writes results with
``textContent`` only.
"""

from __future__ import annotations

__all__ = ["CSRF_HEADER", "CSS", "DEAD_LETTERS_JS", "OVERVIEW_JS", "REFRESH_MS"]

CSRF_HEADER = "X-Ops-Dashboard"
REFRESH_MS = 2000

CSS = """
:root { --fg: #1f2328; --muted: #656d76; --line: #d8dee4; --bg: #f6f8fa; --accent: #0969da;
  --bad: #cf222e; --warn: #9a6700; --ok: #1a7f37; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: var(--fg); background: #fff; }
header { display: flex; align-items: baseline; gap: 16px; padding: 12px 24px;
  border-bottom: 1px solid var(--line); background: var(--bg); }
header h1 { margin: 0; font-size: 18px; }
header .where { color: var(--muted); font-family: ui-monospace, monospace; font-size: 12px; }
header nav { margin-left: auto; font-size: 13px; }
main { padding: 16px 24px; }
a { color: var(--accent); text-decoration: none; }
a:hover { text-decoration: underline; }
h2 { font-size: 15px; margin: 20px 0 8px; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: 8px 14px; min-width: 120px; }
.card .n { font-size: 22px; font-weight: 600; }
.card .label { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid var(--line); padding: 5px 8px; text-align: left;
  vertical-align: baseline; }
th { background: var(--bg); font-weight: 600; font-size: 12px; color: var(--muted); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.key { font-family: ui-monospace, monospace; font-size: 12px; }
td[data-col="id"], td[data-col="failed-at"] { white-space: nowrap; }
td[data-col="error"] { min-width: 180px; }
td[data-col="payload"] { min-width: 300px; }
td[data-col="actions"] { width: 90px; }
td[data-col="actions"] button { width: 72px; }
.bad { color: var(--bad); font-weight: 600; }
.warn { color: var(--warn); font-weight: 600; }
.muted { color: var(--muted); }
.kind { font-size: 11px; color: var(--muted); border: 1px solid var(--line); border-radius: 4px;
  padding: 0 4px; margin-right: 4px; }
#state { color: var(--muted); font-size: 12px; }
#state.error, .error { color: var(--bad); }
.banner { border: 1px solid var(--bad); background: #ffebe9; border-radius: 6px;
  padding: 8px 12px; margin: 8px 0; }
.note { border: 1px solid var(--line); background: var(--bg); border-radius: 6px;
  padding: 8px 12px; margin: 8px 0; color: var(--muted); }
pre { margin: 4px 0 0; max-height: 280px; overflow: auto; background: var(--bg);
  border: 1px solid var(--line); border-radius: 4px; padding: 6px; font-size: 12px;
  white-space: pre-wrap; overflow-wrap: anywhere; }
summary { cursor: pointer; font-family: ui-monospace, monospace; font-size: 12px;
  max-width: 420px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
button { font: inherit; font-size: 12px; padding: 3px 10px; border-radius: 6px; cursor: pointer;
  border: 1px solid var(--line); background: #fff; margin: 0 4px 4px 0; }
button.replay { border-color: var(--accent); color: var(--accent); }
button.purge { border-color: var(--bad); color: var(--bad); }
button:disabled { opacity: .45; cursor: not-allowed; }
tr.done td { background: #f0fff4; }
tr.failed td { background: #fff5f5; }
form.filter { display: flex; gap: 8px; align-items: center; margin: 8px 0; }
form.filter input { font: inherit; font-size: 12px; padding: 2px 6px; width: 140px; }
form.filter input[type="number"] { width: 70px; }
"""

OVERVIEW_JS = """
(() => {
  const state = document.getElementById("state");
  const target = document.getElementById("overview");
  async function refresh() {
    try {
      const response = await fetch("api/status", {cache: "no-store"});
      const body = await response.json();
      if (!response.ok) throw new Error(body.detail || response.statusText);
      target.innerHTML = body.html;  // rendered and escaped by the server
      state.textContent = "live, updated " + new Date().toLocaleTimeString();
      state.className = "";
    } catch (error) {
      state.textContent = "refresh failed: " + error.message;
      state.className = "error";
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }
  setTimeout(refresh, REFRESH_MS);
})();
""".replace("REFRESH_MS", str(REFRESH_MS))

DEAD_LETTERS_JS = """
(() => {
  const page = document.body.dataset;
  async function act(button) {
    const row = button.closest("tr");
    const id = row.dataset.id;
    const verb = button.dataset.verb;
    const body = {ids: [id]};
    if (page.group) body.group = page.group;
    if (verb === "purge" && !confirm("Delete dead letter " + id + " for good?")) return;
    if (verb === "replay" && page.otherGroups) {
      const question = "Replaying re-publishes the event on topic " + page.name +
        ": every group reads it again, also " + page.otherGroups + ". Replay?";
      if (!confirm(question)) return;
      body.all_groups = true;
    }
    const status = row.querySelector(".result");
    row.querySelectorAll("button").forEach((b) => { b.disabled = true; });
    status.textContent = verb === "replay" ? "replaying..." : "purging...";
    try {
      const url = "../api/dlq/" + encodeURIComponent(page.name) + "/" + verb;
      const response = await fetch(url, {
        method: "POST",
        headers: {"Content-Type": "application/json", "CSRF_HEADER": "1"},
        body: JSON.stringify(body),
      });
      const result = await response.json();
      if (!response.ok) throw new Error(result.detail || response.statusText);
      let text;
      if (verb === "replay" && result.replayed[id]) text = "replayed as " + result.replayed[id];
      else if (verb === "purge" && result.deleted) text = "purged";
      else if (result.refused && result.refused[id]) throw new Error(result.refused[id]);
      else text = "not found (replayed or purged meanwhile?)";
      status.textContent = text;
      row.className = "done";
    } catch (error) {
      status.textContent = "failed: " + error.message;
      row.className = "failed";
      row.querySelectorAll("button").forEach((b) => { b.disabled = false; });
    }
  }
  document.querySelectorAll("button[data-verb]").forEach((button) => {
    button.addEventListener("click", () => act(button));
  });
})();
""".replace("CSRF_HEADER", CSRF_HEADER)
