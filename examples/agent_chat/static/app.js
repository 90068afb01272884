// Agent chat page.
//
// Sign-in: the link carries the token in its fragment (#token=...). The page moves it
// into this tab's sessionStorage and out of the address bar (history.replaceState), so
// it is neither bookmarked nor shared by copying the address; a reload keeps the tab
// signed in, "Sign out" forgets it. The token goes to the server as
// `Authorization: Bearer` (HTTP) and as the WebSocket subprotocols ("bearer", <token>).
//
// A link that is no longer valid (every demo start makes a new secret; tokens expire)
// is refused: the page asks /api/me why, says so and stops retrying.
//
// Resume protocol: every stored event carries an `id` ("<ms>-<seq>", increasing per
// user). The first connection of a page asks for the whole retained history of this
// tab's conversation (`?after=0-0`), so a reload shows the conversation again. The page
// remembers the last id it showed and, when the socket closes with 4409 (too slow:
// resync), 1012 (server/broker restart), 1001 (going away), 1013 (try again later) or
// drops (1006), reconnects with `?after=<last id>&conversation=<this tab's id>`; events
// it already showed (id <= last id) are dropped, so nothing appears twice.
"use strict";

const BEGINNING = "0-0";
const TOKEN_KEY = "agent-chat-token";
const RECONNECT_CODES = new Set([4409, 1012, 1001, 1006, 1013]);
const $ = (id) => document.getElementById(id);
const events = $("events");
const whoami = $("whoami");
const form = $("composer");
const input = $("text");
const agentSelect = $("agent");
const sendButton = $("send");
const counter = $("count");
const signOutButton = $("signout");

const runs = new Map(); // run_id -> the agent's <li>
const pending = new Map(); // ref -> {text, agent}: sent, not yet accepted or refused
let token = null;
let me = null; // /api/me: user_id, agents, catalogue, max_agents, max_message_chars
let socket = null;
let opened = false; // the current socket reached "hello"
let lastId = null; // id of the last stored event shown
let reconnects = 0;
let retryDelay = 250;
let stopped = false; // signed out or refused: never reconnect
let scopeTimer = null;
let refSeq = 0;

// one conversation id per tab, kept across reconnects and reloads (it only filters this
// user's own events: runs started from this tab are shown in this tab)
function conversationId() {
  let id = sessionStorage.getItem("agent-chat-conversation");
  if (!id) {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    id = "tab-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem("agent-chat-conversation", id);
  }
  return id;
}
const conversation = conversationId();

function takeToken() {
  const fromLink = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromLink) {
    sessionStorage.setItem(TOKEN_KEY, fromLink);
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem(TOKEN_KEY);
}

function idKey(id) {
  const [ms, seq] = id.split("-").map(BigInt);
  return [ms, seq];
}

function isNewer(id, than) {
  if (than === null) return true;
  const [a, b] = idKey(id);
  const [c, d] = idKey(than);
  return a > c || (a === c && b > d);
}

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

function line(cls, userId, label, text) {
  const li = el("li", cls);
  if (userId) li.dataset.userId = userId;
  const meta = el("span", "meta");
  if (userId) meta.append(el("span", "user", userId), " · ");
  meta.append(label);
  li.append(meta, el("span", "text", text));
  events.append(li);
  $("empty").hidden = true;
  li.scrollIntoView({ block: "end" });
  return li;
}

function setState(state, text) {
  whoami.dataset.state = state;
  whoami.textContent = text;
}

function runOf(event) {
  return event.run_id || event.request_id;
}

function agentLine(event) {
  const li = line("agent", event.user_id, `${event.agent} · turn ${event.turn ?? 1}`, "");
  li.dataset.runId = runOf(event);
  li.dataset.started = String(event.ts || "");
  const steps = el("ol", "steps");
  li.insertBefore(steps, li.querySelector(".text"));
  const status = el("span", "status running", "running…");
  li.append(status);
  return li;
}

const STEP_LABELS = { thinking: "thinking", tool_call: "calls", tool_result: "result" };

function finish(li, status, event) {
  const label = li.querySelector(".status");
  li.classList.add(status === "ok" ? "done" : status);
  label.className = `status ${status === "ok" ? "done" : status}`;
  const started = Number(li.dataset.started);
  const took = event.ts && started ? ` in ${((event.ts - started)).toFixed(2)} s` : "";
  label.textContent = {
    ok: `✓ done${took}`,
    error: "✗ failed",
    cancelled: "■ cancelled (the server stopped)",
    lost: "✗ lost: the worker running it stopped",
  }[status] || status;
}

