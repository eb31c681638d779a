// The room page: camera + mic in, a full mesh of RTCPeerConnections, signaling over the server's WebSocket.
// No trickle ICE (aiortc cannot take it): every offer/answer is sent once ICE gathering is complete.
// `window.reactdiffRoom` holds the live state (peers, reaction counts, the listener) for debugging and for the
// browser tests. Who listens (persona, expressiveness) is the engine's: it says so on the reactions channel, and this
// page's controls ask it for a change there (engine/rooms/control.py has the messages).
"use strict";

const state = { id: null, peers: {}, reactions: { count: 0, last: null, errors: 0 }, stats: {}, closed: null,
  listener: null, controlsSent: 0,
  delay: { captured: {}, samples: [], estimates: [], timeOrigin: performance.timeOrigin } };
window.reactdiffRoom = state;
const params = new URLSearchParams(location.search);
const roomId = location.pathname.split("/").filter(Boolean)[1];
const token = params.get("token") || "";
const myName = (params.get("name") || "guest-" + Math.random().toString(36).slice(2, 6)).slice(0, 64);
const REACTIONS_CHANNEL_ID = 0;  // negotiated out of band, like the engine does
let ws = null;
let localStream = null;

function setStatus(text) { document.getElementById("status").textContent = text; }
function showBanner(text) { const b = document.getElementById("banner"); b.textContent = text; b.hidden = false; }

function tile(id, label, role) {
  let el = document.getElementById("tile-" + id);
  if (!el) {
    el = document.createElement("div");
    el.id = "tile-" + id;
    el.className = "tile " + (role || "");
    el.innerHTML = '<video autoplay playsinline></video><span class="label"></span><span class="stats" hidden></span>';
    document.getElementById("tiles").appendChild(el);
  }
  el.querySelector(".label").textContent = label;
  return el;
}

function playWithSound(video) {
  video.play().catch(() => {  // autoplay policy: start muted, offer a button for sound
    video.muted = true;
    video.play();
    const button = document.createElement("button");
    button.className = "unmute";
    button.textContent = "Click for sound";
    button.onclick = () => { video.muted = false; button.remove(); };
    video.parentElement.appendChild(button);
  });
}

// --- The delay probe: frame indices in a barcode along a frame's top edge (layout: engine/runtime/probe.py) ---
// A camera whose frames carry their index (the test clips do) and an avatar whose frames carry the index of the
// newest speaker frame they depended on give the delay from this browser's capture to its display, measured.
const PROBE_INDEX_BITS = 14, PROBE_TICK_BITS = 6, PROBE_CHECK_BITS = 6, PROBE_MIN_CONTRAST = 64;
const PROBE_DATA_BITS = PROBE_INDEX_BITS + PROBE_TICK_BITS;
const PROBE_CELLS = 2 + PROBE_DATA_BITS + PROBE_CHECK_BITS;
const PROBE_KEEP = 9000;  // avatar frames kept in state.delay.samples (5 minutes at 30 fps)
const PROBE_RECENT = 90;  // the frames the shown delay is the median of (3 s)

function crc6(value, bits) {  // x^6 + x + 1, initial 0, most significant bit first
  let crc = 0;
  for (let i = bits - 1; i >= 0; i--) {
    const feedback = ((value >> i) & 1) ^ ((crc >> 5) & 1);
    crc = (crc << 1) & 0x3f;
    if (feedback) crc ^= 0x03;
  }
  return crc;
}

// A reader of the code in a video element's current frame: the strip scaled to 4x4 pixels per cell, each cell's
// middle 2x2 read as luma against the two reference cells. Returns {index, tick} or null.
function probeReader() {
  const canvas = document.createElement("canvas");
  canvas.width = PROBE_CELLS * 4;
  canvas.height = 4;
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  return (video) => {
    if (!video.videoWidth) return null;
    const rows = Math.max(8, Math.floor(video.videoHeight / 20));
    ctx.drawImage(video, 0, 0, video.videoWidth, rows, 0, 0, canvas.width, canvas.height);
    const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
    const luma = [];
    for (let c = 0; c < PROBE_CELLS; c++) {
      let sum = 0;
      for (const [x, y] of [[1, 1], [2, 1], [1, 2], [2, 2]]) {
        const i = 4 * (y * canvas.width + 4 * c + x);
        sum += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      }
      luma.push(sum / 4);
    }
    if (luma[0] - luma[1] < PROBE_MIN_CONTRAST) return null;
    let word = 0;
    for (let c = 2; c < PROBE_CELLS; c++) word = (word << 1) | (luma[c] > (luma[0] + luma[1]) / 2 ? 1 : 0);
    const data = word >>> PROBE_CHECK_BITS;
    if (crc6(data, PROBE_DATA_BITS) !== (word & 0x3f)) return null;
    return { index: data >>> PROBE_TICK_BITS, tick: data & ((1 << PROBE_TICK_BITS) - 1) };
  };
}

