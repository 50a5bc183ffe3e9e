// Models: which one each camera runs, activation, a threshold slider that previews the
// false-alarm rate on calibration images and the recall on confirmed defects before applying,
// and the teach-in that sets the threshold from the line's own good fabric.
import { api, auth, el, fmt, notify } from "./api.js";

async function preview(name, value, out) {
  try {
    const p = await api(`/v1/models/${encodeURIComponent(name)}/calibration?value=${value}`);
    out.replaceChildren(
      el("span", {}, "threshold"), el("b", { "data-testid": "preview-value" }, fmt.num(p.value, 4)),
      el("span", {}, p.normal_source === "teach-in" ? `false alarms on the line's good fabric (teach-in, ${p.normal_scores.length} frames)` : "false alarms on calibration images"),
      el("b", { "data-testid": "preview-far" }, fmt.pct(p.false_alarm_rate)),
      el("span", {}, `confirmed defects caught (${p.defect_scores.length})`), el("b", {}, fmt.pct(p.recall)),
      el("span", {}, `labelled false alarms still raised (${p.false_alarm_scores.length})`), el("b", {}, fmt.pct(p.false_alarms_still_raised)),
    );
  } catch (e) { out.replaceChildren(el("span", {}, e.message)); }
}

const modelPath = (name) => `/v1/models/${encodeURIComponent(name)}`;

async function teachInStatus(name) {
  try { return await api(`${modelPath(name)}/teach-in`); } catch (e) { if (e.status === 404) return null; throw e; }
}

// Teach-in: none → a start button; collecting → progress, refreshed every 2 s while shown; ready →
// the proposed threshold next to the one in force, to apply or drop.
function teachInBlock(model, status) {
  const admin = auth.role === "admin";
  const act = (path, method, message) => async () => {
    try { await api(`${modelPath(model.name)}/teach-in${path}`, { method, body: path === "" && method === "POST" ? { frames: Number(frames.value), zones: Number(zones.value) } : undefined }); if (message) notify(message, "info"); refreshModels(); }
    catch (e) { notify(`teach-in: ${e.message}`); }
  };
  const frames = el("input", { type: "number", min: 20, max: 100000, value: 500, "aria-label": `teach-in frames of ${model.name}`, disabled: !admin });
  const zones = el("input", { type: "number", min: 0, max: 256, value: 0, "aria-label": `teach-in zones of ${model.name}`, disabled: !admin,
    title: "also a threshold per band across the width (a selvedge, a reed mark): 0 for none" });
  const cancel = el("button", { disabled: !admin, onclick: act("", "DELETE") }, "Cancel teach-in");
  let body;
  if (!status) {
    body = [el("span", {}, "While the line runs good fabric: "), frames, " frames, ", zones, " zones ",
      el("button", { disabled: !admin, onclick: act("", "POST") }, "Teach in on good fabric")];
  } else if (status.state === "collecting") {
    body = [el("span", { "data-testid": "teach-in-progress" }, `teach-in: ${status.collected} of ${status.frames} frames${status.camera_id ? ` from ${status.camera_id}` : ""}`), " ", cancel];
  } else {
    const bands = status.proposed_zones ? ` and ${status.proposed_zones.length} zone thresholds (${fmt.num(Math.min(...status.proposed_zones), 3)}–${fmt.num(Math.max(...status.proposed_zones), 3)})` : "";
    body = [el("span", { "data-testid": "teach-in-ready" }, `teach-in ready: threshold ${fmt.num(status.proposed.value, 4)}${bands} for ${fmt.pct(status.target_fpr)} false alarms on ${status.collected} frames (now ${fmt.num(model.threshold.value, 4)}) `),
      el("button", { disabled: !admin, onclick: act("/apply", "POST", `threshold of ${model.name} set by the teach-in`) }, "Apply teach-in threshold"), " ", cancel];
  }
  const block = el("div", { class: "teach-in", "data-testid": "teach-in" }, ...body);
  if (status && status.state === "collecting") {
    setTimeout(async () => {
      if (!block.isConnected) return;
      try { block.replaceWith(teachInBlock(model, await teachInStatus(model.name))); } catch { /* shown again on the next refresh */ }
    }, 2000);
  }
  return block;
}

