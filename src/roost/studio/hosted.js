// The hosted product's features in the Studio (issue 17): the IP allowlist (GET/PUT /admin/security/allowed-ips)
// and the backup schedules (GET/PUT/DELETE /admin/backups/schedules, run now), with how to restore. Operators only.

import { ApiError, request } from "./api.js";
import { errorBox, field, h, replace } from "./dom.js";
import { confirmDialog, runAction } from "./dialog.js";
import { formatDate } from "./format.js";
import { OPERATOR_ONLY, session } from "./session.js";

function page(main, title, ...cards) {
  replace(main, h("div", { class: "page-header" }, h("p", { class: "breadcrumb" }, "Manage Server"), h("h1", {}, title)), ...cards);
}

function operatorsOnly(main, title) {
  page(main, title, h("section", { class: "card note" }, h("p", { class: "reason-text" }, OPERATOR_ONLY)));
}

export function renderAllowlist(main) {
  if (!session.isOperator()) return operatorsOnly(main, "IP allowlist");
  const notice = h("p", { class: "notice success", role: "status", hidden: true });
  const errors = errorBox();
  const current = h("div", { class: "allowlist-current" }, h("p", { class: "muted" }, "Loading…"));
  const entries = h("textarea", { name: "allowed-ips", rows: 6, spellcheck: "false", autocomplete: "off" });
  const save = h("button", { type: "submit", class: "primary" }, "Save allowlist");
  const force = h("button", { type: "button", class: "danger", hidden: true }, "Save anyway (lock out my address)");
  let yourAddress = null;
  const form = h(
    "form",
    { class: "form", novalidate: true },
    field("Allowed addresses and ranges, one per line", entries,
      "IPv4 or IPv6 addresses and CIDR ranges (203.0.113.7, 10.0.0.0/8, 2001:db8::/32). Empty: every address may connect. Connections from other addresses are refused before the TLS handshake."),
    errors,
    h("div", { class: "dialog-actions" }, force, save),
  );
  const list = () => entries.value.split(/[\n,]+/).map((e) => e.trim()).filter(Boolean);
  async function store(forced) {
    notice.hidden = true;
    force.hidden = true;
    const ok = await runAction(forced ? force : save, errors, async () => {
      try {
        await request("PUT", "/admin/security/allowed-ips", { body: { AllowedIPs: list() }, query: forced ? { force: true } : undefined });
        return true;
      } catch (err) {
        if (err instanceof ApiError && err.status === 409) force.hidden = false; // would lock out the caller
        throw err;
      }
    }, "Saving…");
    if (ok) {
      notice.textContent = list().length ? "The allowlist was saved: it applies to the next connection and the next request." : "The allowlist was cleared: every address may connect.";
      notice.hidden = false;
      load();
    }
  }
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    store(false);
  });
  force.addEventListener("click", () => store(true));
  entries.addEventListener("input", () => {
    errors.clear();
    force.hidden = true;
  });
  async function load() {
    try {
      const body = await request("GET", "/admin/security/allowed-ips");
      yourAddress = body.YourAddress;
      entries.value = (body.AllowedIPs ?? []).join("\n");
      replace(current,
        h("p", {}, body.Everyone ? "Every address may connect (the list is empty)." : `${body.AllowedIPs.length} ${body.AllowedIPs.length === 1 ? "entry" : "entries"}: only these may connect.`),
        h("p", { class: "hint" }, `Your address as the server sees it: ${yourAddress ?? "unknown"}. A list without it is refused unless you choose to lock yourself out.`));
    } catch (err) {
      replace(current);
      errors.show(`The allowlist could not be loaded: ${err.message}`);
    }
  }
  page(main, "IP allowlist", notice,
    h("section", { class: "card", "aria-labelledby": "allowlist-title" },
      h("header", { class: "card-header" }, h("h2", { id: "allowlist-title" }, "Who may connect")), current, form));
  load();
  return () => {};
}

