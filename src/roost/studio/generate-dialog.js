// "Generate client certificate": figure 3 of the seed. Roost makes the key pair, registers the
// certificate and answers with <Name>.zip (.pfx, .crt, .key), which the browser downloads. Roost keeps
// no private key, so the package is the only copy. With "I have a certificate request" the key never exists
// on the server: the .csr goes to POST /admin/certificates/csr and the signed <Name>.crt comes back.

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
  const hasRequest = h("input", { type: "checkbox", name: "has-request", id: "generate-has-csr" });
  const requestFile = h("input", { type: "file", name: "csr", accept: ".csr,.pem,.req" });
  const requestPanel = h(
    "div",
    { class: "csr-panel", hidden: true },
    field("Certificate request (.csr)", requestFile,
      "Made where the key lives, e.g. roost certs request, or: openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client.key -out client.csr -subj /CN=name"),
  );
  const passphraseField = field("Passphrase (optional)", passphrase, "Protects the .pfx and .key in the package. Roost does not keep it.");
  const advanced = h("details", { class: "advanced" }, h("summary", {}, "Advanced"), field("Key type", keyType));
  hasRequest.addEventListener("change", () => {
    requestPanel.hidden = !hasRequest.checked;
    passphraseField.hidden = hasRequest.checked; // no key here: nothing to protect
    advanced.hidden = hasRequest.checked; // the request's key decides the key type
    generate.textContent = hasRequest.checked ? "Sign request" : "Generate";
  });

  const form = h(
    "form",
    { id: "generate-form", class: "form", novalidate: true },
    settings.elements.slice(0, 2),
    h(
      "div",
      { class: "field checkbox" },
      hasRequest,
      h("label", { for: "generate-has-csr" }, "I have a certificate request (the private key stays with me)"),
    ),
    requestPanel,
    passphraseField,
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
    advanced,
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
    if (hasRequest.checked && !requestFile.files[0]) {
      handle.error.show("Choose the certificate request (.csr) file, or untick “I have a certificate request”.");
      return;
    }
    const body = {
      ...settings.value(),
      ExpirationMonths: Number(months.value),
    };
    const secret = enrolment.secret();
    if (secret) body.TwoFactorAuthenticationKey = secret;
    if (hasRequest.checked) {
      body.CertificateRequest = await requestFile.files[0].text();
      const signed = await runAction(
        generate,
        handle.error,
        () => request("POST", "/admin/certificates/csr", { body, expect: "blob" }),
        "Signing…",
      );
      if (!signed) return;
      const filename = `${body.Name}.crt`;
      saveBlob(signed.blob, filename);
      onDone?.();
      showDone(handle, filename, body.Name, secret, { signed: true });
      return;
    }
    body.KeyType = keyType.value;
    if (passphrase.value) body.Password = passphrase.value;
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

function showDone(handle, filename, name, secret, { signed = false } = {}) {
  const close = h("button", { type: "button", class: "primary" }, "Close");
  close.addEventListener("click", handle.close);
  const panel = h("div", { class: "two-factor-panel" });
  if (secret) showSecret(panel, secret, name);
  replace(
    handle.body,
    h(
      "div",
      { class: "done" },
      h("p", { class: "notice success", role: "status" },
        signed ? `The request for “${name}” was signed and ${filename} downloaded.` : `Certificate “${name}” was generated and ${filename} downloaded.`),
      h(
        "p",
        {},
        signed
          ? "The private key never left your machine: put the downloaded certificate beside the key you made the request with."
          : "The package holds the certificate with its private key (.pfx) and the same as PEM (.crt and .key). " +
            "Roost keeps no private key: store the package safely, it is the only copy.",
      ),
      secret ? panel : null,
      connectionSnippets(name, { signed }),
    ),
  );
  replace(handle.footer, close);
  close.focus();
}

/**
 * Ready-to-paste code that connects to this server with the new certificate: Python, Node.js, .NET and curl, with
 * this server's URL and its CA (GET /certificates/ca, "Download the server's CA").
 */
export function connectionSnippets(name, { signed = false } = {}) {
  const url = window.location.origin;
  const crt = `${name}.crt`;
  const key = signed ? "client.key" : `${name}.key`;
  const pem = `${name}.pem`;
  const snippets = [
    ["curl", `curl --cert ${crt} --key ${key} --cacert roost-ca.crt ${url}/certificates/whoami`],
    ["Python (ravendb)", [
      `# cat ${crt} ${key} > ${pem}`,
      "from ravendb import DocumentStore",
      `store = DocumentStore(urls=["${url}"], database="YourDatabase")`,
      `store.certificate_pem_path = "${pem}"`,
      `store.trust_store_path = "roost-ca.crt"`,
      "store.initialize()",
    ].join("\n")],
    ["Node.js (ravendb)", [
      'const fs = require("fs");',
      'const { DocumentStore } = require("ravendb");',
      `const store = new DocumentStore("${url}", "YourDatabase", {`,
      `  type: "pem", certificate: fs.readFileSync("${crt}", "utf8") + fs.readFileSync("${key}", "utf8"),`,
      '  ca: fs.readFileSync("roost-ca.crt"),',
      "});",
      "store.initialize();",
    ].join("\n")],
    [".NET (RavenDB.Client)", [
      "var store = new DocumentStore {",
      `    Urls = new[] { "${url}" }, Database = "YourDatabase",`,
      signed ? `    Certificate = X509Certificate2.CreateFromPemFile("${crt}", "${key}")` : `    Certificate = new X509Certificate2("${name}.pfx", "<passphrase>")`,
      "}.Initialize();",
      "// Trust roost-ca.crt in the machine's store, or check it in RequestExecutor.RemoteCertificateValidationCallback.",
    ].join("\n")],
  ];
  return h(
    "section",
    { class: "snippets", "aria-label": "Connect with this certificate" },
    h("h3", {}, "Connect with this certificate"),
    h("p", { class: "hint" }, "The server's CA: ",
      h("a", { href: "/certificates/ca", download: "roost-ca.crt" }, "download roost-ca.crt"),
      ". Replace YourDatabase with a database the certificate may use."),
    snippets.map(([label, code]) =>
      h("div", { class: "snippet" },
        h("div", { class: "snippet-head" }, h("span", { class: "label" }, label), copyButton(code, `Copy the ${label} snippet`, "Copy")),
        h("pre", {}, h("code", {}, code)))),
  );
}
