// The Certificates view (Manage Server > Certificates): server certificate, well-known admin
// certificates and the client-certificate list with its filters, sort and paging.

import { request } from "./api.js";
import { errorBox, field, h, replace, select } from "./dom.js";
import { confirmDialog, runAction } from "./dialog.js";
import { thumbprintCell } from "./copy.js";
import { clearanceBadge, clearanceLabel, expiryBadge, formatCount, formatDate } from "./format.js";
import { fetchPage, invalidate, pageSpan } from "./certificate-query.js";
import { openGenerateDialog } from "./generate-dialog.js";
import { openUploadDialog } from "./upload-dialog.js";
import { openDeleteDialog, openEditDialog } from "./edit-dialog.js";
import { openDetailsDialog } from "./details-dialog.js";
import { bulkBar } from "./bulk.js";
import { permissionsList } from "./permissions.js";
import { serverPanel, wellKnownPanel } from "./server-panel.js";
import { deleteRefusal, editRefusal as editRefusalOf, OPERATOR_ONLY, session } from "./session.js";

const PAGE_SIZES = [25, 50, 100];
const BACKDATED = "Roost, like RavenDB, dates generated certificates 7 days back so that clients whose clock runs behind accept them at once.";

export function renderCertificates(main) {
  if (!session.isOperator()) {
    replace(main, refusalPanel());
    return () => {};
  }

  const state = { text: "", clearance: "", state: "", sort: "name", start: 0, pageSize: 25 };
  const notice = h("p", { class: "notice success", role: "status", hidden: true });
  const listErrors = errorBox();
  const serverSlot = h("div", { class: "server-slot" });
  const wellKnownSlot = h("div", { class: "well-known-slot" });
  const tbody = h("tbody");
  const summary = h("p", { class: "summary", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "secondary small" }, "Previous page");
  const next = h("button", { type: "button", class: "secondary small" }, "Next page");
  let controller = null;
  let serverStale = true; // the server panel is drawn on the first load and after a change
  let registeredServer = null; // the server certificate's own registry entry, when it has one

  const announce = (message) => {
    notice.textContent = message;
    notice.hidden = !message;
  };
  const changed = (message) => {
    invalidate();
    if (message) announce(message);
    serverStale = true; // a renewal or replacement changes the server panel too
    load();
  };

  // Filters (figure 1, item 7).
  const text = h("input", { type: "search", name: "filter", autocomplete: "off" });
  const clearance = select(
    [["", "All clearances"], ...["ClusterAdmin", "ClusterNode", "Operator", "ValidUser"].map((c) => [c, clearanceLabel(c)])],
    "",
    { name: "clearance" },
  );
  const expiry = select(
    [["", "All"], ["valid", "Valid"], ["expiring", "Expiring within 30 days"], ["expired", "Expired"],
      ["unused", "Not used for 90 days"]],
    "",
    { name: "state" },
  );
  const sort = select([["name", "Name"], ["expiry", "Expiration date"]], "name", { name: "sort" });
  const pageSize = select(PAGE_SIZES.map((n) => [String(n), String(n)]), "25", { name: "page-size" });
  let debounce = null;
  text.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      state.text = text.value.trim();
      state.start = 0;
      load();
    }, 250);
  });
  for (const [control, key] of [[clearance, "clearance"], [expiry, "state"], [sort, "sort"]]) {
    control.addEventListener("change", () => {
      state[key] = control.value;
      state.start = 0;
      load();
    });
  }
  pageSize.addEventListener("change", () => {
    state.pageSize = Number(pageSize.value);
    state.start = 0;
    load();
  });
  prev.addEventListener("click", () => {
    state.start = Math.max(0, state.start - state.pageSize);
    load();
  });
  next.addEventListener("click", () => {
    state.start += state.pageSize;
    load();
  });

  // Client-certificate actions (figure 1, item 3).
  const generate = h("button", { type: "button", class: "primary" }, "Generate client certificate");
  const upload = h("button", { type: "button", class: "secondary" }, "Upload client certificate");
  const purge = h("button", { type: "button", class: "secondary" }, "Purge expired");
  generate.addEventListener("click", () => openGenerateDialog({ onDone: () => changed("") }));
  upload.addEventListener("click", () => openUploadDialog({ onDone: () => changed("") }));
  purge.addEventListener("click", async () => {
    // Ask first only when there is something to purge; otherwise just say so.
    const expired = await runAction(purge, listErrors, () =>
      request("GET", "/admin/certificates", { query: { metadataOnly: true, state: "expired", pageSize: 11 } }), "Checking…");
    if (!expired) return;
    const found = (expired.Results ?? []).filter((c) => c.Thumbprint !== expired.LoadedServerCert);
    const count = Math.max(expired.TotalResults ?? 0, found.length);
    if (count === 0) {
      announce("Nothing has expired: there is nothing to purge.");
      return;
    }
    const names = found.slice(0, 10).map((c) => c.Name);
    confirmDialog({
      title: "Purge expired certificates",
      message: h(
        "div",
        {},
        h("p", {}, `Delete the ${count === 1 ? "expired certificate" : `${formatCount(count)} expired certificates`}? This cannot be undone.`),
        h("ul", { class: "purge-list" }, names.map((n) => h("li", { class: "cert-name" }, n)), count > names.length ? h("li", { class: "muted" }, `and ${formatCount(count - names.length)} more`) : null),
      ),
      confirmLabel: "Purge expired",
      action: () => request("DELETE", "/admin/certificates/purge"),
      onDone: (result) => {
        const names = (result?.Deleted ?? []).map((d) => d.Name);
        changed(
          names.length === 0
            ? "There were no expired certificates to purge."
            : `Purged ${names.length} expired certificate${names.length === 1 ? "" : "s"}: ${names.join(", ")}.`,
        );
      },
    });
  });

  // Bulk actions on the selected rows (issue 17): selection is of the rows shown, cleared when the list is redrawn.
  const selection = new Map();
  const bulk = bulkBar({
    selected: () => [...selection.values()],
    clear: () => {
      selection.clear();
      for (const box of tbody.querySelectorAll("input.select")) box.checked = false;
      bulk.update(0);
    },
    errors: listErrors,
    onDone: ({ message, refused }) => {
      changed(message);
      if (refused.length) listErrors.show(`Refused: ${refused.join(" ")}`);
    },
  });

  const table = h(
    "table",
    { class: "cert-table" },
    h("caption", { class: "visually-hidden" }, "Client certificates"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        // Columns a narrow window can spare are hidden by CSS (col-*); Edit and Delete always stay in view.
        [["Name"], ["Thumbprint", "col-thumb"], ["Clearance"], ["Valid from", "col-valid", BACKDATED], ["Expiration"],
          ["Database permissions", "col-perms"], ["Last used", "col-used"], ["2FA", "col-2fa"], ["Actions", "col-actions"]]
          .map(([label, cls, title]) => h("th", { scope: "col", class: cls, title }, label)),
      ),
    ),
    tbody,
  );

  replace(
    main,
    h("div", { class: "page-header" }, h("p", { class: "breadcrumb" }, "Manage Server"), h("h1", {}, "Certificates")),
    notice,
    serverSlot,
    wellKnownSlot,
    h(
      "section",
      { class: "card clients", "aria-labelledby": "clients-title" },
      h("header", { class: "card-header" }, h("h2", { id: "clients-title" }, "Client certificates"),
        h("div", { class: "actions" }, generate, upload, purge)),
      h(
        "form",
        { class: "filters", role: "search", "aria-label": "Certificate filters", on: { submit: (e) => e.preventDefault() } },
        field("Name or thumbprint", text),
        field("Clearance", clearance),
        field("State", expiry),
        field("Sort by", sort),
        field("Per page", pageSize),
      ),
      listErrors,
      bulk.element,
      h("div", { class: "table-wrap" }, table),
      h("nav", { class: "pager", "aria-label": "Pages" }, summary, h("div", { class: "actions" }, prev, next)),
    ),
  );

  async function load() {
    controller?.abort();
    controller = new AbortController();
    const signal = controller.signal;
    listErrors.clear();
    main.setAttribute("aria-busy", "true");
    try {
      const page = await fetchPage(state, signal);
      if (signal.aborted) return;
      if (page.items.length === 0 && state.start > 0 && page.rawTotal > 0 && state.start >= page.rawTotal) {
        state.start = Math.max(0, Math.floor((page.rawTotal - 1) / state.pageSize) * state.pageSize);
        load();
        return;
      }
      if (serverStale) {
        serverStale = false;
        // Asked by thumbprint: the registered entry when there is one (it then counts in the list's total).
        let entry = page.loadedServerCert ? await serverEntryOf(page.loadedServerCert) : null;
        entry ??= page.serverEntry;
        registeredServer = entry && !("Generated" in entry) ? entry : null;
        replace(serverSlot, serverPanel({ entry, thumbprint: page.loadedServerCert, onChanged: changed }));
        replace(wellKnownSlot, wellKnownPanel(page.wellKnown));
        if (signal.aborted) return;
      }
      renderRows(page.items);
      const span = pageSpan(page, state, registeredServer);
      summary.textContent =
        span.total === 0
          ? "No certificates match."
          : `Showing ${formatCount(span.first)}–${formatCount(span.last)} of ${formatCount(span.total)}`;
      prev.disabled = state.start === 0;
      next.disabled = !span.hasNext;
    } catch (err) {
      if (err.name === "AbortError") return;
      listErrors.show(`The certificates could not be loaded: ${err.message}`);
      replace(tbody);
      summary.textContent = "";
    } finally {
      if (!signal.aborted) main.removeAttribute("aria-busy");
    }
  }

  function renderRows(items) {
    selection.clear();
    bulk.update(0);
    replace(tbody, items.length === 0 ? h("tr", {}, h("td", { colspan: 9, class: "empty" }, "No certificates match these filters.")) : items.map(row));
  }

  function row(cert) {
    const current = cert.Thumbprint && cert.Thumbprint.toUpperCase() === session.thumbprint;
    const members = cert.CollectionSecondaryKeys ?? [];
    const editRefusal = editRefusalOf(cert);
    const removeRefusal = deleteRefusal(cert);
    const reasonId = `why-${cert.Thumbprint}`;
    const reasons = [...new Set([editRefusal, removeRefusal].filter(Boolean))];
    const edit = h("button", {
      type: "button", class: "secondary small", "aria-label": `Edit ${cert.Name}`,
      disabled: Boolean(editRefusal), title: editRefusal, "aria-describedby": editRefusal ? reasonId : null,
    }, "Edit");
    const del = h("button", {
      type: "button", class: "danger small", "aria-label": `Delete ${cert.Name}`,
      disabled: Boolean(removeRefusal), title: removeRefusal, "aria-describedby": removeRefusal ? reasonId : null,
    }, "Delete");
    edit.addEventListener("click", () => openEditDialog(cert, { onDone: changed }));
    const details = h("button", { type: "button", class: "link small details", "aria-label": `Details of ${cert.Name}` },
      "Details");
    details.addEventListener("click", () => openDetailsDialog(cert, { onChanged: () => changed("") }));
    const pick = h("input", { type: "checkbox", class: "select" });
    pick.addEventListener("change", () => {
      if (pick.checked) selection.set(cert.Thumbprint, cert);
      else selection.delete(cert.Thumbprint);
      bulk.update(selection.size);
    });
    del.addEventListener("click", () => openDeleteDialog(cert, { onDone: changed }));
    const why = reasons.length ? h("p", { class: "reason", id: reasonId }, reasons.join(" ")) : null;
    return h(
      "tr",
      { class: [current && "current", cert.Disabled && "disabled"], dataset: { thumbprint: cert.Thumbprint } },
      h(
        "td",
        { class: "name" },
        h("label", { class: "select-label" }, pick, h("span", { class: "visually-hidden" }, `Select ${cert.Name}`)),
        h("span", { class: "cert-name" }, cert.Name),
        current ? h("span", { class: "badge current", title: "You are connected with this certificate" }, "current") : null,
        cert.Disabled ? h("span", { class: "badge muted" }, "disabled") : null,
        cert.HasTwoFactor ? h("span", { class: "badge twofa narrow-only", title: "Requires two-factor authentication" }, "2FA") : null,
        members.length > 0
          ? h(
              "details",
              { class: "members" },
              h("summary", {}, `Collection: ${members.length + 1} certificates`),
              h("ul", { class: "thumbprints" }, (cert.CollectionMembers ?? members.map((t) => ({ Thumbprint: t }))).map((m) =>
                h("li", {}, m.Subject ? h("span", { class: "subject" }, `${m.Subject} `) : null, h("code", {}, m.Thumbprint),
                  m.NotAfter ? h("span", { class: "muted" }, ` expires ${formatDate(m.NotAfter)}`) : null))),
            )
          : null,
        details,
      ),
      h("td", { class: "thumb col-thumb" }, thumbprintCell(cert.Thumbprint, { short: true })),
      h("td", {}, clearanceBadge(cert.SecurityClearance)),
      h("td", { class: "nowrap col-valid" }, formatDate(cert.NotBefore)),
      h(
        "td",
        { class: "expiry", title: `Valid from ${formatDate(cert.NotBefore)} to ${formatDate(cert.NotAfter)}` },
        h("span", { class: "date" }, formatDate(cert.NotAfter)), " ", expiryBadge(cert.NotAfter),
      ),
      h("td", { class: "col-perms" }, cert.SecurityClearance === "ValidUser" ? permissionsList(cert.Permissions) : h("span", { class: "muted" }, "All databases")),
      h("td", { class: "nowrap col-used" }, cert.LastUsedDate ? h("span", { title: formatDate(cert.LastUsedDate, { time: true }) }, formatDate(cert.LastUsedDate)) : h("span", { class: "muted" }, "Never")),
      h("td", { class: "col-2fa" }, cert.HasTwoFactor ? h("span", { class: "badge on" }, "on") : h("span", { class: "badge off" }, "off")),
      h("td", { class: "row-actions col-actions" }, h("div", { class: "buttons" }, edit, del), why),
    );
  }

  load();
  return () => controller?.abort();
}

async function serverEntryOf(thumbprint) {
  try {
    const body = await request("GET", "/admin/certificates", { query: { thumbprint, metadataOnly: true } });
    return body?.Results?.[0] ?? null;
  } catch {
    return null;
  }
}

function refusalPanel() {
  const me = session.me ?? {};
  return h(
    "div",
    {},
    h("div", { class: "page-header" }, h("p", { class: "breadcrumb" }, "Manage Server"), h("h1", {}, "Certificates")),
    h(
      "section",
      { class: "card refusal", role: "alert" },
      h("h2", {}, "You cannot open the Certificates view"),
      h(
        "p",
        {},
        "You are connected as ",
        h("strong", {}, me.Name ?? "an unknown certificate"),
        ` with ${clearanceLabel(session.clearance)} clearance. ${OPERATOR_ONLY}`,
      ),
      h("p", {}, "Ask a Cluster Admin or an Operator for a certificate with more clearance, or to make the change for you."),
      h("p", {}, h("a", { href: "#/databases" }, "Go to your databases")),
    ),
  );
}
