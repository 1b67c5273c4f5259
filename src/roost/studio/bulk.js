// Bulk actions on the selected certificates (issue 17): disable, grant a database permission, delete. Each goes
// through the same API call as its one-certificate form (so every rule holds for each), one after the other; the
// result says what was done and what was refused, and why.

import { request } from "./api.js";
import { field, h, replace, select } from "./dom.js";
import { confirmDialog, openDialog, runAction } from "./dialog.js";
import { ACCESS } from "./format.js";
import { loadDatabaseNames } from "./certificate-form.js";

function definitionOf(cert, changes) {
  return {
    Thumbprint: cert.Thumbprint,
    Name: cert.Name,
    SecurityClearance: cert.SecurityClearance,
    Permissions: { ...(cert.Permissions ?? {}) },
    Disabled: Boolean(cert.Disabled),
    ...changes,
  };
}

async function eachOf(certs, call) {
  const done = [];
  const refused = [];
  for (const cert of certs) {
    try {
      await call(cert);
      done.push(cert);
    } catch (err) {
      refused.push(`${cert.Name}: ${err.message}`);
    }
  }
  return { done, refused };
}

function report(verb, { done, refused }) {
  const names = done.map((c) => c.Name);
  return {
    message: names.length ? `${verb} ${names.length} certificate${names.length === 1 ? "" : "s"}: ${names.join(", ")}.` : "",
    refused,
  };
}

/**
 * The bulk bar above the certificate table. `selected()` gives the selected rows' certificates; `onDone({message,
 * refused})` redraws the list.
 */
export function bulkBar({ selected, clear, onDone, errors }) {
  const count = h("span", { class: "bulk-count" });
  const disable = h("button", { type: "button", class: "secondary small" }, "Disable");
  const grant = h("button", { type: "button", class: "secondary small" }, "Grant database access…");
  const remove = h("button", { type: "button", class: "danger small" }, "Delete…");
  const none = h("button", { type: "button", class: "link small" }, "Clear selection");
  const bar = h("div", { class: "bulk", role: "region", "aria-label": "Selected certificates", hidden: true },
    count, disable, grant, remove, none);

  none.addEventListener("click", clear);
  disable.addEventListener("click", async () => {
    const certs = selected().filter((c) => !c.Disabled);
    const result = await runAction(disable, errors, () => eachOf(certs, (cert) =>
      request("POST", "/admin/certificates/edit", { body: definitionOf(cert, { Disabled: true }) })), "Disabling…");
    if (result) onDone(report("Disabled", result));
  });
  remove.addEventListener("click", () => {
    const certs = selected();
    confirmDialog({
      title: "Delete the selected certificates",
      message: h("div", {}, h("p", {}, `Delete ${certs.length} certificate${certs.length === 1 ? "" : "s"}? This cannot be undone; each stops working on its next request.`),
        h("ul", { class: "purge-list" }, certs.map((c) => h("li", { class: "cert-name" }, c.Name)))),
      confirmLabel: "Delete certificates",
      action: () => eachOf(certs, (cert) => request("DELETE", "/admin/certificates", { query: { thumbprint: cert.Thumbprint } })),
      onDone: (result) => onDone(report("Deleted", result)),
    });
  });
  grant.addEventListener("click", async () => {
    const users = selected().filter((c) => c.SecurityClearance === "ValidUser");
    const others = selected().length - users.length;
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    const submit = h("button", { type: "submit", class: "primary", form: "bulk-grant-form" }, "Grant");
    const handle = openDialog({ title: "Grant database access", body: h("p", { class: "muted" }, "Loading databases…"), actions: [cancel, submit] });
    cancel.addEventListener("click", handle.close);
    const databases = await loadDatabaseNames(request, handle.error);
    const database = select(databases.map((d) => [d, d]), databases[0] ?? "", { name: "database" });
    const access = select(Object.entries(ACCESS), "Read", { name: "access" });
    const form = h("form", { id: "bulk-grant-form", class: "form", novalidate: true },
      h("p", {}, `To ${users.length} User certificate${users.length === 1 ? "" : "s"}.`,
        others ? ` ${others} selected Operator or Cluster Admin certificate${others === 1 ? " reaches" : "s reach"} every database already and ${others === 1 ? "is" : "are"} left as ${others === 1 ? "it is" : "they are"}.` : ""),
      field("Database", database), field("Access", access));
    replace(handle.body, form);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!database.value) return handle.error.show("Choose a database (create one on the Databases page first).");
      const result = await runAction(submit, handle.error, () => eachOf(users, (cert) =>
        request("POST", "/admin/certificates/edit", {
          body: definitionOf(cert, { Permissions: { ...(cert.Permissions ?? {}), [database.value]: access.value } }),
        })), "Granting…");
      if (!result) return;
      handle.close();
      onDone(report(`Granted ${ACCESS[access.value]} on ${database.value} to`, result));
    });
  });

  return {
    element: bar,
    update(n) {
      bar.hidden = n === 0;
      count.textContent = `${n} selected`;
    },
  };
}
