// The operator dashboard: tabs, sign-in, and the periodic refresh of what is on screen.
import { api, auth, notify } from "./api.js";
import { initDefects, refreshDefects } from "./defects.js";
import { initInspect } from "./inspect.js";
import { refreshCameras, resetLive } from "./live.js";
import { refreshModels } from "./models.js";
import { initRolls, refreshRolls } from "./rolls.js";

const refreshers = { live: refreshCameras, defects: refreshDefects, rolls: refreshRolls, models: refreshModels, inspect: () => {} };
let current = "live";

function show(tab) {
  current = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === tab));
  location.hash = tab;
  refreshers[tab]();
}

async function signIn(key) {
  auth.set(key);
  try {
    const who = await api("/v1/whoami");
    auth.role = who.role;
    if (key && !who.role) { auth.set(""); notify("unknown API key"); }
    document.getElementById("role").textContent = who.role ? `signed in: ${who.role}` : "read-only (not signed in)";
    document.getElementById("signin").hidden = !!who.role;
    document.getElementById("key").hidden = !!who.role;
    document.getElementById("signout").hidden = !who.role;
  } catch (e) { notify(`sign-in: ${e.message}`); }
  resetLive();
  show(current);
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));
document.getElementById("signin").addEventListener("click", () => signIn(document.getElementById("key").value.trim()));
document.getElementById("key").addEventListener("keydown", (e) => { if (e.key === "Enter") signIn(e.target.value.trim()); });
document.getElementById("signout").addEventListener("click", () => { document.getElementById("key").value = ""; signIn(""); });
document.addEventListener("fabricad:show-defect", () => show("defects"));
initDefects();
initRolls();
initInspect();
if (location.hash.slice(1) in refreshers) current = location.hash.slice(1);
signIn(auth.key());
setInterval(() => { if (current !== "inspect" && current !== "models") refreshers[current](); }, 5000);
