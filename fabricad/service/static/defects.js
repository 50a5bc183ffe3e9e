// The defect log: filters, a table with thumbnails, a detail view and acknowledgement by keyboard.
import { api, auth, download, el, fmt, notify, setImage } from "./api.js";

export const DEFECT_TYPES = ["hole", "stain", "broken_yarn", "missing_yarn", "slub", "knot", "fold", "thick_place"];
let rows = [];
let selected = null;
const thumbs = new Map(); // defect id → blob URL: thumbnails are fetched once, not on every refresh

function thumbnail(d) {
  const img = el("img", { class: "thumb", alt: "" });
  if (thumbs.has(d.id)) img.src = thumbs.get(d.id);
  else if (d.has_image) {
    api(`/v1/defects/${d.id}/overlay`, { raw: true }).then((r) => r.blob()).then((b) => {
      thumbs.set(d.id, URL.createObjectURL(b));
      img.src = thumbs.get(d.id);
    }).catch(() => {});
  }
  return img;
}

function query() {
  const form = new FormData(document.getElementById("defect-filters"));
  const params = new URLSearchParams({ limit: "100" });
  for (const [k, v] of form.entries()) {
    if (!v) continue;
    params.set(k, k === "since" || k === "until" ? new Date(v).toISOString() : v);
  }
  return params;
}

export async function refreshDefects() {
  let page;
  try { page = await api(`/v1/defects?${query()}`); } catch (e) { notify(`defects: ${e.message}`); return; }
  rows = page.items;
  const body = document.querySelector("#defect-table tbody");
  body.replaceChildren(...rows.map((d) => {
    const thumb = thumbnail(d);
    return el("tr", { "data-id": d.id, class: selected === d.id ? "selected" : null, onclick: () => select(d.id) },
      el("td", {}, thumb), el("td", {}, d.id), el("td", {}, fmt.time(d.created_at)), el("td", {}, d.camera_id ?? "upload"),
      el("td", {}, d.model), el("td", {}, fmt.num(d.normalized_score, 2)),
      el("td", { "data-testid": "label" }, d.acknowledged ? d.label : el("b", {}, "to acknowledge")));
  }));
  const open = await api("/v1/defects?acknowledged=false&limit=1").catch(() => null);
  const badge = document.getElementById("unacked");
  badge.hidden = !open?.total;
  badge.textContent = open?.total ?? "";
  if (selected !== null && rows.some((d) => d.id === selected)) select(selected, false);
}

function select(id, scroll = true) {
  selected = id;
  const d = rows.find((r) => r.id === id);
  document.querySelectorAll("#defect-table tbody tr").forEach((tr) => tr.classList.toggle("selected", Number(tr.dataset.id) === id));
  if (scroll) document.querySelector(`#defect-table tr[data-id="${id}"]`)?.scrollIntoView({ block: "nearest" });
  const detail = document.getElementById("defect-detail");
  if (!d) { detail.replaceChildren(el("p", { class: "empty" }, "Select a defect.")); return; }
  const picture = el("img", { alt: `overlay of defect ${d.id}` });
  if (d.has_image) setImage(picture, `/v1/defects/${d.id}/overlay`).catch(() => {});
  const canAck = auth.role !== null;
  const ack = (label) => acknowledge(d.id, label);
  detail.replaceChildren(
    el("h3", {}, `Defect ${d.id}`),
    d.has_image ? picture : el("p", { class: "empty" }, "image no longer kept"),
    el("p", {}, `${fmt.time(d.created_at)} · camera ${d.camera_id ?? "upload"} · ${d.model} (${d.model_version})`),
    el("p", {}, `score ${fmt.num(d.score)} (threshold ${fmt.num(d.threshold)}), normalised ${fmt.num(d.normalized_score, 2)}`),
    d.alignment ? el("p", { "data-testid": "defect-alignment", title: "scored after turning the scan to the training scans' weave" },
      `weave ${fmt.alignment(d.alignment)} to match training`) : null,
    d.roll_id ? el("p", {}, `roll ${d.roll_id} at ${fmt.num(d.along_m, 3)} m, ${fmt.num(d.across_mm, 0)} mm across`) : null,
    el("table", {}, el("thead", {}, el("tr", {}, ["x", "y", "w", "h", "area", "max"].map((h) => el("th", {}, h)))),
      el("tbody", {}, d.regions.map((r) => el("tr", {}, [r.x, r.y, r.width, r.height, r.area, fmt.num(r.max_score)].map((v) => el("td", {}, v)))))),
    el("p", { "data-testid": "ack-state" }, d.acknowledged ? `acknowledged: ${d.label} by ${d.acknowledged_by}` : "not acknowledged"),
    el("div", { class: "actions" },
      el("button", { class: "true", onclick: () => ack("true_defect"), disabled: !canAck }, "True defect (t)"),
      el("button", { class: "false", onclick: () => ack("false_alarm"), disabled: !canAck }, "False alarm (f)"),
      el("select", { "aria-label": "defect type", disabled: !canAck, onchange: (e) => e.target.value && ack(e.target.value) },
        el("option", { value: "" }, "defect type…"), DEFECT_TYPES.map((t, i) => el("option", { value: t }, `${i + 1} ${t}`)))),
  );
}

async function acknowledge(id, label) {
  try {
    await api(`/v1/defects/${id}/ack`, { method: "POST", body: { label } });
    const index = rows.findIndex((r) => r.id === id);
    await refreshDefects();
    const next = rows.find((r, i) => i > index && !r.acknowledged) ?? rows.find((r) => !r.acknowledged);
    if (next) select(next.id);
  } catch (e) { notify(`acknowledge: ${e.message}`); }
}

function onKey(event) {
  if (!document.getElementById("defects").classList.contains("active")) return;
  if (event.target.matches("input, select, textarea")) return;
  const index = rows.findIndex((r) => r.id === selected);
  const keys = { t: "true_defect", f: "false_alarm", h: "hole" };
  if (event.key === "j" || event.key === "ArrowDown") select(rows[Math.min(index + 1, rows.length - 1)]?.id);
  else if (event.key === "k" || event.key === "ArrowUp") select(rows[Math.max(index - 1, 0)]?.id);
  else if (selected !== null && keys[event.key]) acknowledge(selected, keys[event.key]);
  else if (selected !== null && /^[1-8]$/.test(event.key)) acknowledge(selected, DEFECT_TYPES[Number(event.key) - 1]);
  else return;
  event.preventDefault();
}

export function initDefects() {
  document.getElementById("defect-filters").addEventListener("submit", (e) => { e.preventDefault(); refreshDefects(); });
  document.getElementById("export-false-alarms").addEventListener("click", async (e) => {
    e.preventDefault();
    try { await download("/v1/defects/export.zip?label=false_alarm", "false-alarms.zip"); } catch (err) { notify(`export: ${err.message}`); }
  });
  document.addEventListener("keydown", onKey);
  document.addEventListener("fabricad:show-defect", (e) => { selected = e.detail; refreshDefects(); });
  let pending = null; // new defects arrive live: refresh the table at most twice a second
  document.addEventListener("fabricad:defect", () => { pending ??= setTimeout(() => { pending = null; refreshDefects(); }, 500); });
}
