// "Upload client certificate": trust a certificate made elsewhere (another server's export, a
// corporate PKI). The file may be DER, PEM text (one or several certificates) or a .pfx; several
// certificates become one collection: a primary entry with the others as its members.

import { ApiError, fileToBase64, request } from "./api.js";
import { describeCertificate } from "./x509.js";
import { field, h, replace } from "./dom.js";
import { openDialog, runAction } from "./dialog.js";
import { certificateSettings, clearErrorOnInput, loadDatabaseNames } from "./certificate-form.js";
import { showSecret, twoFactorEnrolment } from "./generate-dialog.js";
import { thumbprintCell } from "./copy.js";

const PEM_BLOCK = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

export async function openUploadDialog({ onDone }) {
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const save = h("button", { type: "submit", class: "primary", form: "upload-form" }, "Upload");
  const handle = openDialog({
    title: "Upload client certificate",
    label: "Upload client certificate",
    body: h("p", { class: "muted" }, "Loading databases…"),
    actions: [cancel, save],
    wide: true,
  });
  cancel.addEventListener("click", handle.close);
  const databases = await loadDatabaseNames(request, handle.error);

  const file = h("input", { type: "file", name: "file", accept: ".pfx,.p12,.crt,.cer,.pem,.der", required: true });
  const passphrase = h("input", { type: "password", name: "passphrase", autocomplete: "off" });
  const preview = h("div", { class: "preview", "aria-live": "polite" });
  const settings = certificateSettings({
    databases,
    // Cluster Node is the clearance of server certificates, which Roost registers itself: not one for a client.
    clearances: ["ClusterAdmin", "Operator", "ValidUser"],
  });
  const twoFactor = h("input", { type: "checkbox", name: "two-factor", id: "upload-2fa" });
  const twoFactorPanel = h("div", { class: "two-factor-panel", hidden: true });

  let caOnly = null; // the preview's explanation when the file holds only CA certificates
  file.addEventListener("change", async () => {
    const chosen = file.files[0];
    caOnly = null;
    replace(preview);
    if (!chosen) return;
    if (!settings.nameInput.value.trim()) settings.nameInput.value = chosen.name.replace(/\.[^.]+$/, "");
    try {
      const description = await describeFile(chosen);
      caOnly = description.querySelector(".notice.warning")?.textContent ?? null;
      replace(preview, description);
    } catch {
      replace(preview, h("p", { class: "hint" }, `${chosen.name}: the Studio could not read it; Roost will check it when you upload.`));
    }
  });

  const enrolment = twoFactorEnrolment(twoFactor, twoFactorPanel, settings.nameInput, handle.error);

  const form = h(
    "form",
    { id: "upload-form", class: "form", novalidate: true },
    field("Certificate file (.pfx, .crt, .pem or .der)", file),
    preview,
    field("Passphrase of the .pfx (if any)", passphrase, "Used once to read the file; Roost does not keep it."),
    settings.elements,
    h("div", { class: "field checkbox" }, twoFactor, h("label", { for: "upload-2fa" }, "Require two-factor authentication")),
    twoFactorPanel,
  );
  replace(handle.body, form);
  clearErrorOnInput(form, handle.error);
  file.focus();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const chosen = file.files[0];
    if (!chosen) {
      handle.error.show("Choose the certificate file to upload.");
      file.focus();
      return;
    }
    const problem = settings.validate();
    if (problem) {
      handle.error.show(problem);
      return;
    }
    const body = { ...settings.value(), Certificate: await fileToBase64(chosen) };
    if (passphrase.value) body.Password = passphrase.value;
    const secret = enrolment.secret();
    if (secret) body.TwoFactorAuthenticationKey = secret;
    const ok = await runAction(save, handle.error, async () => {
      try {
        await request("PUT", "/admin/certificates", { body });
      } catch (err) {
        // The server's refusal names neither the certificate nor the fix; the preview did.
        if (caOnly && err instanceof ApiError && err.status === 400) throw new ApiError(err.status, err.type, `${err.message} ${caOnly}`);
        throw err;
      }
      return true;
    }, "Uploading…");
    if (!ok) return;
    onDone?.();
    await showUploaded(handle, body.Name, secret);
  });
}

