// "Generate client certificate": figure 3 of the seed. Roost makes the key pair, registers the
// certificate and answers with <Name>.zip (.pfx, .crt, .key), which the browser downloads. Roost keeps
// no private key, so the package is the only copy.

import { request, saveBlob } from "./api.js";
import { field, h, replace, select } from "./dom.js";
import { openDialog, runAction } from "./dialog.js";
import { certificateSettings, clearErrorOnInput, COMMON_NAME_LIMIT, loadDatabaseNames } from "./certificate-form.js";
import { copyButton } from "./copy.js";

export const KEY_TYPES = [
  ["EC-P256", "ECDSA P-256 (recommended: small and fast)"],
  ["RSA-2048", "RSA 2048 (for older clients)"],
  ["RSA-4096", "RSA 4096 (as RavenDB generates)"],
];

export async function openGenerateDialog({ onDone }) {
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const generate = h("button", { type: "submit", class: "primary", form: "generate-form" }, "Generate");
  const handle = openDialog({
    title: "Generate client certificate",
    label: "Generate client certificate",
    body: h("p", { class: "muted" }, "Loading databases…"),
    actions: [cancel, generate],
    wide: true,
  });
  cancel.addEventListener("click", handle.close);
  const databases = await loadDatabaseNames(request, handle.error);

  const settings = certificateSettings({
    databases,
    maxName: COMMON_NAME_LIMIT,
    nameHint: `At most ${COMMON_NAME_LIMIT} characters: the name becomes the certificate's Common Name (CN), which X.509 limits to ${COMMON_NAME_LIMIT}.`,
  });
  const passphrase = h("input", { type: "password", name: "passphrase", autocomplete: "new-password" });
  const months = h("input", { type: "number", name: "months", min: 1, max: 120, step: 1, value: "60", required: true });
  const twoFactor = h("input", { type: "checkbox", name: "two-factor" });
  const twoFactorPanel = h("div", { class: "two-factor-panel", hidden: true });
  const keyType = select(KEY_TYPES, "EC-P256", { name: "key-type" });
  const enrolment = twoFactorEnrolment(twoFactor, twoFactorPanel, settings.nameInput, handle.error);

  const form = h(
    "form",
    { id: "generate-form", class: "form", novalidate: true },
    settings.elements.slice(0, 2),
    field("Passphrase (optional)", passphrase, "Protects the .pfx and .key in the package. Roost does not keep it."),
    field(
      "Expiration period (months)",
      months,
      "Five years (60 months) by default. Valid from is dated 7 days back, as RavenDB does, so that clients whose clock runs behind accept it at once.",
    ),
    settings.elements.slice(2),
    h(
      "div",
      { class: "field checkbox" },
      twoFactor,
      h("label", { for: (twoFactor.id = "generate-2fa") }, "Require two-factor authentication"),
    ),
    twoFactorPanel,
    h("details", { class: "advanced" }, h("summary", {}, "Advanced"), field("Key type", keyType)),
  );
  replace(handle.body, form);
  clearErrorOnInput(form, handle.error);
  settings.nameInput.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const problem = settings.validate() || monthsProblem(months);
    if (problem) {
      handle.error.show(problem);
      return;
    }
    const body = {
      ...settings.value(),
      ExpirationMonths: Number(months.value),
      KeyType: keyType.value,
    };
    if (passphrase.value) body.Password = passphrase.value;
    const secret = enrolment.secret();
    if (secret) body.TwoFactorAuthenticationKey = secret;
    const result = await runAction(
      generate,
      handle.error,
      () => request("POST", "/admin/certificates", { body, expect: "blob" }),
      "Generating…",
    );
    if (!result) return;
    const filename = result.filename || `${body.Name}.zip`;
    saveBlob(result.blob, filename);
    onDone?.();
    showDone(handle, filename, body.Name, secret);
  });
}

