// The server certificate (figure 1, items 4 and 6) and the well-known admin certificates (item 5).
// Renew and Replace are Cluster Admin actions; Export is open to Operators.

import { fileToBase64, request, saveBlob } from "./api.js";
import { errorBox, field, h } from "./dom.js";
import { openDialog, runAction } from "./dialog.js";
import { thumbprintCell } from "./copy.js";
import { expiryBadge, formatDate } from "./format.js";
import { CLUSTER_ADMIN_ONLY, session } from "./session.js";

export function serverPanel({ entry, thumbprint, onChanged }) {
  const errors = errorBox();
  const status = h("p", { class: "notice success", role: "status", hidden: true });
  const adminRefusal = session.isClusterAdmin() ? null : CLUSTER_ADMIN_ONLY;
  const reason = adminRefusal ? h("p", { class: "reason", id: "server-cert-why" }, `Renew and Replace: ${adminRefusal}`) : null;
  const guarded = { class: "secondary", disabled: Boolean(adminRefusal), title: adminRefusal, "aria-describedby": reason && "server-cert-why" };
  const renew = h("button", { type: "button", ...guarded }, "Renew now");
  const replaceButton = h("button", { type: "button", ...guarded }, "Replace…");
  const exportButton = h("button", { type: "button", class: "secondary" }, "Export server certificates");

  renew.addEventListener("click", async () => {
    const done = await runAction(renew, errors, async () => ({
      result: await request("POST", "/admin/certificates/refresh"),
    }), "Renewing…");
    if (done) onChanged?.(replacedMessage("renewed", done.result));
  });
  replaceButton.addEventListener("click", () => openReplaceDialog({ onDone: onChanged }));
  exportButton.addEventListener("click", () =>
    runAction(exportButton, errors, async () => {
      const { blob, filename } = await request("GET", "/admin/certificates/export", { expect: "blob" });
      saveBlob(blob, filename || "ClusterCertificatesCollection.pfx");
      status.textContent = "The server certificates were exported (public certificates only, no private key).";
      status.hidden = false;
    }, "Exporting…"),
  );

  const details = entry
    ? h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Name"), h("dd", {}, entry.Name)),
        h("div", {}, h("dt", {}, "Thumbprint"), h("dd", {}, thumbprintCell(entry.Thumbprint))),
        h("div", {}, h("dt", {}, "Valid from"), h("dd", {}, formatDate(entry.NotBefore, { time: true }))),
        h(
          "div",
          {},
          h("dt", {}, "Expiration"),
          h("dd", {}, formatDate(entry.NotAfter, { time: true }), " ", expiryBadge(entry.NotAfter)),
        ),
      )
    : h(
        "dl",
        { class: "facts" },
        h("div", {}, h("dt", {}, "Thumbprint"), h("dd", {}, thumbprint ? thumbprintCell(thumbprint) : "—")),
      );

  return h(
    "section",
    { class: "card server-cert", "aria-labelledby": "server-cert-title" },
    h("header", { class: "card-header" }, h("h2", { id: "server-cert-title" }, "Server certificate"),
      h("div", { class: "actions" }, renew, replaceButton, exportButton)),
    reason,
    details,
    status,
    errors,
  );
}

export function wellKnownPanel(thumbprints) {
  return h(
    "section",
    { class: "card well-known", "aria-labelledby": "well-known-title" },
    h("header", { class: "card-header" }, h("h2", { id: "well-known-title" }, "Well-known admin certificates")),
    h(
      "p",
      { class: "hint" },
      "Trusted as Cluster Admin by the server's configuration (Security.WellKnownCertificates.Admin). Read-only here.",
    ),
    thumbprints.length === 0
      ? h("p", { class: "muted" }, "None configured.")
      : h("ul", { class: "thumbprints" }, thumbprints.map((t) => h("li", {}, thumbprintCell(t)))),
  );
}

function openReplaceDialog({ onDone }) {
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const submit = h("button", { type: "submit", class: "primary", form: "replace-form" }, "Replace");
  const file = h("input", { type: "file", accept: ".pfx,.p12", required: true });
  const password = h("input", { type: "password", autocomplete: "off" });
  const immediately = h("input", { type: "checkbox", id: "replace-now", checked: true });
  const form = h(
    "form",
    { id: "replace-form", class: "form", novalidate: true },
    h("p", {}, "Upload the new server certificate as a .pfx with its private key. Client certificates keep working."),
    field("Server certificate (.pfx)", file),
    field("Passphrase of the .pfx (if any)", password),
    h("div", { class: "field checkbox" }, immediately,
      h("label", { for: "replace-now" }, "Replace immediately (otherwise when every node has confirmed)")),
  );
  const handle = openDialog({ title: "Replace server certificate", body: form, actions: [cancel, submit] });
  cancel.addEventListener("click", handle.close);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!file.files[0]) {
      handle.error.show("Choose the .pfx file of the new server certificate.");
      return;
    }
    const body = { Certificate: await fileToBase64(file.files[0]) };
    if (password.value) body.Password = password.value;
    const ok = await runAction(submit, handle.error, async () => ({
      result: await request("POST", "/admin/certificates/replace-cluster-cert", {
        query: { replaceImmediately: immediately.checked },
        body,
      }),
    }), "Replacing…");
    if (ok) {
      handle.close();
      onDone?.(replacedMessage("replaced", ok.result));
    }
  });
}


/** "The server certificate was renewed: its thumbprint is now X (was Y)." */
function replacedMessage(verb, result) {
  if (result?.Thumbprint && result?.OldThumbprint) {
    return `The server certificate was ${verb}: its thumbprint is now ${result.Thumbprint} (was ${result.OldThumbprint}).`;
  }
  return `The server certificate was ${verb}.`;
}
