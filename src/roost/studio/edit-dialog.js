// "Edit certificate" (figure 2, item 7) and the delete confirmation (item 8). Only the name,
// clearance, permissions and disabled flag change; the certificate itself never does.

import { apiEvents, request } from "./api.js";
import { h } from "./dom.js";
import { clearanceLabel } from "./format.js";
import { clearanceRank, session } from "./session.js";
import { confirmDialog, openDialog, runAction } from "./dialog.js";
import { certificateSettings, clearErrorOnInput, loadDatabaseNames } from "./certificate-form.js";
import { twoFactorEnrolment } from "./generate-dialog.js";

export async function openEditDialog(cert, { onDone }) {
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const save = h("button", { type: "submit", class: "primary", form: "edit-form" }, "Save");
  const handle = openDialog({
    title: `Edit certificate “${cert.Name}”`,
    label: "Edit certificate",
    body: h("p", { class: "muted" }, "Loading databases…"),
    actions: [cancel, save],
    wide: true,
  });
  cancel.addEventListener("click", handle.close);
  const databases = await loadDatabaseNames(request, handle.error);
  const settings = certificateSettings({
    name: cert.Name,
    clearance: cert.SecurityClearance,
    permissions: cert.Permissions ?? {},
    databases,
    // Cluster Node only for a certificate that has it already (a server's): it is not a client's clearance.
    clearances: cert.SecurityClearance === "ClusterNode" ? ["ClusterAdmin", "ClusterNode", "Operator", "ValidUser"] : ["ClusterAdmin", "Operator", "ValidUser"],
  });
  const mine = Boolean(cert.Thumbprint) && cert.Thumbprint.toUpperCase() === session.thumbprint;
  const lowersMine = () => mine && clearanceRank(settings.clearanceSelect.value) < clearanceRank(cert.SecurityClearance);
  const selfWarning = h("p", { class: "notice warning self-warning", role: "status", hidden: true });
  const syncWarning = () => {
    selfWarning.hidden = !lowersMine();
    selfWarning.textContent = lowersMine()
      ? `You are signed in with this certificate: saving gives you ${clearanceLabel(settings.clearanceSelect.value)} clearance, ` +
        `and from then on this browser can no longer do what needs ${clearanceLabel(cert.SecurityClearance)}.`
      : "";
  };
  settings.clearanceSelect.addEventListener("change", syncWarning);
  const disabled = h("input", { type: "checkbox", id: "edit-disabled", checked: Boolean(cert.Disabled) });
  const removeTwoFactor = h("input", { type: "checkbox", id: "edit-remove-2fa" });
  // Add a key (or replace the one it has): a new key, shown once, as in Generate; open sessions of the old key end.
  const newKey = h("input", { type: "checkbox", id: "edit-new-2fa" });
  const newKeyPanel = h("div", { class: "two-factor-panel", hidden: true });
  const enrolment = twoFactorEnrolment(newKey, newKeyPanel, settings.nameInput, handle.error);
  newKey.addEventListener("change", () => {
    if (newKey.checked) removeTwoFactor.checked = false;
  });
  removeTwoFactor.addEventListener("change", () => {
    if (removeTwoFactor.checked && newKey.checked) newKey.click();
  });
  const form = h(
    "form",
    { id: "edit-form", class: "form", novalidate: true },
    h("p", { class: "muted" }, "Thumbprint ", h("code", {}, cert.Thumbprint)),
    settings.elements,
    selfWarning,
    h(
      "div",
      { class: "field checkbox" },
      disabled,
      h("label", { for: "edit-disabled" }, "Disabled (the certificate is refused until enabled again)"),
    ),
    cert.HasTwoFactor
      ? h(
          "div",
          { class: "field checkbox" },
          removeTwoFactor,
          h("label", { for: "edit-remove-2fa" }, "Remove the two-factor authentication key"),
        )
      : null,
    h(
      "div",
      { class: "field checkbox" },
      newKey,
      h("label", { for: "edit-new-2fa" }, cert.HasTwoFactor
        ? "Replace the two-factor authentication key (a new key; open sessions end)"
        : "Require two-factor authentication (a new key)"),
    ),
    newKeyPanel,
  );
  handle.body.replaceChildren(form);
  clearErrorOnInput(form, handle.error);
  settings.nameInput.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = settings.validate();
    if (problem) {
      handle.error.show(problem);
      return;
    }
    const body = { Thumbprint: cert.Thumbprint, ...settings.value(), Disabled: disabled.checked };
    const secret = enrolment.secret();
    if (secret) body.TwoFactorAuthenticationKey = secret;
    const query = removeTwoFactor.checked ? { deleteTwoFactorConfiguration: true } : undefined;
    const saveIt = () => request("POST", "/admin/certificates/edit", { query, body });
    const saved = () => {
      handle.close();
      if (mine) apiEvents.dispatchEvent(new CustomEvent("identity-changed"));
      onDone?.(`Certificate “${body.Name}” was saved.`);
    };
    if (lowersMine()) {
      confirmDialog({
        title: "Lower your own clearance?",
        danger: true,
        message: h(
          "div",
          {},
          h("p", {}, `You are signed in with “${cert.Name}”. Saving changes its clearance from ${clearanceLabel(cert.SecurityClearance)} to ${clearanceLabel(body.SecurityClearance)}.`),
          h("p", {}, "This browser loses what the higher clearance allows at once; only another administrator can give it back."),
        ),
        confirmLabel: "Lower my clearance",
        action: saveIt,
        onDone: saved,
      });
      return;
    }
    const ok = await runAction(save, handle.error, async () => {
      await saveIt();
      return true;
    }, "Saving…");
    if (ok) saved();
  });
}

export function openDeleteDialog(cert, { onDone }) {
  const members = cert.CollectionSecondaryKeys?.length ?? 0;
  confirmDialog({
    title: "Delete certificate",
    message: h(
      "div",
      {},
      h("p", {}, "Delete the certificate ", h("strong", { class: "cert-name" }, cert.Name), "?"),
      h("p", { class: "muted" }, "Thumbprint ", h("code", {}, cert.Thumbprint)),
      members > 0 ? h("p", {}, `Its ${members} collection member${members === 1 ? "" : "s"} will be deleted too.`) : null,
      h("p", {}, "Clients using it are refused from their next request. This cannot be undone."),
    ),
    confirmLabel: "Delete",
    action: () => request("DELETE", "/admin/certificates", { query: { thumbprint: cert.Thumbprint } }),
    onDone: () => onDone?.(`Certificate “${cert.Name}” was deleted.`),
  });
}

