// The database-permissions editor shared by the Generate, Upload and Edit dialogs: one row per
// database, each with an access level. Permissions only matter for User certificates.

import { accessLabel } from "./format.js";
import { append, h, newId, select } from "./dom.js";

const ACCESS_OPTIONS = [
  ["ReadWrite", accessLabel("ReadWrite")],
  ["Read", accessLabel("Read")],
  ["Admin", accessLabel("Admin")],
];

export function permissionsEditor(databases, initial = {}) {
  const rows = h("ul", { class: "permission-rows" });
  const empty = h("p", { class: "hint" }, "No database permissions yet: this certificate can reach no database.");
  const addButton = h("button", { type: "button", class: "secondary small" }, "Add database permission");
  const known = [...new Set([...databases, ...Object.keys(initial)])].sort((a, b) => a.localeCompare(b));
  const noDatabases = h(
    "p",
    { class: "hint" },
    "There are no databases on this server yet. Create one on the Databases page, then give access to it here.",
  );

  const update = () => {
    empty.hidden = rows.children.length > 0;
    const used = new Set(rowValues().map(([db]) => db));
    addButton.disabled = known.every((db) => used.has(db));
    // Each picker offers its own database and those no other row has chosen.
    for (const picker of rows.querySelectorAll(".perm-db")) {
      const own = picker.value;
      const offered = known.filter((db) => db === own || !used.has(db));
      const current = [...picker.options].map((o) => o.value);
      if (current.join("\n") === offered.join("\n")) continue;
      picker.replaceChildren(...offered.map((db) => h("option", { value: db }, db)));
      picker.value = own;
    }
  };

  const addRow = (database, access = "ReadWrite") => {
    const dbId = newId("perm-db");
    const accessId = newId("perm-access");
    const dbSelect = select(
      known.map((db) => [db, db]),
      database,
      { id: dbId, class: "perm-db" },
    );
    const accessSelect = select(ACCESS_OPTIONS, access, { id: accessId, class: "perm-access" });
    const remove = h("button", { type: "button", class: "link danger-text" }, "Remove");
    const row = h(
      "li",
      { class: "permission-row" },
      h("div", { class: "field inline" }, h("label", { for: dbId }, "Database"), dbSelect),
      h("div", { class: "field inline" }, h("label", { for: accessId }, "Access"), accessSelect),
      remove,
    );
    remove.setAttribute("aria-label", `Remove permission for ${database}`);
    dbSelect.addEventListener("change", () => {
      remove.setAttribute("aria-label", `Remove permission for ${dbSelect.value}`);
      update();
    });
    remove.addEventListener("click", () => {
      row.remove();
      update();
      addButton.focus();
    });
    rows.append(row);
    update();
    return dbSelect;
  };

  const rowValues = () =>
    [...rows.querySelectorAll(".permission-row")].map((row) => [
      row.querySelector(".perm-db").value,
      row.querySelector(".perm-access").value,
    ]);

  addButton.addEventListener("click", () => {
    const used = new Set(rowValues().map(([db]) => db));
    const next = known.find((db) => !used.has(db));
    if (next !== undefined) addRow(next).focus();
  });

  for (const [db, access] of Object.entries(initial)) addRow(db, access);

  const element = h(
    "fieldset",
    { class: "permissions" },
    h("legend", {}, "Database permissions"),
    known.length === 0 ? noDatabases : null,
    rows,
    empty,
    addButton,
  );
  update();

  return {
    element,
    /** {db: access}; a database picked twice keeps the last access chosen. */
    value() {
      return Object.fromEntries(rowValues());
    },
    duplicates() {
      const names = rowValues().map(([db]) => db.toLowerCase());
      return names.filter((n, i) => names.indexOf(n) !== i);
    },
  };
}

/**
 * A one-line read-only list of permissions for the table: the first `max` as chips, the rest as a "+N" chip whose
 * tooltip (and accessible name) lists them, so a certificate with twenty databases keeps a row as short as the others.
 */
export function permissionsList(permissions, { max = 2 } = {}) {
  const entries = Object.entries(permissions ?? {}).sort(([a], [b]) => a.localeCompare(b));
  if (entries.length === 0) return h("span", { class: "muted" }, "—");
  const shown = entries.length > max + 1 ? entries.slice(0, max) : entries;
  const rest = entries.slice(shown.length);
  const list = h("ul", { class: "perm-list", "aria-label": `${entries.length} database permission${entries.length === 1 ? "" : "s"}` });
  for (const [db, access] of shown) {
    append(list, h("li", { title: `${db} · ${accessLabel(access)}` }, h("span", { class: "db-name" }, db), " ", h("span", { class: "access" }, accessLabel(access))));
  }
  if (rest.length > 0) {
    const names = rest.map(([db, access]) => `${db} · ${accessLabel(access)}`).join(", ");
    append(list, h("li", { class: "more", title: names, tabindex: 0, "aria-label": `${rest.length} more: ${names}` }, `+${rest.length}`));
  }
  return list;
}