function refused(event) {
  const wanted = pending.get(event.ref);
  pending.delete(event.ref);
  const label = event.agent ? `not sent to ${event.agent}` : "not sent";
  const li = line("error", event.user_id, label, event.text);
  if (wanted) {
    if (!input.value.trim()) input.value = wanted.text; // the message is never lost
    li.append(el("span", "hint", "Your message is still in the box below."));
    updateCounter();
  }
  if (event.code === "agent_limit") {
    // offer an agent the user may still use; the refused message stays in the box
    refreshScopes().then(() => {
      const allowed = agentSelect.querySelector("option:not([disabled])");
      if (agentSelect.selectedOptions[0]?.disabled && allowed) agentSelect.value = allowed.value;
    });
  }
}

function show(event) {
  const who = event.user_id;
  if (event.id && !event.synthetic) {
    if (!isNewer(event.id, lastId)) return; // already shown before a reconnect
    lastId = event.id;
    document.body.dataset.lastId = lastId;
  }
  switch (event.type) {
    case "hello":
      opened = true;
      retryDelay = 250;
      setState("open", `signed in as ${who}`);
      document.body.dataset.userId = who;
      updateCounter();
      refreshScopes();
      if (!events.children.length) $("empty").hidden = false;
      document.querySelector("#events li.events-down")?.remove();
      break;
    case "run_started": {
      if (event.ref && pending.has(event.ref)) {
        if (input.value.trim() === pending.get(event.ref).text) input.value = "";
        pending.delete(event.ref);
        updateCounter();
      }
      line("you", who, `you → ${event.agent}`, event.text);
      runs.set(runOf(event), agentLine(event));
      refreshScopes();
      break;
    }
    case "step": {
      const li = runs.get(runOf(event));
      if (!li) break;
      const step = el("li", `step ${event.step}`);
      step.append(el("span", "step-label", STEP_LABELS[event.step] || event.step), el("span", "step-text", event.text));
      li.querySelector(".steps").append(step);
      li.scrollIntoView({ block: "end" });
      break;
    }
    case "token": {
      let li = runs.get(runOf(event));
      if (!li) runs.set(runOf(event), (li = agentLine(event)));
      const text = li.querySelector(".text");
      text.textContent = text.textContent ? `${text.textContent} ${event.text}` : event.text;
      li.scrollIntoView({ block: "end" });
      break;
    }
    case "run_finished": {
      const li = runs.get(runOf(event));
      if (li) finish(li, event.status, event);
      runs.delete(runOf(event));
      refreshScopes();
      break;
    }
    case "run_lost": {
      const li = runs.get(runOf(event));
      if (li) finish(li, "lost", event);
      runs.delete(runOf(event));
      break;
    }
    case "gap":
      line("system", who, "gap", "some earlier events are no longer kept by the server; what follows is complete");
      break;
    case "error":
      if (event.code === "events_unavailable") {
        // the socket closes with 1013 and the page retries: say it once, not per retry
        setState("connecting", "events unavailable, retrying…");
        if (!document.querySelector("#events li.events-down")) {
          line("error events-down", who, "event service", event.text);
        }
      } else if (event.ref || event.code === "agent_limit" || event.code === "too_long") {
        refused(event);
      } else {
        line("error", who, "error", event.text);
      }
      break;
    case "run_heartbeat":
      break;
    default:
      line("system", who, event.type, JSON.stringify(event));
  }
}

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.headers || {}) };
  return fetch(path, { ...options, headers });
}

