// Live view: one card per camera; each WebSocket event updates the lamp and score and fetches the
// newest annotated frame (no long-lived image connections, so a dozen cameras fit a browser).
import { api, el, fmt, setImage, wsUrl } from "./api.js";

const cards = new Map(); // camera id → { node, socket, ... }
let audio = null;

function beep() {
  if (!document.getElementById("sound").checked) return;
  audio = audio || new AudioContext();
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.frequency.value = 880;
  gain.gain.value = 0.2;
  osc.connect(gain).connect(audio.destination);
  osc.start();
  osc.stop(audio.currentTime + 0.35);
}

function card(camera) {
  const img = el("img", { alt: `camera ${camera.id}`, "data-testid": "frame" });
  const lamp = el("div", { class: "lamp idle", "data-testid": "lamp" }, "—");
  const fill = el("div", { class: "fill" });
  const bar = el("div", { class: "scorebar", title: "normalised score; the mark is the threshold" }, fill, el("div", { class: "mark" }));
  const stats = el("div", { class: "stats" });
  const health = el("div", { class: "stats", "data-testid": "health" });
  const node = el("article", { class: "card camera", "data-camera": camera.id },
    el("header", {}, el("h2", {}, camera.id), el("span", { class: "state" }, camera.state)),
    img, lamp, bar, stats, health);
  return { node, img, lamp, fill, stats, health, times: [], fetching: false, pending: false, socket: null, frames: 0 };
}

function showEvent(c, event) {
  const defect = event.is_defect;
  c.lamp.className = `lamp ${defect ? "defect" : "ok"}`;
  c.lamp.textContent = event.verdict;
  c.fill.style.width = `${Math.round(100 * event.normalized_score)}%`;
  c.fill.style.background = defect ? "var(--defect)" : "var(--ok)";
  const now = performance.now();
  c.times = [...c.times.filter((t) => now - t < 5000), now];
  const fps = c.times.length > 1 ? (c.times.length - 1) / ((now - c.times[0]) / 1000) : 0;
  c.frames += 1;
  c.stats.replaceChildren(...[
    el("span", {}, "score ", el("b", { "data-testid": "score" }, fmt.num(event.normalized_score, 2))),
    el("span", {}, el("b", {}, fps.toFixed(1)), " fps"),
    el("span", {}, el("b", {}, Math.round(event.latency_end_to_end_ms ?? event.latency_ms)), " ms"),
    el("span", {}, "frame ", el("b", { "data-testid": "sequence" }, event.sequence)),
    event.roll_id ? el("span", {}, `roll ${event.roll_id} @ `, el("b", {}, `${event.along_m.toFixed(2)} m`)) : null,
    // a drifting or face-down web: scored turned to the training weave, worth a look at the line
    event.alignment ? el("span", { "data-testid": "alignment", title: "scored after turning the scan to the training scans' weave" },
      "weave ", el("b", {}, fmt.alignment(event.alignment))) : null,
    // a web break or the end of a roll: the camera sees only background, nothing was inspected
    event.fabric_in_view === false ? el("span", { class: "fail", "data-testid": "no-fabric" }, el("b", {}, "no fabric in view")) : null,
  ].filter(Boolean));
  if (defect) {
    c.node.classList.remove("alarm");
    void c.node.offsetWidth; // restart the animation
    c.node.classList.add("alarm");
    beep();
    document.dispatchEvent(new CustomEvent("fabricad:defect", { detail: event }));
  }
  refreshFrame(c, event.camera_id);
}

async function refreshFrame(c, id) {
  if (c.fetching) { c.pending = true; return; } // at most one frame request in flight per camera
  c.fetching = true;
  try { await setImage(c.img, `/v1/cameras/${encodeURIComponent(id)}/latest.jpg`); } catch { /* next event retries */ }
  c.fetching = false;
  if (c.pending) { c.pending = false; refreshFrame(c, id); }
}

function connect(id, c) {
  const socket = new WebSocket(wsUrl(`/v1/cameras/${encodeURIComponent(id)}/events`));
  c.socket = socket;
  socket.onmessage = (m) => showEvent(c, JSON.parse(m.data));
  socket.onclose = () => { if (cards.get(id) === c) setTimeout(() => cards.get(id) === c && connect(id, c), 2000); };
}

export async function refreshCameras() {
  refreshLine();
  let cameras = [];
  try { cameras = await api("/v1/cameras"); } catch { return; }
  const grid = document.getElementById("cameras");
  document.getElementById("no-cameras").hidden = cameras.length > 0;
  const seen = new Set();
  for (const camera of cameras) {
    seen.add(camera.id);
    let c = cards.get(camera.id);
    if (!c) {
      c = card(camera);
      cards.set(camera.id, c);
      grid.append(c.node);
      connect(camera.id, c);
    }
    c.node.querySelector(".state").textContent = camera.error ? `${camera.state}: ${camera.error}` : camera.state;
    // an industrial camera's own account: what it lost is fabric nobody inspected
    const h = camera.health || {};
    const lost = h.frames_lost || 0; // by the camera's block counter: incomplete buffers included
    c.health.replaceChildren(...[
      h.device ? el("span", {}, h.device) : null,
      h.acquired_fps !== undefined ? el("span", {}, el("b", {}, h.acquired_fps.toFixed(1)), ` fps from the camera (${h.trigger})`) : null,
      h.frames_lost !== undefined ? el("span", { class: lost ? "fail" : "", "data-testid": "lost" }, "lost ", el("b", {}, String(lost)),
        h.lines_lost ? ` (${h.lines_lost} lines)` : "") : null,
      h.temperature_c != null ? el("span", {}, el("b", {}, `${h.temperature_c} °C`)) : null,
    ].filter(Boolean));
  }
  for (const [id, c] of cards) {
    if (!seen.has(id)) { cards.delete(id); c.socket?.close(); c.node.remove(); }
  }
}

// The PLC side (`line_outputs`): is each broker, PLC or OPC UA server reachable, what waits for it.
async function refreshLine() {
  let sinks = [];
  try { sinks = await api("/v1/line"); } catch { return; }
  document.getElementById("line").hidden = sinks.length === 0;
  document.querySelector("#line-table tbody").replaceChildren(...sinks.map((s) => el("tr", { "data-sink": s.name },
    el("td", {}, s.name), el("td", {}, s.kind), el("td", {}, s.target),
    el("td", {}, el("span", { class: `conn ${s.state}`, "data-testid": "line-state" }, s.state)),
    el("td", {}, String(s.queued)), el("td", {}, String(s.sent)), el("td", { class: s.dropped ? "bad" : "" }, String(s.dropped)),
    el("td", {}, s.last_error ?? "—"))));
}

export function resetLive() {
  for (const c of cards.values()) { c.socket?.close(); c.node.remove(); }
  cards.clear();
}
