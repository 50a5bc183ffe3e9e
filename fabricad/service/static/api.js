// The REST API with the signed-in credential (a user's session token or an API key); every call
// goes through here.
const KEY = "fabricad.apiKey";

export const auth = {
  key: () => localStorage.getItem(KEY) || "",
  set(key) { key ? localStorage.setItem(KEY, key) : localStorage.removeItem(KEY); },
  role: null,
  name: null,
  kind: null,
};

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

export async function api(path, { method = "GET", body, raw = false, headers = {} } = {}) {
  const init = { method, headers: { ...headers } };
  if (auth.key()) init.headers["X-API-Key"] = auth.key();
  if (body instanceof Blob || body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const response = await fetch(path, init);
  if (!response.ok) {
    let detail = response.statusText;
    try { const j = await response.json(); detail = typeof j.detail === "string" ? j.detail : JSON.stringify(j.detail); } catch { /* not JSON */ }
    throw new ApiError(response.status, detail);
  }
  if (raw) return response;
  return response.status === 204 ? null : response.json();
}

// Images behind the API key: fetched, shown from a blob URL, the previous one released.
export async function setImage(img, path) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  if (img.dataset.blob) URL.revokeObjectURL(img.dataset.blob);
  img.dataset.blob = url;
  img.src = url;
  return response;
}

export function download(path, filename) {
  return api(path, { raw: true }).then(async (response) => {
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await response.blob());
    a.download = filename;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    return response;
  });
}

export function wsUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (auth.key()) url.searchParams.set("api_key", auth.key());
  return url.toString();
}

export const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined));
  return node;
};

export const fmt = {
  time: (iso) => new Date(iso).toLocaleString(),
  num: (x, digits = 3) => (x === null || x === undefined ? "—" : Number(x).toFixed(digits)),
  pct: (x) => (x === null || x === undefined ? "—" : `${(100 * x).toFixed(1)} %`),
  // How a scan was turned to the training scans' weave before scoring (null: it matched as it was).
  alignment: (a) => (a ? [a.stretch && a.stretch !== 1 ? `stretched ${Number(a.stretch).toFixed(2)}` : "", a.mirror ? "mirrored" : "",
    a.shear ? `sheared ${Number(a.shear).toFixed(2)}` : ""].filter(Boolean).join(", ") : ""),
};

// One line at the top: errors in amber, confirmations ("threshold is now …") in blue.
export function notify(message, kind = "error") {
  const banner = document.getElementById("banner");
  banner.className = kind;
  banner.textContent = message;
  banner.hidden = !message;
  if (message) setTimeout(() => { if (banner.textContent === message) banner.hidden = true; }, 6000);
}
