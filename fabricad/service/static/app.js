// The operator dashboard: tabs, sign-in, and the periodic refresh of what is on screen.
import { api, auth, notify } from "./api.js";
import { initDefects, refreshDefects } from "./defects.js";
import { initInspect } from "./inspect.js";
import { refreshCameras, resetLive } from "./live.js";
import { refreshModels } from "./models.js";
import { initPeople, refreshPeople } from "./people.js";
import { initRolls, refreshRolls } from "./rolls.js";

const refreshers = { live: refreshCameras, defects: refreshDefects, rolls: refreshRolls, models: refreshModels, people: refreshPeople, inspect: () => {} };
let current = "live";

function show(tab) {
  current = tab;
  document.querySelectorAll("#tabs button").forEach((b) => b.classList.toggle("active", b.dataset.tab === tab));
  document.querySelectorAll(".tab").forEach((s) => s.classList.toggle("active", s.id === tab));
  location.hash = tab;
  refreshers[tab]();
}

// Signing in keeps one credential: a user's session token (name and password) or, with no user
// name, the secret taken as an API key. Either goes with every call (api.js).
async function useCredential(secret, tried) {
  auth.set(secret);
  try {
    const who = await api("/v1/whoami");
    Object.assign(auth, { role: who.role, name: who.name, kind: who.kind });
    if (secret && !who.role) { auth.set(""); notify(tried === "key" ? "unknown API key" : "sign-in expired: sign in again"); }
    const signedIn = !!who.role;
    document.getElementById("role").textContent = !signedIn ? "read-only (not signed in)"
      : who.kind === "user" ? `signed in: ${who.name} (${who.role})` : `signed in: ${who.role} (API key)`;
    document.getElementById("signin-form").hidden = signedIn;
    document.getElementById("signout").hidden = !signedIn;
    document.querySelector('#tabs button[data-tab="people"]').hidden = who.role !== "admin";
  } catch (e) { notify(`sign-in: ${e.message}`); }
  if (current === "people" && auth.role !== "admin") current = "live";
  resetLive();
  show(current);
}

async function signIn() {
  const user = document.getElementById("user").value.trim();
  const secret = document.getElementById("key").value;
  document.getElementById("key").value = "";
  if (!user) return useCredential(secret.trim(), "key");
  try {
    const session = await api("/v1/auth/login", { method: "POST", body: { name: user, password: secret } });
    return useCredential(session.token, "user");
  } catch (e) { notify(`sign-in: ${e.message}`); }
}

async function signOut() {
  if (auth.kind === "user") { try { await api("/v1/auth/logout", { method: "POST" }); } catch { /* ends on expiry */ } }
  useCredential("");
}

document.querySelectorAll("#tabs button").forEach((b) => b.addEventListener("click", () => show(b.dataset.tab)));
document.getElementById("signin-form").addEventListener("submit", (e) => { e.preventDefault(); signIn(); });
document.getElementById("signout").addEventListener("click", signOut);
document.addEventListener("fabricad:show-defect", () => show("defects"));
initDefects();
initRolls();
initInspect();
initPeople();
if (location.hash.slice(1) in refreshers) current = location.hash.slice(1);
useCredential(auth.key(), "stored");
setInterval(() => { if (!["inspect", "models", "people"].includes(current)) refreshers[current](); }, 5000);
