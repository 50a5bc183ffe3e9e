// People (admins): the audit log — who acknowledged, changed a threshold, activated a model or
// ran a roll — and the user accounts.
import { api, auth, el, fmt, notify } from "./api.js";

let oldest = null; // the last id shown: "Older" pages back from it

function detailText(detail) {
  return Object.entries(detail).filter(([, v]) => v !== null && v !== undefined && v !== false)
    .map(([k, v]) => `${k}: ${typeof v === "number" ? Number(v.toFixed(4)) : Array.isArray(v) ? v.join(", ") : v}`).join(" · ");
}

async function loadAudit(more = false) {
  const params = new URLSearchParams();
  for (const [k, v] of new FormData(document.getElementById("audit-filters"))) if (v) params.set(k, v);
  params.set("limit", "100");
  if (more && oldest) params.set("before_id", oldest);
  const rows = await api(`/v1/audit?${params}`);
  const body = document.querySelector("#audit-table tbody");
  const lines = rows.map((r) => el("tr", { "data-id": r.id },
    el("td", {}, fmt.time(r.at)), el("td", { "data-testid": "audit-actor" }, r.actor),
    el("td", { "data-testid": "audit-action" }, r.action), el("td", {}, r.target ?? ""), el("td", { class: "hint" }, detailText(r.detail))));
  if (more) body.append(...lines); else body.replaceChildren(...lines);
  if (rows.length) oldest = rows[rows.length - 1].id;
  document.getElementById("audit-older").hidden = rows.length < 100;
}

async function change(name, body, message) {
  try {
    await api(`/v1/users/${encodeURIComponent(name)}`, { method: "PATCH", body });
    notify(message, "info");
  } catch (e) { notify(`${name}: ${e.message}`); }
  refreshPeople();
}

async function loadUsers() {
  const users = await api("/v1/users");
  document.querySelector("#user-table tbody").replaceChildren(...users.map((u) => el("tr", { "data-user": u.name },
    el("td", {}, u.name), el("td", {}, u.role), el("td", { "data-testid": "user-state" }, u.disabled ? "disabled" : "enabled"),
    el("td", {}, el("div", { class: "actions" },
      el("button", { onclick: () => change(u.name, { disabled: !u.disabled }, `${u.name} ${u.disabled ? "enabled" : "disabled"}`) }, u.disabled ? "Enable" : "Disable"),
      el("button", { onclick: () => change(u.name, { role: u.role === "admin" ? "operator" : "admin" }, `${u.name} is now ${u.role === "admin" ? "operator" : "admin"}`) },
        u.role === "admin" ? "Make operator" : "Make admin"),
      el("button", { onclick: async () => {
        if (!confirm(`Remove user ${u.name}? The audit log keeps the name.`)) return;
        try { await api(`/v1/users/${encodeURIComponent(u.name)}`, { method: "DELETE" }); notify(`${u.name} removed`, "info"); }
        catch (e) { notify(`${u.name}: ${e.message}`); }
        refreshPeople();
      } }, "Remove"))))));
}

export async function refreshPeople() {
  if (auth.role !== "admin") return;
  try { await Promise.all([loadAudit(), loadUsers()]); } catch (e) { notify(`people: ${e.message}`); }
}

export function initPeople() {
  document.getElementById("audit-filters").addEventListener("submit", (e) => { e.preventDefault(); loadAudit(); });
  document.getElementById("audit-older").addEventListener("click", () => loadAudit(true).catch((e) => notify(e.message)));
  document.getElementById("user-add").addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const body = Object.fromEntries(new FormData(form));
    try {
      await api("/v1/users", { method: "POST", body });
      notify(`user ${body.name} added (${body.role})`, "info");
      form.reset();
    } catch (err) { notify(`add user: ${err.message}`); }
    refreshPeople();
  });
}
