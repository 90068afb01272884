// Agent chat page: reads the sign-in token from the link (#token=...), opens the
// WebSocket with the token in Sec-WebSocket-Protocol ("bearer", <token>) and shows
// every streamed event with the user id the server stamped on it.
"use strict";

const params = new URLSearchParams(location.hash.slice(1));
const token = params.get("token");
const events = document.getElementById("events");
const whoami = document.getElementById("whoami");
const form = document.getElementById("composer");
const input = document.getElementById("text");
const agent = document.getElementById("agent");
const sendButton = document.getElementById("send");
const runs = new Map(); // request_id -> <li> being streamed into

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

function show(event) {
  const who = event.user_id;
  switch (event.type) {
    case "hello":
      setState("open", `signed in as ${who}`);
      document.body.dataset.userId = who;
      sendButton.disabled = false;
      line("system", who, "server", "connected; messages run on your own agents");
      break;
    case "run_started":
      line("you", who, `you → ${event.agent}`, event.text);
      runs.set(event.request_id, line("agent", who, event.agent, ""));
      break;
    case "token": {
      const li = runs.get(event.request_id) || line("agent", who, event.agent, "");
      runs.set(event.request_id, li);
      const text = li.querySelector(".text");
      text.textContent = text.textContent ? `${text.textContent} ${event.text}` : event.text;
      break;
    }
    case "run_finished": {
      const li = runs.get(event.request_id);
      if (li) li.classList.add("done");
      runs.delete(event.request_id);
      break;
    }
    case "error":
      line("error", who, "error", event.text);
      break;
    default:
      line("system", who, event.type, JSON.stringify(event));
  }
}

if (!token) {
  setState("closed", "not signed in");
  line("error", null, "sign-in", "No token: open one of the sign-in links printed by `python -m examples.agent_chat`.");
} else {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`, ["bearer", token]);
  socket.addEventListener("message", (message) => show(JSON.parse(message.data)));
  socket.addEventListener("close", (close) => {
    sendButton.disabled = true;
    setState("closed", `disconnected (${close.code})`);
  });
  form.addEventListener("submit", (submit) => {
    submit.preventDefault();
    const text = input.value.trim();
    if (!text || socket.readyState !== WebSocket.OPEN) return;
    socket.send(JSON.stringify({ agent: agent.value, text }));
    input.value = "";
  });
}