// Every frame `video` presents, `onCode(code, metadata)` with what its barcode says (frames without one skipped).
function watchCodes(video, onCode) {
  const read = probeReader();
  const onFrame = (now, metadata) => {
    const code = read(video);
    if (code) onCode(code, metadata);
    video.requestVideoFrameCallback(onFrame);
  };
  video.requestVideoFrameCallback(onFrame);
}

// Own camera: when each index was captured (performance.now() clock). Avatar: each frame's index -> delay.
function probeCamera(video) {
  watchCodes(video, (code, m) => { state.delay.captured[code.index] = m.captureTime ?? m.presentationTime; });
}

function probeAvatar(video) {
  watchCodes(video, (code, m) => {
    const capture = state.delay.captured[code.index];
    if (capture === undefined) return;
    const display = m.expectedDisplayTime;
    const samples = state.delay.samples;
    samples.push({ index: code.index, tick: code.tick, capture, display, presented: m.presentationTime,
      received: m.receiveTime ?? null, delay: display - capture });
    if (samples.length > PROBE_KEEP) samples.splice(0, samples.length - PROBE_KEEP);
  });
}

// The median delay of the avatar frames measured in the last 3 s (ms), or null.
function measuredDelay() {
  const since = performance.now() - 3000;
  const recent = state.delay.samples.slice(-PROBE_RECENT).filter((s) => s.display > since).map((s) => s.delay);
  recent.sort((a, b) => a - b);
  return recent.length ? recent[Math.floor(recent.length / 2)] : null;
}

function send(message) { if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message)); }

function iceComplete(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === "complete") { pc.removeEventListener("icegatheringstatechange", check); resolve(); } };
    pc.addEventListener("icegatheringstatechange", check);
    setTimeout(resolve, 3000);  // send what we have rather than never
  });
}

// float32 little-endian bytes (a msgpack bin, possibly a view into the message) -> Float32Array
function float32s(bin) {
  const view = new DataView(bin.buffer, bin.byteOffset, bin.byteLength);
  const out = new Float32Array(bin.byteLength / 4);
  for (let k = 0; k < out.length; k++) out[k] = view.getFloat32(4 * k, true);
  return out;
}

// --- Who listens: the engine's persona and expressiveness, shown and changed here ---
const CONTROL_EVERY_MS = 250;  // a dragged slider sends its value at most 4 times a second (the engine's limit)
let controlTimer = null, pendingExpressiveness = null, lastControlAt = 0;

function sendControl(change) {  // to every engine in the room: {persona} and/or {expressiveness: X | null}
  const data = MessagePack.encode({ v: 1, type: "listener-set", ...change });
  for (const peer of Object.values(state.peers)) {
    if (peer.role === "engine" && peer.channel && peer.channel.readyState === "open") {
      peer.channel.send(data);
      state.controlsSent += 1;
    }
  }
  lastControlAt = performance.now();
}

function sendExpressiveness(value) {  // throttled: the latest value, at most every CONTROL_EVERY_MS
  pendingExpressiveness = value;
  if (controlTimer !== null) return;
  const wait = Math.max(0, lastControlAt + CONTROL_EVERY_MS - performance.now());
  controlTimer = setTimeout(() => {
    controlTimer = null;
    sendControl({ expressiveness: pendingExpressiveness });
  }, wait);
}

function who(id) {
  if (id === "start") return "the engine's start";
  if (id === state.id) return "you";
  return (state.known[id] && state.known[id].name) || id;
}