/** What the browser can tell before uploading: PEM and DER are hashed here, a .pfx is read by Roost. */
async function describeFile(chosen) {
  const bytes = new Uint8Array(await chosen.arrayBuffer());
  const text = new TextDecoder("latin1").decode(bytes);
  const blocks = [...text.matchAll(PEM_BLOCK)].map((m) => base64Bytes(m[1]));
  let ders = blocks;
  if (blocks.length === 0 && bytes[0] === 0x30 && !/\.(pfx|p12)$/i.test(chosen.name)) ders = [bytes];
  if (ders.length === 0) {
    return h("p", { class: "hint" }, `${chosen.name}: Roost reads the .pfx when you upload it and lists its members then.`);
  }
  const prints = await Promise.all(ders.map(sha1Hex));
  const described = ders.map((der) => describeCertificate(der));
  const cas = described.map((d, i) => ({ ...d, thumbprint: prints[i] })).filter((d) => d.ca);
  const onlyCas = cas.length > 0 && cas.length === ders.length;
  return h(
    "div",
    { class: "members" },
    onlyCas ? h("p", { class: "notice warning", role: "status" }, caOnlyExplanation(cas)) : null,
    h(
      "p",
      { class: "hint" },
      prints.length === 1
        ? `${chosen.name} holds one certificate:`
        : `${chosen.name} holds ${prints.length} certificates; they will be registered as one collection (CA certificates of a chain are left out):`,
    ),
    h(
      "ul",
      { class: "thumbprints" },
      prints.map((p, i) => h("li", {}, h("code", {}, p), described[i]?.commonName ? ` ${described[i].commonName}${described[i].ca ? " (CA)" : ""}` : "")),
    ),
  );
}

/** What to say when the file holds only CA certificates: which, why Roost refuses it, and how to make the right one. */
function caOnlyExplanation(cas) {
  const names = cas.map((c) => `“${c.commonName ?? c.thumbprint}”`).join(", ");
  return `${names} ${cas.length === 1 ? "is a CA certificate" : "are CA certificates"} (basicConstraints CA:TRUE, ` +
    "which openssl req -x509 sets by default), so Roost will not register it as a client certificate: a CA signs " +
    "certificates, it does not identify a client. Make a client certificate instead, e.g. openssl req -x509 … " +
    "-addext basicConstraints=critical,CA:FALSE -addext extendedKeyUsage=clientAuth, or use Generate client certificate.";
}

function base64Bytes(b64) {
  const binary = atob(b64.replace(/\s+/g, ""));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

async function sha1Hex(bytes) {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-1", bytes));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("").toUpperCase();
}

async function showUploaded(handle, name, secret) {
  const close = h("button", { type: "button", class: "primary" }, "Close");
  close.addEventListener("click", handle.close);
  let members = [];
  try {
    const body = await request("GET", "/admin/certificates", { query: { name, secondary: true, metadataOnly: true } });
    members = (body?.Results ?? []).filter((c) => c.Name === name);
  } catch {
    // The list is a courtesy; the upload itself succeeded.
  }
  const panel = h("div", { class: "two-factor-panel" });
  if (secret) showSecret(panel, secret, name);
  replace(
    handle.body,
    h("p", { class: "notice success", role: "status" }, `Certificate “${name}” was uploaded and is now trusted.`),
    members.length > 1
      ? h(
          "div",
          { class: "members" },
          h("p", {}, `It is a collection of ${members.length} certificates:`),
          h(
            "ul",
            { class: "thumbprints" },
            members.map((c) => h("li", {}, thumbprintCell(c.Thumbprint), c.CollectionPrimaryKey ? "" : " (primary)")),
          ),
        )
      : members.length === 1
        ? h("p", {}, "Thumbprint: ", thumbprintCell(members[0].Thumbprint))
        : null,
    secret ? panel : null,
  );
  replace(handle.footer, close);
  close.focus();
}