function every(seconds) {
  if (seconds % 86400 === 0) return `${seconds / 86400} d`;
  if (seconds % 3600 === 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}

function statusCell(status) {
  if (!status?.LastRun) return h("span", { class: "muted" }, "Not run yet");
  if (status.LastError) {
    return h("span", { class: "run failed" }, `Failed ${formatDate(status.LastRun, { time: true })}: ${status.LastError}`,
      status.ConsecutiveFailures > 1 ? ` (${status.ConsecutiveFailures} in a row)` : "");
  }
  const size = status.LastBytes != null ? `, ${(status.LastBytes / 1024).toFixed(1)} KiB, ${status.LastDocuments} documents` : "";
  return h("span", { class: "run ok" }, `OK ${formatDate(status.LastRun, { time: true })}${size}`);
}

export function renderBackups(main) {
  if (!session.isOperator()) return operatorsOnly(main, "Backups");
  const notice = h("p", { class: "notice success", role: "status", hidden: true });
  const listErrors = errorBox();
  const formErrors = errorBox();
  const tbody = h("tbody", {});
  const database = h("select", { name: "database" });
  const hours = h("input", { type: "number", name: "hours", min: 1, max: 8760, step: 1, value: "24" });
  const keep = h("input", { type: "number", name: "keep", min: 1, max: 10000, step: 1, value: "14" });
  const folder = h("input", { type: "text", name: "folder", autocomplete: "off", placeholder: "/var/backups/roost" });
  const recipients = h("textarea", { name: "recipients", rows: 3, spellcheck: "false", placeholder: "age1..." });
  const save = h("button", { type: "submit", class: "primary" }, "Save schedule");
  const announce = (message) => {
    notice.textContent = message;
    notice.hidden = !message;
  };
  const form = h(
    "form",
    { class: "form", novalidate: true },
    field("Database", database),
    field("Every (hours)", hours),
    field("Keep (backups)", keep, "The newest files kept in the folder; older ones are deleted after a successful run."),
    field("Folder on the server", folder, "Where the encrypted files are written (relative paths are inside the data directory)."),
    field("Recipients (age public keys, one per line)", recipients,
      "Backups are encrypted to these keys (roost backup keygen makes one). The server never holds what opens them."),
    formErrors,
    h("div", { class: "dialog-actions" }, save),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const keys = recipients.value.split(/\s+/).filter(Boolean);
    if (!database.value) return formErrors.show("Choose a database (create one on the Databases page first).");
    if (keys.length === 0) return formErrors.show("Give at least one recipient: an age public key (age1...).");
    const body = { Database: database.value, IntervalSeconds: Number(hours.value) * 3600, Retention: Number(keep.value), Recipients: keys };
    if (folder.value.trim()) body.Folder = folder.value.trim();
    const ok = await runAction(save, formErrors, () => request("PUT", "/admin/backups/schedules", { body }), "Saving…");
    if (ok) {
      announce(`The schedule of “${body.Database}” was saved.`);
      load();
    }
  });
  for (const input of form.querySelectorAll("input, select, textarea")) input.addEventListener("input", () => formErrors.clear());

  function row(schedule) {
    const db = schedule.Database;
    const run = h("button", { type: "button", class: "secondary small", "aria-label": `Run the backup of ${db} now` }, "Run now");
    const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete the schedule of ${db}` }, "Delete");
    run.addEventListener("click", async () => {
      const ok = await runAction(run, listErrors, () => request("POST", "/admin/backups/schedules/run", { query: { database: db } }), "Running…");
      if (ok) load();
    });
    del.addEventListener("click", () => confirmDialog({
      title: "Delete backup schedule",
      message: h("p", {}, "Stop backing up ", h("strong", {}, db), "? The files already written stay in their folder."),
      confirmLabel: "Delete schedule",
      action: () => request("DELETE", "/admin/backups/schedules", { query: { database: db } }),
      onDone: () => {
        announce(`The schedule of “${db}” was deleted.`);
        load();
      },
    }));
    return h("tr", {},
      h("td", { class: "db-name" }, db),
      h("td", {}, every(schedule.IntervalSeconds)),
      h("td", {}, String(schedule.Retention)),
      h("td", { class: "folder" }, h("code", {}, schedule.Folder ?? "")),
      h("td", {}, `${(schedule.Recipients ?? []).length}`),
      h("td", { class: "status" }, statusCell(schedule.Status)),
      h("td", { class: "row-actions" }, h("div", { class: "buttons" }, run, del)));
  }

  async function load() {
    listErrors.clear();
    try {
      const [schedules, names] = await Promise.all([
        request("GET", "/admin/backups/schedules"),
        request("GET", "/databases", { query: { namesOnly: true } }),
      ]);
      const items = schedules?.Schedules ?? [];
      replace(tbody, items.length ? items.map(row) : h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No schedule yet: add one below.")));
      const dbs = (names?.Databases ?? []).map((d) => (typeof d === "string" ? d : d.Name)).sort((a, b) => a.localeCompare(b));
      const chosen = database.value;
      replace(database, dbs.map((d) => h("option", { value: d, selected: d === chosen }, d)));
    } catch (err) {
      listErrors.show(`The schedules could not be loaded: ${err.message}`);
    }
  }

  page(main, "Backups", notice,
    h("section", { class: "card", "aria-labelledby": "schedules-title" },
      h("header", { class: "card-header" }, h("h2", { id: "schedules-title" }, "Schedules and their last runs")),
      listErrors,
      h("div", { class: "table-wrap" }, h("table", { class: "backup-table" },
        h("thead", {}, h("tr", {}, ["Database", "Every", "Keep", "Folder", "Recipients", "Last run", "Actions"].map((c) => h("th", { scope: "col" }, c)))),
        tbody))),
    h("section", { class: "card", "aria-labelledby": "schedule-form-title" },
      h("header", { class: "card-header" }, h("h2", { id: "schedule-form-title" }, "Add or replace a schedule")), form),
    h("section", { class: "card", "aria-labelledby": "restore-title" },
      h("header", { class: "card-header" }, h("h2", { id: "restore-title" }, "How to restore")),
      h("p", {}, "A restore needs the private key of one recipient, which never comes to the server: run it from the machine that holds the key."),
      h("pre", {}, h("code", {}, [
        "roost backup verify shop.roostbackup -i backup-key.txt        # check it opens, offline",
        "roost backup restore shop.roostbackup --db shop-copy -i backup-key.txt",
      ].join("\n"))),
      h("p", { class: "hint" }, "It restores into a new or empty database, all or nothing. See docs/backups.md."),
    ));
  load();
  return () => {};
}