// The operating point: which regions raise an alarm beyond the threshold — their size in fabric
// millimetres (the camera's mm/px) — and the zones' thresholds a teach-in gave.
function operatingPointBlock(model, op) {
  const admin = auth.role === "admin";
  const field = (label, key, value, step) => el("label", {}, label, el("input", { type: "number", min: 0, step, value, "data-key": key,
    "aria-label": `${label} of ${model.name}`, disabled: !admin }));
  const inputs = [field("mm per pixel", "mm_per_px", op?.mm_per_px ?? 0.25, 0.01), field("smallest area, mm²", "min_area_mm2", op?.min_area_mm2 ?? 0, 0.5),
    field("shortest length, mm", "min_length_mm", op?.min_length_mm ?? 0, 0.5),
    field("selvedge band, mm", "selvedge_mm", op?.selvedge_mm ?? 0, 1),
    field("selvedge threshold (empty: band uninspected)", "selvedge_threshold", op?.selvedge_threshold ?? "", 0.01),
    field("frames in a row (cameras)", "persistence_frames", op?.persistence_frames ?? 1, 1)];
  const send = (method) => async () => {
    // An empty field is "none" (the band's threshold), not zero.
    const body = Object.fromEntries(inputs.map((l) => { const i = l.querySelector("input"); return [i.dataset.key, i.value === "" ? null : Number(i.value)]; }));
    try { await api(`${modelPath(model.name)}/operating-point`, { method, body: method === "PUT" ? body : undefined }); notify(`operating point of ${model.name} ${method === "PUT" ? "set" : "cleared"}`, "info"); refreshModels(); }
    catch (e) { notify(`operating point: ${e.message}`); }
  };
  const zones = op?.zone_thresholds ? ` · ${op.zone_thresholds.length} zone thresholds from the teach-in` : "";
  return el("div", { class: "operating-point", "data-testid": "operating-point" },
    el("p", { class: "hint" }, op ? `alarms only for regions ≥ ${op.min_area_mm2} mm² and ≥ ${op.min_length_mm} mm at ${op.mm_per_px} mm/px${zones}`
      + (op.selvedge_mm > 0 ? ` · ${op.selvedge_mm} mm beside the fabric edges `
         + (op.selvedge_threshold ? `judged at ${op.selvedge_threshold.toPrecision(4)}` : "uninspected") : "")
      + (op.persistence_frames > 1 ? ` · seen by a camera in ${op.persistence_frames} frames in a row` : "") : "every region above the threshold raises an alarm"),
    ...inputs, el("button", { disabled: !admin, onclick: send("PUT") }, "Apply size rules"),
    op ? el("button", { disabled: !admin, onclick: send("DELETE") }, "Threshold alone") : null);
}

// Defect types: what the model's classifier knows, and a refit from the operators' type labels.
function typesBlock(model, admin) {
  const status = el("span", { class: "types-status", "data-testid": "defect-types" }, "");
  const show = (t) => {
    const v = t.validation?.classifier;
    status.textContent = `types: ${Object.entries(t.types).map(([k, n]) => `${k} (${n})`).join(", ")}`
      + (v ? ` · held-out accuracy ${(100 * v.accuracy).toFixed(0)} %` : "") + ` · ${t.from_service} from operators' labels`;
  };
  api(`${modelPath(model.name)}/defect-types`).then(show).catch(() => { status.textContent = "no type classifier: regions are named spot / line along / line across"; });
  const refit = el("button", { disabled: !admin, onclick: async () => {
    try { const t = await api(`${modelPath(model.name)}/defect-types`, { method: "POST" }); show(t); notify(`defect types of ${model.name} refitted`, "info"); }
    catch (e) { notify(`defect types: ${e.message}`); }
  } }, "Refit defect types from labels");
  return el("div", { class: "types" }, status, " ", refit);
}

