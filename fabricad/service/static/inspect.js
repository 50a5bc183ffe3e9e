// One-off inspection: drop an image (or a wide scan) and see the verdict with its overlay.
import { api, el, fmt, notify } from "./api.js";

async function inspectFile(file) {
  const out = document.getElementById("inspect-result");
  out.replaceChildren(el("p", {}, `inspecting ${file.name}…`));
  const form = new FormData();
  form.append("file", file);
  try {
    const r = await api("/v1/inspect?overlay=true", { method: "POST", body: form });
    out.replaceChildren(
      el("div", { class: `lamp ${r.is_defect ? "defect" : "ok"}`, "data-testid": "inspect-verdict" }, r.verdict),
      el("p", {}, `${file.name}: ${r.width}×${r.height} px · score ${fmt.num(r.score)} (threshold ${fmt.num(r.threshold)}) · ${r.regions.length} regions · ${Math.round(r.latency_ms)} ms · ${r.model}${r.alignment ? ` · weave ${fmt.alignment(r.alignment)} to match training` : ""}${r.fabric_in_view === false ? " · no fabric in view: only background was seen" : ""}`),
      el("img", { src: `data:image/png;base64,${r.overlay_png_base64}`, alt: "overlay" }),
    );
  } catch (e) { out.replaceChildren(el("p", { class: "fail" }, e.message)); notify(e.message); }
}

export function initInspect() {
  const drop = document.getElementById("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); if (e.dataTransfer.files[0]) inspectFile(e.dataTransfer.files[0]); });
  document.getElementById("file").addEventListener("change", (e) => e.target.files[0] && inspectFile(e.target.files[0]));
}