// The engine's `listener` message: build the menu (once per list of personas), show the current values.
function showListener(msg) {
  state.listener = { persona: msg.persona, expressiveness: msg.expressiveness, personas: msg.personas,
    range: msg.range, by: msg.by };
  const menu = document.getElementById("persona");
  if (Array.from(menu.options, (o) => o.value).join("\n") !== msg.personas.join("\n")) {
    menu.replaceChildren(...msg.personas.map((name) => new Option(name, name)));
  }
  menu.value = msg.persona;
  const slider = document.getElementById("expressiveness");
  [slider.min, slider.max] = msg.range;
  if (document.activeElement !== slider) slider.value = msg.expressiveness ?? 1;
  document.getElementById("expressiveness-value").textContent =
    msg.expressiveness === null ? "auto (as the persona moves)" : msg.expressiveness.toFixed(2) + "x";
  document.getElementById("listener-by").textContent = "set by " + who(msg.by);
  document.getElementById("listener").hidden = false;
}

document.getElementById("persona").onchange = (event) => sendControl({ persona: event.target.value });
document.getElementById("expressiveness").oninput = (event) => sendExpressiveness(Number(event.target.value));
document.getElementById("expressiveness-auto").onclick = () => sendControl({ expressiveness: null });
document.getElementById("listener").onsubmit = (event) => event.preventDefault();

// `MessagePack` is @msgpack/msgpack's browser build (static/vendor, from npm: scripts/vendor_js.sh)
function onReaction(peer, event) {
  try {
    const msg = MessagePack.decode(new Uint8Array(event.data));
    if (msg.type === "listener") { showListener(msg); return; }
    if (msg.type !== "face") return;
    state.reactions.count += 1;
    state.reactions.last = { from: peer.id, i: msg.i, t: msg.t, ts: msg.ts, face: Array.from(float32s(msg.face)) };
  } catch (err) {
    state.reactions.errors += 1;
  }
}

function createPeer(info) {
  const pc = new RTCPeerConnection({ iceServers: [] });
  const peer = { id: info.id, name: info.name, role: info.role, pc, stream: null, channel: null };
  state.peers[info.id] = peer;
  for (const track of localStream ? localStream.getTracks() : []) pc.addTrack(track, localStream);
  if (!localStream) {  // no camera/mic: still receive
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
  }
  peer.channel = pc.createDataChannel("reactions", { negotiated: true, id: REACTIONS_CHANNEL_ID });
  peer.channel.binaryType = "arraybuffer";
  peer.channel.onmessage = (event) => onReaction(peer, event);
  const el = tile(info.id, info.name + (info.role === "engine" ? " (avatar)" : ""), info.role);
  pc.ontrack = (event) => {
    peer.stream = event.streams[0] || new MediaStream([event.track]);
    const video = el.querySelector("video");
    if (video.srcObject !== peer.stream) {
      video.srcObject = peer.stream;
      playWithSound(video);
      if (info.role === "engine") probeAvatar(video);
    }
  };
  pc.onconnectionstatechange = () => { peer.connectionState = pc.connectionState; };
  return peer;
}

function removePeer(id) {
  const peer = state.peers[id];
  if (peer) { peer.pc.close(); delete state.peers[id]; }
  const el = document.getElementById("tile-" + id);
  if (el) el.remove();
}

async function offerTo(info) {
  const peer = createPeer(info);
  await peer.pc.setLocalDescription(await peer.pc.createOffer());
  await iceComplete(peer.pc);
  send({ type: "offer", to: info.id, sdp: peer.pc.localDescription.sdp });
}

async function answer(from, sdp) {
  const peer = state.peers[from] || createPeer(state.known[from] || { id: from, name: from, role: "browser" });
  await peer.pc.setRemoteDescription({ type: "offer", sdp });
  await peer.pc.setLocalDescription(await peer.pc.createAnswer());
  await iceComplete(peer.pc);
  send({ type: "answer", to: from, sdp: peer.pc.localDescription.sdp });
}

// The delay this browser sees, estimated without the probe: the engine's part (its stats: from the speaker's input
// reaching it to the avatar frame going to its encoder) plus what this browser's WebRTC stats say about the rest:
// its camera's encoder and pacer, the network both ways (the round trip), the avatar's jitter buffer and decoder
// here, each as the mean since the last estimate, and a fixed PACING_MS: on average half an avatar frame
// (the engine's encoder takes frames on its own 30 fps clock) and half a 60 Hz screen refresh.
const PACING_MS = 1000 / 30 / 2 + 1000 / 60 / 2;
const RTP_TOTALS = { outbound: ["totalEncodeTime", "framesEncoded", "totalPacketSendDelay", "packetsSent"],
  inbound: ["jitterBufferDelay", "jitterBufferEmittedCount", "totalDecodeTime", "framesDecoded"] };

