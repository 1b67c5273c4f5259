// A certificate's details (issue 17): what it can do, in words, and its history from the audit log
// (GET /admin/certificates/history): who created it, each change of name, clearance, permissions or state as a
// diff, its renewal and deletion.

import { request, saveBlob } from "./api.js";
import { h, replace } from "./dom.js";
import { openDialog, runAction } from "./dialog.js";
import { accessLabel, clearanceLabel, expiryState, formatDate } from "./format.js";

const EVENTS = {
  "certificate.generated": "Generated",
  "certificate.uploaded": "Uploaded",
  "certificate.edited": "Edited",
  "certificate.deleted": "Deleted",
  "certificate.purged": "Purged (expired)",
  "certificate.retired": "Retired (renewed, then unused)",
  "certificate.implicitly-trusted": "Registered by implicit trust",
};

/** What a certificate can do, one sentence per line. */
export function capabilities(cert) {
  const lines = [];
  if (cert.Disabled) lines.push("It is disabled: it can do nothing until an administrator enables it again.");
  if (expiryState(cert.NotAfter) === "expired") lines.push("It has expired: it can do nothing.");
  switch (cert.SecurityClearance) {
    case "ClusterAdmin":
    case "ClusterNode":
      lines.push("Everything: every database as Admin, every certificate (Cluster Admin ones too), the server certificate and the server's settings.");
      break;
    case "Operator":
      lines.push("Every database as Admin; creates and deletes databases; manages User and Operator certificates, the allowlist and backups.");
      lines.push("Not: Cluster Admin certificates, the server certificate.");
      break;
    default: {
      const permissions = Object.entries(cert.Permissions ?? {});
      if (permissions.length === 0) lines.push("Nothing yet: it has no database permission.");
      for (const [db, access] of permissions.sort(([a], [b]) => a.localeCompare(b))) {
        const verb = access === "Admin" ? "Administers" : access === "ReadWrite" ? "Reads and writes" : "Reads";
        lines.push(`${verb} ${db}.`);
      }
      lines.push("Not: other databases, certificates or server settings.");
    }
  }
  if (cert.HasTwoFactor) lines.push("Asks for a two-factor code before any of this.");
  return lines;
}

function describeChange(change) {
  switch (change.What) {
    case "Permission":
      if (change.From == null) return `Permission added: ${change.Database} (${accessLabel(change.To)})`;
      if (change.To == null) return `Permission removed: ${change.Database} (${accessLabel(change.From)})`;
      return `Permission changed: ${change.Database} ${accessLabel(change.From)} → ${accessLabel(change.To)}`;
    case "Clearance":
      return `Clearance: ${clearanceLabel(change.From)} → ${clearanceLabel(change.To)}`;
    case "Name":
      return `Name: ${change.From} → ${change.To}`;
    case "Disabled":
      return change.To ? "Disabled" : "Enabled";
    case "TwoFactor":
      return "Two-factor authentication removed";
    case "TwoFactorKey":
      return "Two-factor authentication key set (a new key)";
    default:
      return `${change.What}: ${change.From} → ${change.To}`;
  }
}

function historyItem(item) {
  const what = EVENTS[item.Event] ?? item.Event;
  const changes = item.Changes ?? [];
  const extra = [];
  if (item.RenewalOf) extra.push(`a renewal of ${item.RenewalOf}`);
  if (item.Successor) extra.push(`succeeded by ${item.Successor}`);
  return h(
    "li",
    { class: "history-item" },
    h("div", { class: "history-head" },
      h("strong", {}, what), " ",
      h("span", { class: "muted" }, `${formatDate(item.Time, { time: true })} by ${item.Actor ?? "the server"}`),
      extra.length ? h("span", { class: "muted" }, ` · ${extra.join(", ")}`) : null),
    changes.length
      ? h("ul", { class: "changes" }, changes.map((c) => h("li", {}, describeChange(c))))
      : item.Event === "certificate.generated" || item.Event === "certificate.uploaded"
        ? h("p", { class: "hint" }, `${clearanceLabel(item.Clearance)}${Object.keys(item.Permissions ?? {}).length ? `, ${Object.entries(item.Permissions).map(([db, a]) => `${db} (${accessLabel(a)})`).join(", ")}` : ""}`)
        : null,
  );
}

