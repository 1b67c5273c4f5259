// Manage Server > Databases: list, create and delete databases, so that certificate permissions can
// name real databases. Creating and deleting need Operator clearance.

import { request } from "./api.js";
import { errorBox, field, h, replace } from "./dom.js";
import { confirmDialog, runAction } from "./dialog.js";
import { OPERATOR_ONLY, session } from "./session.js";
import { accessLabel } from "./format.js";
import { databaseAccess } from "./details-dialog.js";

/** The caller's access to `db` from whoami's Permissions (database names compare without case, as in Roost). */
function accessOf(db) {
  const permissions = session.me?.Permissions ?? {};
  const key = Object.keys(permissions).find((k) => k.toLowerCase() === db.toLowerCase());
  return key ? permissions[key] : null;
}

export function renderDatabases(main) {
  const refusal = session.isOperator() ? null : OPERATOR_ONLY;
  const notice = h("p", { class: "notice success", role: "status", hidden: true });
  const listErrors = errorBox();
  const createErrors = errorBox();
  const list = h("ul", { class: "db-list" });
  const name = h("input", { type: "text", name: "database", autocomplete: "off", required: true });
  const createButton = h("button", { type: "submit", class: "primary" }, "Create database");

  const announce = (message) => {
    notice.textContent = message;
    notice.hidden = !message;
  };

  const form = h(
    "form",
    { class: "create-db", novalidate: true },
    field("New database name", name, "Letters, digits, and _ - . only."),
    createButton,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = name.value.trim();
    if (!value) {
      createErrors.show("Type a name for the new database.");
      name.focus();
      return;
    }
    const ok = await runAction(createButton, createErrors, async () => {
      await request("PUT", "/admin/databases", { query: { name: value }, body: { DatabaseName: value } });
      return true;
    }, "Creating…");
    if (ok) {
      name.value = "";
      announce(`Database “${value}” was created.`);
      load();
    }
  });

  const createCard = refusal
    ? h(
        "section",
        { class: "card note" },
        h("p", { class: "reason-text" }, `Creating and deleting databases: ${refusal} You see the databases your certificate can reach.`),
      )
    : h(
        "section",
        { class: "card", "aria-labelledby": "create-db-title" },
        h("header", { class: "card-header" }, h("h2", { id: "create-db-title" }, "Create a database")),
        form,
        createErrors,
      );
  replace(
    main,
    h("div", { class: "page-header" }, h("p", { class: "breadcrumb" }, "Manage Server"), h("h1", {}, "Databases")),
    notice,
    createCard,
    h(
      "section",
      { class: "card", "aria-labelledby": "db-list-title" },
      h("header", { class: "card-header" }, h("h2", { id: "db-list-title" }, "Databases")),
      listErrors,
      list,
    ),
  );

  async function load() {
    listErrors.clear();
    try {
      const body = await request("GET", "/databases", { query: { namesOnly: true } });
      const names = (body?.Databases ?? []).map((d) => (typeof d === "string" ? d : d.Name)).filter(Boolean);
      names.sort((a, b) => a.localeCompare(b));
      replace(list, names.length === 0 ? h("li", { class: "muted" }, "No databases yet.") : names.map(row));
    } catch (err) {
      replace(list);
      listErrors.show(`The databases could not be listed: ${err.message}`);
    }
  }

  function row(db) {
    if (refusal) {
      // A User reaches only the databases its certificate names: say with which access ("shop · Read").
      const access = accessOf(db);
      return h(
        "li",
        { class: "db-row" },
        h("span", {}, h("span", { class: "db-name" }, db), access ? h("span", { class: "access" }, ` · ${accessLabel(access)}`) : null),
      );
    }
    const del = h("button", { type: "button", class: "danger small", "aria-label": `Delete database ${db}` }, "Delete");
    del.addEventListener("click", () =>
      confirmDialog({
        title: "Delete database",
        message: h(
          "div",
          {},
          h("p", {}, "Delete the database ", h("strong", {}, db), " and all of its documents?"),
          h("p", {}, "It is also removed from every certificate's permissions. This cannot be undone."),
        ),
        confirmLabel: "Delete database",
        action: () => request("DELETE", "/admin/databases", { body: { DatabaseNames: [db], HardDelete: true } }),
        onDone: () => {
          announce(`Database “${db}” was deleted.`);
          load();
        },
      }),
    );
    // Who has access: every certificate that reaches this database, with its access and why.
    const who = h("ul", { class: "access-list" });
    const access = h("details", { class: "db-access" }, h("summary", { "aria-label": `Who has access to ${db}` }, "Who has access"), who);
    access.addEventListener("toggle", async () => {
      if (!access.open) return;
      replace(who, h("li", { class: "muted" }, "Loading…"));
      try {
        const items = await databaseAccess(db);
        replace(who, items.length ? items : h("li", { class: "muted" }, "No certificate reaches it."));
      } catch (err) {
        replace(who, h("li", { class: "error" }, `Could not be loaded: ${err.message}`));
      }
    });
    return h("li", { class: "db-row" }, h("span", { class: "db-name" }, db), access, del);
  }

  load();
  return () => {};
}