// Retraining from the operators' labels: frames labelled false alarms teach a fine-tune (a job of
// its own, refreshed every 2 s while it runs); its candidate is shown beside the model in use and
// can be activated only if it is not worse; bundles it replaced are kept to roll back to.
function retrainBlock(model, r) {
  const admin = auth.role === "admin";
  const act = (path, method, message, body) => async () => {
    try { await api(`${modelPath(model.name)}${path}`, { method, body }); if (message) notify(message, "info"); refreshModels(); }
    catch (e) { notify(`retrain: ${e.message}`); }
  };
  const job = r.job;
  const parts = [el("h3", {}, "Retrain from labels")];
  if (job && job.state === "running") {
    parts.push(el("p", { "data-testid": "retrain-progress" }, `retraining: ${job.phase}`, job.steps ? ` · step ${job.step} of ${job.steps}` : "",
      " ", el("progress", { max: job.steps || 1, value: job.step })),
    el("button", { disabled: !admin, onclick: act("/retrain", "DELETE", `retrain of ${model.name} cancelled`) }, "Cancel retrain"));
  } else if (job && job.state === "done") {
    const show = (c, x) => (c.unit === "share" ? fmt.pct(x) : fmt.num(x, 3));
    parts.push(el("p", { class: "hint" }, `the model in use (${job.old_version}) beside the candidate (${job.new_version}), each at its own calibrated threshold:`),
    el("table", { class: "comparison", "data-testid": "retrain-comparison" },
      el("thead", {}, el("tr", {}, ...["", "images", "in use", "candidate", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...job.comparison.map((c) => el("tr", { class: c.verdict },
        el("td", {}, c.measure, c.gate ? "" : " (shown only)"), el("td", {}, String(c.images)), el("td", {}, show(c, c.old)), el("td", {}, show(c, c.new)),
        el("td", {}, c.verdict))))),
    el("p", { "data-testid": "retrain-verdict" }, job.offered
      ? `The candidate is ${job.verdict === "better" ? "better" : "not worse"} than the model in use${job.reasons.length ? `: ${job.reasons.join("; ")}` : ""}.`
      : `The candidate is worse and is not offered: ${job.reasons.join("; ")}.`),
    el("button", { disabled: !admin || !job.offered, onclick: act("/retrain/activate", "POST", `${model.name} now runs the retrained model`) }, "Activate the candidate"),
    " ", el("button", { disabled: !admin, onclick: act("/retrain", "DELETE", "candidate discarded") }, "Discard"));
  } else {
    if (job && job.state === "failed") parts.push(el("p", { class: "fail", "data-testid": "retrain-error" }, `the last retrain failed: ${job.error}`));
    if (job && job.state === "activated") parts.push(el("p", { class: "hint" }, `retrained ${fmt.time(job.updated_at)}: ${job.old_version} → ${job.new_version}`));
    parts.push(el("button", { disabled: !admin || !r.available, title: r.reason || "", onclick: act("/retrain", "POST", `retrain of ${model.name} started`) },
      `Retrain with ${r.false_alarms} confirmed false alarm${r.false_alarms === 1 ? "" : "s"}`),
    r.reason ? el("span", { class: "hint", "data-testid": "retrain-reason" }, ` ${r.reason}`) : null);
  }
  if (r.history.length) {
    const last = r.history[0];
    parts.push(el("p", { class: "hint", "data-testid": "retrain-history" }, `kept to go back to: ${r.history.map((k) => `${k.version} (${fmt.time(k.kept_at)})`).join(", ")} `,
      el("button", { disabled: !admin, onclick: act("/rollback", "POST", `${model.name} rolled back to ${last.version}`, {}) }, `Roll back to ${last.version}`)));
  }
  const block = el("div", { class: "retrain", "data-testid": "retrain" }, ...parts);
  if (job && job.state === "running") {
    setTimeout(async () => {
      if (!block.isConnected) return;
      try { block.replaceWith(retrainBlock(model, await api(`${modelPath(model.name)}/retrain`))); } catch { /* shown again on the next refresh */ }
    }, 2000);
  }
  return block;
}

function modelCard(model, cameras, calibration, teachIn, retrain, op) {
  const admin = auth.role === "admin";
  const scores = [...calibration.normal_scores, ...calibration.defect_scores, ...calibration.false_alarm_scores, model.threshold.value];
  const lo = Math.min(...scores) * 0.9;
  const hi = Math.max(...scores) * 1.3;
  const slider = el("input", { type: "range", min: lo, max: hi, step: (hi - lo) / 500, value: model.threshold.value,
    "aria-label": `threshold of ${model.name}`, disabled: !admin });
  const out = el("div", { class: "preview" });
  let timer = null;
  slider.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(() => preview(model.name, slider.value, out), 120); });
  const apply = el("button", { disabled: !admin, onclick: async () => {
    try {
      await api(`/v1/models/${encodeURIComponent(model.name)}/threshold`, { method: "PUT", body: { value: Number(slider.value) } });
      notify(`threshold of ${model.name} is now ${Number(slider.value).toFixed(4)}`, "info");
      refreshModels();
    } catch (e) { notify(`threshold: ${e.message}`); }
  } }, "Apply threshold");
  // A threshold set here is kept across restarts; this puts back the one calibrated into the bundle.
  const reset = el("button", { disabled: !admin, onclick: async () => {
    try {
      const t = await api(`/v1/models/${encodeURIComponent(model.name)}/threshold`, { method: "DELETE" });
      notify(`threshold of ${model.name} is back to the model's own ${t.value.toFixed(4)}`, "info");
      refreshModels();
    } catch (e) { notify(`threshold: ${e.message}`); }
  } }, "Reset to the model's threshold");
  preview(model.name, model.threshold.value, out);
  const cameraRows = cameras.map((c) => el("label", {}, `${c.id}: `,
    el("select", { disabled: !admin, "aria-label": `model of camera ${c.id}`, onchange: async (e) => {
      try { await api(`/v1/cameras/${encodeURIComponent(c.id)}/model`, { method: "PUT", body: { model: e.target.value || null } }); notify(`camera ${c.id} runs ${e.target.value || "the active model"}`, "info"); }
      catch (err) { notify(`camera model: ${err.message}`); }
    } }, el("option", { value: "" }, "(active model)"), el("option", { value: model.name, selected: c.model === model.name }, model.name))));
  return el("article", { class: "card", "data-model": model.name },
    el("h2", {}, model.name, model.active ? " · active" : ""),
    el("p", { class: "hint" }, `${model.teacher} · ${model.precision} · input ${model.input.join("×")} · ${model.version} · ${model.backend ?? "not loaded"}${model.texture_alignment ? " · aligns the weave to training" : ""}`),
    el("p", {}, "threshold in force: ", el("b", { "data-testid": "threshold" }, fmt.num(model.threshold.value, 4)), ` (${model.threshold.method})`),
    el("div", { class: "threshold" }, slider, out, apply, reset),
    teachInBlock(model, teachIn),
    operatingPointBlock(model, op),
    typesBlock(model, admin),
    retrain ? retrainBlock(model, retrain) : null,
    model.active ? null : el("button", { disabled: !admin, onclick: async () => {
      try { await api(`/v1/models/${encodeURIComponent(model.name)}/activate`, { method: "POST" }); refreshModels(); } catch (e) { notify(e.message); }
    } }, "Make active"),
    cameras.length ? el("div", {}, el("h3", {}, "Cameras"), cameraRows) : null,
  );
}

export async function refreshModels() {
  try {
    const [models, cameras] = await Promise.all([api("/v1/models"), api("/v1/cameras")]);
    const [calibrations, teachIns, retrains, ops] = await Promise.all([
      Promise.all(models.map((m) => api(`${modelPath(m.name)}/calibration`))),
      Promise.all(models.map((m) => teachInStatus(m.name))),
      Promise.all(models.map((m) => api(`${modelPath(m.name)}/retrain`).catch(() => null))),
      Promise.all(models.map((m) => api(`${modelPath(m.name)}/operating-point`).catch(() => null))),
    ]);
    document.getElementById("model-list").replaceChildren(...models.map((m, i) => modelCard(m, cameras, calibrations[i], teachIns[i], retrains[i], ops[i])));
  } catch (e) { notify(`models: ${e.message}`); }
}