export function openDetailsDialog(cert, { onChanged } = {}) {
  const close = h("button", { type: "button", class: "primary" }, "Close");
  const rotate = h("button", { type: "button", class: "secondary" }, "Rotate: issue a successor");
  const rotation = h("p", { class: "hint" },
    "Rotate issues a successor with the same name, clearance, permissions, two-factor key and lifetime, as a new package. " +
    `Both work; the old one (last used ${cert.LastUsedDate ? formatDate(cert.LastUsedDate, { time: true }) : "never"}) is retired once it has not been used for 7 days.`);
  const history = h("ol", { class: "history", "aria-label": "History" }, h("li", { class: "muted" }, "Loading the history…"));
  const handle = openDialog({
    title: `Certificate “${cert.Name}”`,
    label: `Details of ${cert.Name}`,
    wide: true,
    body: h(
      "div",
      { class: "details" },
      h("section", { "aria-label": "What it can do" }, h("h3", {}, "What it can do"),
        h("ul", { class: "capabilities" }, capabilities(cert).map((line) => h("li", {}, line)))),
      h("section", { "aria-label": "History from the audit log" }, h("h3", {}, "History"),
        h("p", { class: "hint" }, "From this server's hash-chained audit log (roost audit verify checks it)."), history),
    ),
    actions: [rotate, close],
  });
  close.addEventListener("click", handle.close);
  if (cert.HasTwoFactor) handle.body.append(twoFactorControl(cert, handle.error));
  handle.body.append(rotation);
  rotate.addEventListener("click", async () => {
    const result = await runAction(rotate, handle.error, () =>
      request("POST", "/admin/certificates/rotate", { body: { Thumbprint: cert.Thumbprint }, expect: "blob" }), "Rotating…");
    if (!result) return;
    saveBlob(result.blob, result.filename || `${cert.Name}.zip`);
    rotate.disabled = true;
    replace(rotation, h("span", { class: "notice success", role: "status" },
      `A successor of “${cert.Name}” was issued and ${result.filename || `${cert.Name}.zip`} downloaded. Move its clients to it; the old certificate keeps working until it has been unused for 7 days.`));
    onChanged?.();
  });
  request("GET", "/admin/certificates/history", { query: { thumbprint: cert.Thumbprint } })
    .then((body) => {
      const items = body?.History ?? [];
      replace(history, items.length ? items.map(historyItem) : h("li", { class: "muted" }, "This server's audit log records nothing about it (it may predate the log, or be known through another node)."));
    })
    .catch((err) => {
      replace(history);
      handle.error.show(`The history could not be loaded: ${err.message}`);
    });
  return handle;
}

/** An administrator's 2FA control: the certificate's open session (end it) and its key's lockout (lift it). */
function twoFactorControl(cert, error) {
  const state = h("div", { class: "twofa-state" }, h("p", { class: "muted" }, "Loading…"));
  const section = h("section", { "aria-label": "Two-factor authentication" }, h("h3", {}, "Two-factor authentication"), state);
  async function load() {
    let entry = null;
    try {
      const body = await request("GET", "/admin/certificates/2fa/sessions");
      entry = (body?.Certificates ?? []).find((c) => c.Thumbprint === cert.Thumbprint) ?? null;
    } catch (err) {
      replace(state);
      error.show(`The two-factor state could not be loaded: ${err.message}`);
      return;
    }
    const lines = [];
    if (entry?.Session) {
      const end = h("button", { type: "button", class: "secondary small" }, "End session");
      end.addEventListener("click", async () => {
        if (await runAction(end, error, () => request("DELETE", "/admin/certificates/2fa/sessions", { query: { thumbprint: cert.Thumbprint } }), "Ending…")) load();
      });
      lines.push(h("p", {}, `Session open until ${formatDate(entry.Session.Expires, { time: true })}, for ${entry.Session.OnlyThisBrowser ? "one browser" : "every client of the certificate"}. `, end));
    } else {
      lines.push(h("p", {}, "No session open: its next request asks for a code."));
    }
    if (entry?.LockedUntil) {
      const lift = h("button", { type: "button", class: "secondary small" }, "Lift lockout");
      lift.addEventListener("click", async () => {
        if (await runAction(lift, error, () => request("DELETE", "/admin/certificates/2fa/lockout", { query: { thumbprint: cert.Thumbprint } }), "Lifting…")) load();
      });
      lines.push(h("p", { class: "notice warning" }, `Locked after too many wrong codes until ${formatDate(entry.LockedUntil, { time: true })}. `, lift));
    } else if (entry?.WrongCodesInARow) {
      lines.push(h("p", { class: "hint" }, `${entry.WrongCodesInARow} wrong code${entry.WrongCodesInARow === 1 ? "" : "s"} in a row (five lock it).`));
    }
    replace(state, lines);
  }
  load();
  return section;
}

/** The Databases page's "Who has access": every certificate that reaches the database, with its access and why. */
export async function databaseAccess(db) {
  const body = await request("GET", "/admin/databases/access", { query: { name: db } });
  const via = { Permission: "permission", Clearance: "by clearance", Configuration: "well-known admin" };
  return (body?.Certificates ?? []).map((c) =>
    h("li", { class: ["access-item", (c.Disabled || c.Expired) && "inactive"] },
      h("span", { class: "cert-name" }, c.Name), " · ",
      h("span", { class: "access" }, accessLabel(c.Access)),
      h("span", { class: "muted" }, ` (${via[c.Via] ?? c.Via}${c.Via === "Clearance" ? `: ${clearanceLabel(c.SecurityClearance)}` : ""})`),
      c.Disabled ? h("span", { class: "badge muted" }, "disabled") : null,
      c.Expired ? h("span", { class: "badge expired" }, "expired") : null));
}
