// Agent chat page: reads the sign-in token from the link (#token=...), opens the
// WebSocket with the token in Sec-WebSocket-Protocol ("bearer", <token>) and shows
// every streamed event with the user id the server stamped on it.
//
// Resume protocol: every stored event carries an `id` ("<ms>-<seq>", increasing per
// user). The page remembers the last id it showed and, when the socket closes with
// 4409 (too slow: resync), 1012 (server/broker restart), 1001 (going away) or drops
// (1006), reconnects with `?after=<last id>&conversation=<this tab's id>`; events
// it already showed (id <= last id) are dropped, so nothing appears twice.
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token");
const events = document.getElementById("events");
const whoami = document.getElementById("whoami");
const form = document.getElementById("composer");
const input = document.getElementById("text");
const agent = document.getElementById("agent");
const sendButton = document.getElementById("send");
const runs = new Map(); // run_id -> <li> being streamed into
const RECONNECT_CODES = new Set([4409, 1012, 1001, 1006]);

let socket = null;
let lastId = null; // id of the last stored event shown
let reconnects = 0;
let retryDelay = 250;

// one conversation id per tab, kept across reconnects (it only filters this user's
// own events: runs started from this tab are shown in this tab)
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

function line(cls, userId, label, text) {
  const li = document.createElement("li");
  li.className = cls;
  if (userId) li.dataset.userId = userId;
  const meta = document.createElement("span");
  meta.className = "meta";
  if (userId) {
    const user = document.createElement("span");
    user.className = "user";
    user.textContent = userId;
    meta.append(user, " · ");
  }
  meta.append(label);
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  li.append(meta, body);
  events.append(li);
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

function show(event) {
  const who = event.user_id;
  if (event.id && !event.synthetic) {
    if (!isNewer(event.id, lastId)) return; // already shown before a reconnect
    lastId = event.id;
    document.body.dataset.lastId = lastId;
  }
  switch (event.type) {
    case "hello":
      setState("open", `signed in as ${who}`);
      document.body.dataset.userId = who;
      sendButton.disabled = false;
      if (reconnects === 0) {
        line("system", who, "server", "connected; messages run on your own agents");
      }
      break;
    case "run_started":
      line("you", who, `you → ${event.agent}`, event.text);
      runs.set(runOf(event), line("agent", who, event.agent, ""));
      break;
    case "token": {
      const li = runs.get(runOf(event)) || line("agent", who, event.agent, "");
      runs.set(runOf(event), li);
      const text = li.querySelector(".text");
      text.textContent = text.textContent ? `${text.textContent} ${event.text}` : event.text;
      break;
    }
    case "run_finished": {
      const li = runs.get(runOf(event));
      if (li) li.classList.add(event.status === "ok" ? "done" : "failed");
      runs.delete(runOf(event));
      break;
    }
    case "run_lost": {
      const li = runs.get(runOf(event));
      if (li) li.classList.add("lost");
      runs.delete(runOf(event));
      line("error", who, "run lost", "the worker running this agent stopped; ask again");
      break;
    }
    case "gap":
      line("system", who, "gap", "some earlier events are no longer available; reload for the full history");
      break;
    case "error":
      line("error", who, "error", event.text);
      break;
    case "run_heartbeat":
      break;
    default:
      line("system", who, event.type, JSON.stringify(event));
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const query = new URLSearchParams({ conversation });
  if (lastId !== null) query.set("after", lastId);
  socket = new WebSocket(`${scheme}://${location.host}/ws?${query}`, ["bearer", token]);
  socket.addEventListener("open", () => {
    retryDelay = 250;
  });
  socket.addEventListener("message", (message) => show(JSON.parse(message.data)));
  socket.addEventListener("close", (close) => {
    sendButton.disabled = true;
    if (RECONNECT_CODES.has(close.code)) {
      setState("connecting", `reconnecting (${close.code})…`);
      reconnects += 1;
      document.body.dataset.reconnects = String(reconnects);
      setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 5000);
    } else {
      setState("closed", `disconnected (${close.code})`);
    }
  });
}

if (!token) {
  setState("closed", "not signed in");
  line("error", null, "sign-in", "No token: open one of the sign-in links printed by `python -m examples.agent_chat`.");
} else {
  connect();
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    const text = input.value.trim();
    if (!text || !socket || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ agent: agent.value, text }));
    input.value = "";
  });
}
