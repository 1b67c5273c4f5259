// Roost Studio: finds out who the caller is, draws the header and routes between the Manage Server
// pages. Routes live in the URL fragment (#/certificates, #/databases) so the server only ever
// serves static files.

import { ApiError, apiEvents, request } from "./api.js";
import { h, replace } from "./dom.js";
import { runAction } from "./dialog.js";
import { thumbprintCell } from "./copy.js";
import { clearanceBadge, daysUntil, EXPIRING_DAYS, expiryState, formatDate } from "./format.js";
import { renderCertificates } from "./certificates.js";
import { renderDatabases } from "./databases.js";
import { renderAllowlist, renderBackups } from "./hosted.js";
import { renderTwoFactor } from "./twofactor.js";
import { session } from "./session.js";
import { describeRefusal } from "./refusals.js";

const ROUTES = {
  certificates: { title: "Certificates", render: renderCertificates },
  databases: { title: "Databases", render: renderDatabases },
  allowlist: { title: "IP allowlist", render: renderAllowlist },
  backups: { title: "Backups", render: renderBackups },
};

const main = document.getElementById("main");
const identity = document.getElementById("identity");
const warning = document.getElementById("expiry-warning");
const alerts = document.getElementById("alerts");
const nav = document.getElementById("nav");
let teardown = () => {};
let clearing = false;

async function boot() {
  clearing = false;
  nav.hidden = false;
  try {
    const me = await session.load();
    if (!me) {
      showBlocked(describeRefusal({ message: "none was provided" }));
      return;
    }
  } catch (err) {
    if (err instanceof ApiError && err.status === 428) return; // the clearance screen is already shown
    showBlocked(err instanceof ApiError && err.status === 403 ? describeRefusal(err) : { title: "Roost did not let you in", message: err.message, remedy: "" });
    return;
  }
  renderIdentity(session.me);
  renderNav();
  route();
  renderAlerts();
}

/**
 * Operators see what will expire (GET /admin/notifications: the server certificate and registered certificates
 * expiring within the server's notice period); the caller's own certificate has its own banner above.
 */
async function renderAlerts() {
  alerts.hidden = true;
  if (!session.isOperator()) return;
  let result;
  try {
    result = await request("GET", "/admin/notifications");
  } catch {
    return; // the page itself reports refusals; an alert list that cannot load is left out
  }
  const items = (result?.Notifications ?? []).filter((n) => !n.Own);
  if (items.length === 0) return;
  const shown = items.slice(0, 5);
  replace(
    alerts,
    h("h2", {}, `${items.length} ${items.length === 1 ? "certificate expires" : "certificates expire"} within ${result.WithinDays} days or ${items.length === 1 ? "has" : "have"} expired`),
    h("ul", {}, shown.map((n) => h("li", { class: n.Type.endsWith("Expired") ? "expired" : "expiring" }, n.Message))),
    items.length > shown.length ? h("p", { class: "muted" }, `and ${items.length - shown.length} more: sort the list by expiration.`) : null,
  );
  alerts.hidden = false;
}

/** The menu offers only what the identity may use: Certificates, the allowlist and backups need Operator clearance. */
function renderNav() {
  for (const route of ["certificates", "allowlist", "backups"]) {
    const link = nav.querySelector(`a[data-route="${route}"]`);
    if (link) link.closest("li").hidden = !session.isOperator();
  }
  document.querySelector(".brand")?.setAttribute("href", `#/${landing()}`);
}

function landing() {
  return session.isOperator() ? "certificates" : "databases";
}

// A refusal mid-session: ask whoami again. Still signed in (the refusal was about clearance): carry on, with the
// header and menu redrawn in case the clearance changed. Not signed in any more: say why, and stop saying
// "Signed in as ...".
let rechecking = null;
apiEvents.addEventListener("identity-changed", recheck); // the caller edited its own certificate
apiEvents.addEventListener("refused", recheck);
function recheck() {
  if (clearing || rechecking) return;
  rechecking = (async () => {
    const before = session.clearance;
    try {
      await session.load();
      renderIdentity(session.me);
      renderNav();
      if (session.clearance !== before) route();
    } catch (err) {
      if (err instanceof ApiError && err.status === 428) return;
      teardown();
      teardown = () => {};
      for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
      session.me = null;
      replace(identity);
      warning.hidden = true;
      showBlocked(err instanceof ApiError && err.status === 403 ? describeRefusal(err) : { title: "Roost did not let you in", message: err.message, remedy: "" });
    } finally {
      rechecking = null;
    }
  })();
}