function monthsProblem(input) {
  const n = Number(input.value);
  if (!Number.isInteger(n) || n < 1 || n > 120) {
    input.focus();
    return "The expiration period is a whole number of months, from 1 to 120.";
  }
  return null;
}

/**
 * "Require two-factor authentication": ticking the box asks the server for a new key once and shows it with its QR
 * code. `secret()` is the key to send, or null when the box is not ticked. Shared by the generate and upload dialogs.
 */
export function twoFactorEnrolment(checkbox, panel, nameInput, error) {
  let secret = null;
  let debounce = null;
  let drawnFor = null; // the name the QR code shown carries
  const draw = () => {
    drawnFor = nameInput.value.trim() || "certificate";
    showSecret(panel, secret, drawnFor);
  };
  // The QR code carries the name the authenticator app shows: draw it again when the name changes (same key).
  nameInput.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (checkbox.checked && secret && (nameInput.value.trim() || "certificate") !== drawnFor) draw();
    }, 300);
  });
  checkbox.addEventListener("change", async () => {
    panel.hidden = !checkbox.checked;
    if (!checkbox.checked || secret) return;
    replace(panel, h("p", { class: "muted" }, "Creating an authentication key…"));
    try {
      secret = (await request("GET", "/admin/certificates/2fa/generate")).Secret;
      draw();
    } catch (err) {
      checkbox.checked = false;
      panel.hidden = true;
      error.show(`Two-factor authentication could not be set up: ${err.message}`);
    }
  });
  return { secret: () => (checkbox.checked ? secret : null) };
}

/** The 2FA key as text and as a QR code (an SVG the server renders), with the shown-once warning. */
export function showSecret(panel, secret, name) {
  const qr = h("img", {
    class: "qr",
    alt: `QR code of the authentication key for ${name}`,
    width: 180,
    height: 180,
  });
  const qrMissing = h("p", { class: "hint", hidden: true }, "The QR code could not be loaded; type the key instead.");
  const qrFailed = () => {
    qr.hidden = true;
    qrMissing.hidden = false;
  };
  qr.addEventListener("error", qrFailed);
  // The key goes in a POST body, never in a URL (history, proxies and logs keep URLs). The SVG comes back as
  // text and is shown through a data: URL, which the Studio's CSP allows for images.
  request("POST", "/admin/certificates/2fa/qr", { body: { Secret: secret, Name: name }, expect: "response" })
    .then((response) => response.text())
    .then((svg) => {
      qr.src = `data:image/svg+xml;base64,${btoa(svg)}`;
    })
    .catch(qrFailed);
  replace(
    panel,
    h(
      "p",
      { class: "notice warning" },
      "Shown once: scan the code or copy the key into an authenticator app (Google Authenticator, 2FAS, …) now. Roost will not show it again.",
    ),
    h(
      "div",
      { class: "secret-row" },
      qr,
      qrMissing,
      h(
        "div",
        {},
        h("p", { class: "label" }, "Authentication key"),
        h("span", { class: "secret-copy" }, h("code", { class: "secret" }, secret), " ", copyButton(secret, "Copy authentication key", "Copy key")),
      ),
    ),
  );
}

function showDone(handle, filename, name, secret) {
  const close = h("button", { type: "button", class: "primary" }, "Close");
  close.addEventListener("click", handle.close);
  const panel = h("div", { class: "two-factor-panel" });
  if (secret) showSecret(panel, secret, name);
  replace(
    handle.body,
    h(
      "div",
      { class: "done" },
      h("p", { class: "notice success", role: "status" }, `Certificate “${name}” was generated and ${filename} downloaded.`),
      h(
        "p",
        {},
        "The package holds the certificate with its private key (.pfx) and the same as PEM (.crt and .key). " +
          "Roost keeps no private key: store the package safely, it is the only copy.",
      ),
      secret ? panel : null,
    ),
  );
  replace(handle.footer, close);
  close.focus();
}
