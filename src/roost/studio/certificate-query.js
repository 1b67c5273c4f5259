// One page of the client-certificate list. The Studio asks Roost to filter, sort and page
// (`filter`, `clearance`, `state`, `sort`, `start`, `pageSize`), so 10,000 certificates cost one small
// response. A server that ignores those parameters is detected (a returned entry that does not match,
// or no TotalResults) and the Studio then filters the full list itself.

import { request } from "./api.js";
import { expiryState, parseDate } from "./format.js";

let serverSide = true;
let cache = null; // the full list, used only when filtering client-side

export function usingServerSideQuery() {
  return serverSide;
}

/** Forget the cached full list (after any change to the registry). */
export function invalidate() {
  cache = null;
}

/**
 * fetchPage({text, clearance, state, sort, start, pageSize}, signal)
 * -> {items, total, loadedServerCert, wellKnown, serverEntry}
 */
export async function fetchPage(q, signal) {
  if (serverSide) {
    const body = await request("GET", "/admin/certificates", {
      query: {
        metadataOnly: true,
        start: q.start,
        pageSize: q.pageSize,
        filter: q.text,
        clearance: q.clearance,
        state: q.state,
        sort: q.sort,
      },
      signal,
    });
    const { items, serverEntry } = split(body);
    // TotalResults counts the registry's entries. The synthetic server entry (it has `Generated`) is not among them,
    // but once the server certificate is registered too (after a renewal or a replacement) it is, while the Studio
    // shows it in its own panel: `rawTotal` is the server's count, for paging.
    if (typeof body.TotalResults === "number" && items.every((c) => matches(c, q))) {
      const hiddenHere = serverEntry && !("Generated" in serverEntry) ? 1 : 0;
      return { items, total: Math.max(body.TotalResults, items.length), rawTotal: body.TotalResults, hiddenHere, serverSide: true, ...meta(body), serverEntry };
    }
    serverSide = false;
    console.info("Roost Studio: the server does not filter or page certificates; filtering in the browser.");
  }
  if (!cache) {
    cache = await request("GET", "/admin/certificates", { query: { metadataOnly: true }, signal });
  }
  const { items, serverEntry } = split(cache);
  const filtered = items.filter((c) => matches(c, q)).sort(comparator(q.sort));
  return {
    items: filtered.slice(q.start, q.start + q.pageSize),
    total: filtered.length,
    rawTotal: filtered.length,
    hiddenHere: 0,
    serverSide: false,
    ...meta(cache),
    serverEntry,
  };
}

function meta(body) {
  return { loadedServerCert: body.LoadedServerCert ?? null, wellKnown: body.WellKnownAdminCertDetails ?? body.WellKnownAdminCerts ?? [] };
}

/** The server's own entry is shown in its own panel, not in the client list. */
function split(body) {
  const server = (body.LoadedServerCert ?? "").toUpperCase();
  let serverEntry = null;
  const items = [];
  for (const cert of body.Results ?? []) {
    if (server && (cert.Thumbprint ?? "").toUpperCase() === server) serverEntry = cert;
    else items.push(cert);
  }
  return { items, serverEntry };
}

const UNUSED_MS = 90 * 24 * 60 * 60 * 1000;

/** The server's rule for state=unused: last used more than 90 days ago, or never and valid for longer than that. */
export function unusedFor90Days(cert, now = Date.now()) {
  const since = parseDate(cert.LastUsedDate) ?? parseDate(cert.NotBefore);
  return since !== null && now - since.getTime() > UNUSED_MS;
}

export function matches(cert, q) {
  if (q.text) {
    const needle = q.text.toLowerCase();
    const hay = `${cert.Name ?? ""}\n${cert.Thumbprint ?? ""}`.toLowerCase();
    if (!hay.includes(needle)) return false;
  }
  if (q.clearance && cert.SecurityClearance !== q.clearance) return false;
  if (q.state === "unused") return unusedFor90Days(cert);
  if (q.state && expiryState(cert.NotAfter) !== q.state) return false;
  return true;
}

/**
 * Where the Studio's page starts and ends when the registered server entry is counted by the server but shown in its
 * own panel: {first, last, total, hasNext}. `page.start` is the server's offset.
 */
export function pageSpan(page, q, registeredServer) {
  const counted = page.serverSide && registeredServer && matches(registeredServer, q) ? 1 : 0;
  let before = 0;
  if (counted && !page.hiddenHere) {
    // Not on this page: it was on an earlier one when it sorts before this page's first entry (or the page is empty).
    before = page.items.length === 0 || serverOrder(registeredServer, page.items[0], q.sort) < 0 ? 1 : 0;
  }
  const total = Math.max(0, page.rawTotal - counted);
  const first = page.items.length === 0 ? 0 : q.start + 1 - before;
  return { first, last: first + page.items.length - 1, total, hasNext: q.start + q.pageSize < page.rawTotal };
}

/** The server's own order (registry.py: casefolded name then thumbprint, or expiry then thumbprint). */
function serverOrder(a, b, sort) {
  const key = (c) => (sort === "expiry" ? [time(c.NotAfter), c.Thumbprint ?? ""] : [(c.Name ?? "").toLowerCase(), c.Thumbprint ?? ""]);
  const [x, y] = [key(a), key(b)];
  for (let i = 0; i < 2; i += 1) {
    if (x[i] < y[i]) return -1;
    if (x[i] > y[i]) return 1;
  }
  return 0;
}

function comparator(sort) {
  if (sort === "expiry") {
    return (a, b) => time(a.NotAfter) - time(b.NotAfter) || byName(a, b);
  }
  return byName;
}

function byName(a, b) {
  return (a.Name ?? "").localeCompare(b.Name ?? "", undefined, { sensitivity: "base" }) ||
    (a.Thumbprint ?? "").localeCompare(b.Thumbprint ?? "");
}

function time(value) {
  return parseDate(value)?.getTime() ?? Number.MAX_SAFE_INTEGER;
}