function renderIdentity(me) {
  const notAfter = me.NotAfter;
  const logout = me.HasTwoFactor
    ? h("button", { type: "button", class: "link", on: { click: (e) => twoFactorLogout(e.currentTarget) } }, "End two-factor session")
    : null;
  replace(
    identity,
    h("span", { class: "who" }, h("span", { class: "label" }, "Signed in as "), h("strong", { class: "me-name" }, me.Name ?? "—")),
    clearanceBadge(me.SecurityClearance),
    me.Thumbprint ? thumbprintCell(me.Thumbprint) : null,
    // Whoami gives no dates for a well-known admin (configured by thumbprint): say it is unknown, not that there is none.
    h("span", { class: "me-expiry" }, notAfter ? `Expires ${formatDate(notAfter)}` : "Expiry not reported by the server"),
    logout,
  );
  const state = expiryState(notAfter);
  if (notAfter && state !== "valid") {
    const days = daysUntil(notAfter);
    warning.textContent =
      state === "expired"
        ? `Your certificate expired on ${formatDate(notAfter)}. Ask an administrator for a new one.`
        : `Your certificate expires in ${days <= 0 ? "less than a day" : days === 1 ? "1 day" : `${days} days`} (on ${formatDate(notAfter)}). ` +
          `Ask an administrator for a new one before then; certificates expiring within ${EXPIRING_DAYS} days are flagged.`;
    warning.hidden = false;
  } else {
    warning.hidden = true;
  }
}

async function twoFactorLogout(button) {
  await runAction(button, null, async () => {
    await request("DELETE", "/authentication/2fa");
    window.location.reload();
  });
}

function route() {
  if (clearing) return;
  const asked = window.location.hash.replace(/^#\/?/, "").split("/")[0];
  const name = ROUTES[asked] ? asked : landing();
  const target = ROUTES[name];
  for (const link of nav.querySelectorAll("a[data-route]")) {
    if (link.dataset.route === name) {
      link.setAttribute("aria-current", "page");
    } else {
      link.removeAttribute("aria-current");
    }
  }
  teardown();
  document.title = `${target.title} · Roost Studio`;
  teardown = target.render(main) ?? (() => {});
  main.focus({ preventScroll: true });
}

function showBlocked({ title, message, remedy, offerTwoFactor = false }) {
  nav.hidden = true;
  document.title = `${title} · Roost Studio`;
  const enterCode = offerTwoFactor
    ? h("button", { type: "button", class: "secondary" }, "Enter a two-factor code")
    : null;
  enterCode?.addEventListener("click", () => {
    clearing = true;
    document.title = "Two-factor authentication · Roost Studio";
    renderTwoFactor(main, {
      reason: "A code opens a two-factor session for this browser.",
      onCleared: boot,
    });
  });
  replace(
    main,
    h(
      "section",
      { class: "card refusal", role: "alert" },
      h("h1", {}, title),
      h("p", {}, message),
      remedy ? h("p", { class: "remedy" }, remedy) : null,
      enterCode,
    ),
  );
}

apiEvents.addEventListener("two-factor-required", (event) => {
  if (clearing) return;
  clearing = true;
  teardown();
  teardown = () => {};
  for (const dialog of document.querySelectorAll("dialog[open]")) dialog.close();
  nav.hidden = true;
  document.title = "Two-factor authentication · Roost Studio";
  // The API's words ("POST the relevant TOTP value to /authentication/2fa") are for programs; the screen says it.
  const name = /client certificate '([^']*)'/.exec(event.detail.message ?? "")?.[1];
  renderTwoFactor(main, { reason: name ? `Certificate: ${name}` : null, onCleared: boot });
});

window.addEventListener("hashchange", route);
boot();
