// Rolls: list with grade, start/end, the roll map (a zoomable strip, markers coloured by defect
// type, as the PDF's map) and the reports.
import { api, auth, download, el, fmt, notify } from "./api.js";

// matplotlib's tab10, the PDF roll map's palette (fabricad/rolls/report.py), in first-seen order
const TYPE_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#525252"];
const UNTYPED = "#969696";
const kindOf = (d) => d.label || d.type || "untyped";

function typeColours(defects) {
  const colours = new Map();
  let next = 0;
  for (const d of defects) {
    const kind = kindOf(d);
    if (colours.has(kind)) continue;
    colours.set(kind, ["untyped", "unknown", "false_alarm"].includes(kind) ? UNTYPED : TYPE_PALETTE[next++ % TYPE_PALETTE.length]);
  }
  return colours;
}
const SVG = "http://www.w3.org/2000/svg";
let selected = null;
let zoom = 1;

const svg = (tag, attrs = {}) => {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
};

function rollMap(roll, onPick) {
  const length = Math.max(roll.length_m, ...roll.defect_list.map((d) => d.along_m[1]), 0.001);
  const width = Math.max(900, 900 * zoom);
  const height = 140;
  const sx = (width - 40) / length;
  const sy = (height - 40) / roll.width_mm;
  const map = svg("svg", { class: "rollmap", width, height, "data-testid": "rollmap" });
  map.append(svg("rect", { class: "fabric", x: 20, y: 10, width: length * sx, height: roll.width_mm * sy }));
  const hatch = svg("pattern", { id: "uninspected-hatch", width: 8, height: 8, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" });
  hatch.append(svg("rect", { width: 8, height: 8, fill: "#cfcfcf" }), svg("line", { x1: 0, y1: 0, x2: 0, y2: 8, stroke: "#7a7a7a", "stroke-width": 2 }));
  const defs = svg("defs");
  defs.append(hatch);
  map.append(defs);
  // hatched: what no camera result vouches for
  const hatched = (testid, box, text) => {
    const rect = svg("rect", { class: "uninspected", "data-testid": testid, ...box, fill: "url(#uninspected-hatch)" });
    const title = svg("title");
    title.textContent = text;
    rect.append(title);
    map.append(rect);
  };
  for (const s of roll.uninspected ?? []) {  // stretches some camera did not see
    hatched("uninspected", { x: 20 + s.along_m[0] * sx, y: 10, width: Math.max((s.along_m[1] - s.along_m[0]) * sx, 1), height: roll.width_mm * sy },
      `not inspected: ${s.along_m[0].toFixed(2)}–${s.along_m[1].toFixed(2)} m (camera ${s.cameras.join(", ")})`);
  }
  for (const [a, b] of roll.uncovered_across_mm ?? []) {  // bands of the width no camera's lane covers
    hatched("uncovered", { x: 20, y: 10 + a * sy, width: length * sx, height: Math.max((b - a) * sy, 1) },
      `in no camera's view: ${a}–${b} mm across`);
  }
  const step = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250].find((s) => (s * sx) > 60) ?? 500;
  for (let m = 0; m <= length + 1e-9; m += step) {
    const x = 20 + m * sx;
    map.append(svg("line", { x1: x, x2: x, y1: height - 30, y2: height - 24, stroke: "#9aa5b1" }));
    const label = svg("text", { x: x - 8, y: height - 10 });
    label.textContent = `${+m.toFixed(2)} m`;
    map.append(label);
  }
  const colours = typeColours(roll.defect_list);
  for (const d of roll.defect_list) {
    const rect = svg("rect", {
      class: "defect", "data-id": d.id,
      x: 20 + d.along_m[0] * sx - 3, y: 10 + d.across_mm[0] * sy - 3,
      width: Math.max((d.along_m[1] - d.along_m[0]) * sx, 0) + 6, height: Math.max((d.across_mm[1] - d.across_mm[0]) * sy, 0) + 6,
      fill: colours.get(kindOf(d)), "data-type": kindOf(d),
    });
    const title = svg("title");
    title.textContent = `#${d.id}: ${kindOf(d)}, ${d.points} points, ${d.length_mm} × ${d.width_mm} mm at ${d.along_m[0].toFixed(3)} m`;
    rect.append(title);
    rect.addEventListener("click", () => onPick(d));
    map.append(rect);
  }
  return map;
}

function legend(defects) {
  const colours = typeColours(defects);
  return el("p", { class: "legend", "data-testid": "roll-legend" }, ...[...colours].map(([kind, colour]) =>
    el("span", { class: "legend-item" }, el("span", { class: "swatch", style: `background:${colour}` }), ` ${kind} `)));
}

function defectInfo(roll, d) {
  const operator = auth.role !== null;
  const label = (value) => api(`/v1/rolls/${encodeURIComponent(roll.id)}/defects/${d.id}/label`, { method: "POST", body: { label: value } })
    .then(() => showRoll(roll.id)).catch((e) => notify(e.message));
  return el("div", { class: "card", "data-testid": "roll-defect" },
    el("h4", {}, `Defect #${d.id}: ${d.points} points`),
    el("p", {}, `${d.along_m[0].toFixed(3)}–${d.along_m[1].toFixed(3)} m along, ${d.across_mm[0].toFixed(0)}–${d.across_mm[1].toFixed(0)} mm across`),
    el("p", {}, `${d.length_mm} mm long, ${d.width_mm} mm wide · cameras ${d.cameras.join(", ")} · label ${d.label ?? "—"}`
      + ` · predicted type ${d.type ?? "—"}${d.type_confidence != null ? ` (${(100 * d.type_confidence).toFixed(0)} %)` : ""}`),
    el("p", {}, "seen in frames: ", d.sightings.map((id) => el("a", { href: "#", onclick: (e) => { e.preventDefault(); document.dispatchEvent(new CustomEvent("fabricad:show-defect", { detail: id })); } }, `#${id} `))),
    el("div", { class: "actions" },
      el("button", { disabled: !operator, onclick: () => label("false_alarm") }, "False alarm"),
      el("button", { disabled: !operator, onclick: () => label("hole") }, "Hole")),
  );
}

async function showRoll(id) {
  selected = id;
  const detail = document.getElementById("roll-detail");
  let roll;
  try { roll = await api(`/v1/rolls/${encodeURIComponent(id)}`); } catch (e) { notify(e.message); return; }
  const g = roll.grade;
  const info = el("div");
  const wrap = el("div", { class: "rollmap-wrap" }, rollMap(roll, (d) => info.replaceChildren(defectInfo(roll, d))));
  const zoomer = el("input", { type: "range", min: 1, max: 20, step: 0.5, value: zoom, "aria-label": "zoom", oninput: (e) => {
    zoom = Number(e.target.value); wrap.replaceChildren(rollMap(roll, (d) => info.replaceChildren(defectInfo(roll, d))));
  } });
  const operator = auth.role !== null;
  detail.replaceChildren(...[ // the optional parts are null when absent: not "null" on the page
    el("h3", {}, `Roll ${roll.id} · ${roll.article}`),
    el("p", { class: g.passed ? "pass" : "fail", "data-testid": "roll-grade" },
      `${g.passed ? "PASS" : "FAIL"} · ${g.points} points · ${g.points_per_100_m2.toFixed(1)} / 100 m² (limit ${g.limit_per_100_m2})`),
    ...g.reasons.map((r) => el("p", { class: "hint" }, r)),
    el("p", {}, `${roll.status} · ${roll.length_m.toFixed(2)} m × ${roll.width_mm} mm · ${roll.defect_list.length} defects`),
    roll.uninspected?.length ? el("p", { class: "fail", "data-testid": "roll-uninspected" },
      `not inspected: ${g.uninspected_m.toFixed(2)} m in ${roll.uninspected.length} stretch${roll.uninspected.length > 1 ? "es" : ""} (hatched on the map)`) : null,
    roll.uncovered_across_mm?.length ? el("p", { class: "fail", "data-testid": "roll-uncovered" },
      `in no camera's view: ${roll.uncovered_across_mm.map(([a, b]) => `${a}–${b} mm`).join(", ")} across (hatched on the map)`) : null,
    el("label", { class: "hint" }, "zoom ", zoomer), wrap, legend(roll.defect_list), info,
    el("div", { class: "actions" },
      roll.status === "running" ? el("button", { disabled: !operator, onclick: async () => {
        try { await api(`/v1/rolls/${encodeURIComponent(id)}/end`, { method: "POST" }); await refreshRolls(); } catch (e) { notify(e.message); }
      } }, "End roll") : null,
      ...["pdf", "csv", "json"].map((f) => el("button", { onclick: () => download(`/v1/rolls/${encodeURIComponent(id)}/report.${f}`, `roll-${id}.${f}`).catch((e) => notify(e.message)) }, `Report ${f.toUpperCase()}`))),
  ].filter(Boolean));
}

export async function refreshRolls() {
  let rolls;
  try { rolls = await api("/v1/rolls"); } catch (e) { notify(`rolls: ${e.message}`); return; }
  document.querySelector("#roll-table tbody").replaceChildren(...rolls.map((r) => el("tr", { "data-id": r.id, onclick: () => showRoll(r.id) },
    el("td", {}, r.id), el("td", {}, r.article), el("td", {}, r.status), el("td", {}, `${r.length_m.toFixed(2)} m`),
    el("td", {}, r.grade.points_per_100_m2.toFixed(1)), el("td", { class: r.grade.passed ? "pass" : "fail" }, r.grade.passed ? "PASS" : "FAIL"))));
  if (selected) showRoll(selected);
}

export function initRolls() {
  document.getElementById("roll-start").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const cameras = String(f.get("cameras")).split(",").map((s) => s.trim()).filter(Boolean).map((s) => {
      const [id, rest = "0:1"] = s.split("@");
      const [offset, scale = "1"] = rest.split(":");
      return { camera_id: id, offset_mm: Number(offset), mm_per_px: Number(scale) };
    });
    const body = { id: f.get("id"), article: f.get("article"), width_mm: Number(f.get("width_mm")), cameras };
    if (f.get("speed_m_per_min")) body.speed_m_per_min = Number(f.get("speed_m_per_min"));
    try { await api("/v1/rolls", { method: "POST", body }); e.target.reset(); selected = body.id; await refreshRolls(); }
    catch (err) { notify(`start roll: ${err.message}`); }
  });
}
