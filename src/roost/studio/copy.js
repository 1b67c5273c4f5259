// Thumbprints with a copy button. The clipboard API needs a secure context, which Roost always is
// (HTTPS only); when the browser still refuses, the text is selected so Ctrl+C works.

import { h } from "./dom.js";

/** `short` shows the first 8 and last 4 digits (the full value is in the tooltip and copied). */
export function thumbprintCell(thumbprint, { short = false } = {}) {
  const full = thumbprint ?? "";
  const shown = short && full.length > 20 ? `${full.slice(0, 8)}…${full.slice(-4)}` : full;
  const code = h("code", { class: "thumbprint", title: full, dataset: { full } }, shown);
  const status = h("span", { class: "copy-status", "aria-live": "polite" });
  const button = h(
    "button",
    { type: "button", class: "icon-button copy", "aria-label": `Copy thumbprint ${thumbprint}`, title: "Copy thumbprint" },
    "Copy",
  );
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(thumbprint);
      status.textContent = "Copied";
    } catch {
      const range = document.createRange();
      code.textContent = full;
      range.selectNodeContents(code);
      const selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      status.textContent = "Selected: press Ctrl+C to copy";
    }
    setTimeout(() => {
      status.textContent = "";
    }, 2500);
  });
  return h("span", { class: "thumbprint-cell" }, code, button, status);
}

/** A Copy button for a value shown next to it (the 2FA key): "Copied", or the value selected for Ctrl+C. */
export function copyButton(value, label, text = "Copy") {
  const status = h("span", { class: "copy-status", "aria-live": "polite" });
  const button = h("button", { type: "button", class: "icon-button copy", "aria-label": label, title: label }, text);
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(value);
      status.textContent = "Copied";
    } catch {
      status.textContent = "The browser refused: select the key and press Ctrl+C";
    }
    setTimeout(() => {
      status.textContent = "";
    }, 2500);
  });
  return h("span", { class: "copy-wrap" }, button, " ", status);
}