// The sign-in is no longer accepted: say why, forget the token, stop.
function gate(title, text) {
  stopped = true;
  clearInterval(scopeTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  if (socket) socket.close(1000);
  form.hidden = true;
  $("scopes").hidden = true;
  signOutButton.hidden = true;
  $("empty").hidden = true;
  $("gate-title").textContent = title;
  $("gate-text").textContent = text;
  $("gate").hidden = false;
  document.body.dataset.state = "gated";
}

async function explainRefusal(reply) {
  let body = {};
  try {
    body = await reply.json();
  } catch (_) {
    // not JSON: keep the generic message
  }
  setState("closed", "sign-in refused");
  if (body.error === "token_expired") {
    gate("Your sign-in has expired", "This sign-in link has expired. Use a fresh link from the terminal where the demo runs.");
  } else {
    gate(
      "This sign-in link is no longer valid",
      "The server did not accept it. Every start of the demo makes a new secret, so links printed by an earlier run stop working. Use a link printed by the demo that is running now.",
    );
  }
}

// After a refused or failed handshake a browser only sees 1006 (or 1008): ask the API why.
async function checkSignIn() {
  try {
    const reply = await api("/api/me");
    if (reply.status === 401) {
      await explainRefusal(reply);
      return false;
    }
    return reply.ok;
  } catch (_) {
    return true; // the server is unreachable: keep retrying
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ conversation, after: lastId ?? BEGINNING });
  opened = false;
  socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`, ["bearer", token]);
  socket.addEventListener("message", (message) => show(JSON.parse(message.data)));
  socket.addEventListener("close", async (close) => {
    sendButton.disabled = true;
    if (stopped) return;
    if (close.code === 1008 || (close.code === 1006 && !opened)) {
      if (!(await checkSignIn())) return;
    }
    if (RECONNECT_CODES.has(close.code)) {
      setState("connecting", `reconnecting (${close.code})…`);
      reconnects += 1;
      document.body.dataset.reconnects = String(reconnects);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    } else {
      setState("closed", `disconnected (${close.code})`);
      line("error", null, "disconnected", close.reason || "the server closed the connection; reload to reconnect");
    }
  });
}

function updateCounter() {
  const limit = me ? me.max_message_chars : 2000;
  const length = input.value.trim().length;
  const over = length - limit;
  counter.textContent = over > 0 ? `${length} / ${limit}: ${over} too many` : `${length} / ${limit}`;
  counter.classList.toggle("over", over > 0);
  sendButton.disabled = !opened || !length || over > 0 || socket?.readyState !== WebSocket.OPEN;
  input.style.height = "auto";
  input.style.height = `${Math.min(input.scrollHeight, 160)}px`;
}

function fillAgents(inUse, maxAgents) {
  const chosen = agentSelect.value;
  const atLimit = inUse.length >= maxAgents;
  agentSelect.replaceChildren(
    ...me.catalogue.map((name) => {
      const option = el("option", "", name);
      option.value = name;
      if (!inUse.includes(name) && atLimit) {
        option.disabled = true;
        option.textContent = `${name} (limit reached)`;
      }
      return option;
    }),
  );
  const keep = me.catalogue.includes(chosen) ? chosen : inUse[0] || me.catalogue[0];
  agentSelect.value = keep;
  agentSelect.title = `each user may use ${maxAgents} of these agents`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

async function refreshScopes() {
  if (stopped || !token) return;
  let reply;
  try {
    reply = await api("/api/scopes");
  } catch (_) {
    return;
  }
  if (reply.status === 401) return explainRefusal(reply);
  if (!reply.ok) return;
  const scopes = await reply.json();
  const user = scopes.user_scope;
  const agents = user.agents.map((a) => `${a.name} (${plural(a.turns, "turn")})`);
  const registry = user.registries ? "AgentRegistry" : "no AgentRegistry yet";
  $("scope-user").textContent =
    `${registry}: ${agents.length ? agents.join(", ") : "no agents yet"} ` +
    `(${agents.length} of ${user.max_agents} agents); remembers ${plural(user.memory, "message")}`;
  const others = scopes.connection_scopes - 1;
  $("scope-connections").textContent =
    `${plural(scopes.connection_scopes, "WebSocketBridge")}: this tab` +
    (others > 0 ? ` and ${plural(others, "other tab")}` : "");
  $("scope-requests").textContent = scopes.request_scopes
    ? `${plural(scopes.request_scopes, "AgentRun")} running`
    : "no AgentRun right now";
  document.body.dataset.connections = String(scopes.connection_scopes);
  fillAgents(user.agents.map((a) => a.name), user.max_agents);
}

function send() {
  const text = input.value.trim();
  if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
  if (text.length > me.max_message_chars) return;
  const ref = `m-${Date.now().toString(36)}-${(refSeq += 1)}`;
  pending.set(ref, { text, agent: agentSelect.value });
  socket.send(JSON.stringify({ agent: agentSelect.value, text, ref }));
}

function signOut() {
  stopped = true;
  clearInterval(scopeTimer);
  sessionStorage.removeItem(TOKEN_KEY);
  if (socket) socket.close(1000, "signed out");
  setState("closed", "signed out");
  gate("Signed out", "This tab forgot its sign-in and closed its connection (its WebSocketBridge was cleaned up). Open a sign-in link to come back: your agents remember you until your session ends.");
}

async function start() {
  token = takeToken();
  if (!token) {
    setState("closed", "not signed in");
    gate("Not signed in", "Open one of the sign-in links printed by the demo.");
    return;
  }
  let reply;
  try {
    reply = await api("/api/me");
  } catch (_) {
    setState("closed", "server unreachable");
    gate("The demo server is not reachable", "Start it with `bash scripts/demo`, then reload.");
    return;
  }
  if (reply.status === 401) return explainRefusal(reply);
  me = await reply.json();
  fillAgents(me.agents, me.max_agents);
  form.hidden = false;
  $("scopes").hidden = false;
  signOutButton.hidden = false;
  connect();
  scopeTimer = setInterval(refreshScopes, 2000);
}

form.addEventListener("submit", (submit) => {
  submit.preventDefault();
  send();
});
input.addEventListener("keydown", (key) => {
  if (key.key === "Enter" && !key.shiftKey && !key.isComposing) {
    key.preventDefault();
    send();
  }
});
input.addEventListener("input", updateCounter);
signOutButton.addEventListener("click", signOut);
start();