async function estimateDelay(peer, engineMs) {
  const now = { outbound: {}, inbound: {}, rtt: 0 };
  (await peer.pc.getStats()).forEach((s) => {
    const side = s.type === "outbound-rtp" ? "outbound" : s.type === "inbound-rtp" ? "inbound" : null;
    if (side && s.kind === "video") for (const k of RTP_TOTALS[side]) now[side][k] = s[k] || 0;
    if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) now.rtt = s.currentRoundTripTime;
  });
  const before = peer.rtpTotals || { outbound: {}, inbound: {} };
  peer.rtpTotals = now;
  const mean = (side, total, count) => {
    const n = now[side][count] - (before[side][count] || 0);
    return n > 0 ? (1000 * (now[side][total] - (before[side][total] || 0))) / n : 0;
  };
  return engineMs + mean("outbound", "totalEncodeTime", "framesEncoded") + mean("outbound", "totalPacketSendDelay", "packetsSent")
    + 1000 * now.rtt + mean("inbound", "jitterBufferDelay", "jitterBufferEmittedCount")
    + mean("inbound", "totalDecodeTime", "framesDecoded") + PACING_MS;
}

// "delay: 172 ms (measured)" while the probe's barcodes are read, else "delay: ~190 ms (estimated)" (the estimate
// is kept in state.delay.estimates either way, to be checked against what was measured).
async function delayLine(peer, stats) {
  if (peer.role !== "engine" || typeof stats.engine_delay_ms !== "number") return null;
  const estimate = await estimateDelay(peer, stats.engine_delay_ms);
  state.delay.estimates.push({ at: performance.now(), ms: estimate });
  if (state.delay.estimates.length > PROBE_KEEP) state.delay.estimates.shift();
  const measured = measuredDelay();
  if (measured !== null) return "delay: " + Math.round(measured) + " ms (measured)";
  return "delay: ~" + Math.round(estimate) + " ms (estimated)";
}

async function showStats(from, stats) {
  state.stats[from] = stats;
  const el = document.getElementById("tile-" + from);
  const peer = state.peers[from];
  if (!el) return;
  const lines = Object.entries(stats).map(([k, v]) => k + ": " + (typeof v === "number" ? +v.toFixed(1) : v));
  const delay = peer ? await delayLine(peer, stats) : null;
  const box = el.querySelector(".stats");
  box.textContent = (delay ? [delay, ...lines] : lines).join("\n");
  box.hidden = false;
}

async function onMessage(event) {
  const msg = JSON.parse(event.data);
  switch (msg.type) {
    case "welcome":
      state.id = msg.id;
      setStatus("in room " + roomId + " as " + myName);
      for (const p of msg.peers) { state.known[p.id] = p; await offerTo(p); }
      break;
    case "peer-joined": state.known[msg.peer.id] = msg.peer; break;
    case "peer-left": removePeer(msg.id); break;
    case "offer": await answer(msg.from, msg.sdp); break;
    case "answer": if (state.peers[msg.from]) await state.peers[msg.from].pc.setRemoteDescription({ type: "answer", sdp: msg.sdp }); break;
    case "stats": showStats(msg.from, msg.stats).catch((err) => showBanner(String(err))); break;
    case "room-closed": state.closed = msg.reason; showBanner("The room was closed (" + msg.reason + ")."); break;
    case "error": showBanner("Server: " + msg.message); break;
  }
}

async function start() {
  state.known = {};
  try {
    localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
    const me = tile("self", myName + " (you)", "self");
    const video = me.querySelector("video");
    video.muted = true;
    video.srcObject = localStream;
    probeCamera(video);
  } catch (err) {
    showBanner("No camera/mic (" + err.name + "): joining to watch only. Browsers allow them only on https or localhost.");
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  ws = new WebSocket(scheme + "://" + location.host + "/ws/" + roomId + "?token=" + encodeURIComponent(token));
  ws.onopen = () => send({ type: "join", name: myName, role: "browser" });
  let chain = Promise.resolve();  // handle messages one at a time, in order
  ws.onmessage = (event) => { chain = chain.then(() => onMessage(event)).catch((err) => showBanner(String(err))); };
  ws.onclose = () => { setStatus("disconnected"); if (!state.closed) showBanner("Disconnected from the room server."); };
}

document.getElementById("leave").onclick = () => {
  send({ type: "leave" });
  for (const id of Object.keys(state.peers)) removePeer(id);
  if (ws) ws.close();
  if (localStream) for (const t of localStream.getTracks()) t.stop();
  setStatus("left the room");
};
start();
