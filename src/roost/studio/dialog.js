// Modal dialogs on the native <dialog> element: showModal() makes the rest of the page inert, Escape
// closes it (the "cancel" event), and Tab wraps around inside it so focus never leaves.

import { ApiError } from "./api.js";
import { errorBox, h, newId } from "./dom.js";

const FOCUSABLE =
  'a[href], button:not([disabled]), input:not([disabled]):not([type="hidden"]), select:not([disabled]), textarea:not([disabled]), summary, [tabindex]:not([tabindex="-1"])';

/**
 * openDialog({title, body, actions}) shows a modal and returns {dialog, close, error, body, footer}.
 * `body` and `actions` are nodes (or arrays of nodes); `error` is the dialog's refusal area.
 */
export function openDialog({ title, body, actions = [], wide = false, onClose, label = "Dialog" }) {
  const titleId = newId("dialog-title");
  const error = errorBox();
  const content = h("div", { class: "dialog-body" }, body);
  const footer = h("div", { class: "dialog-actions" }, actions);
  const closeButton = h("button", { type: "button", class: "icon-button", "aria-label": "Close dialog" }, "×");
  const dialog = h(
    "dialog",
    { class: ["dialog", wide && "wide"], "aria-labelledby": titleId },
    h("header", { class: "dialog-header" }, h("h2", { id: titleId }, title), closeButton),
    content,
    error,
    footer,
  );
  const close = () => {
    if (dialog.open) dialog.close();
  };
  closeButton.addEventListener("click", close);
  dialog.addEventListener("keydown", (event) => {
    if (event.key !== "Tab") return;
    const items = [...dialog.querySelectorAll(FOCUSABLE)].filter((el) => el.offsetParent !== null);
    if (items.length === 0) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && document.activeElement === first) {
      last.focus();
      event.preventDefault();
    } else if (!event.shiftKey && document.activeElement === last) {
      first.focus();
      event.preventDefault();
    }
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    onClose?.();
  });
  document.body.append(dialog);
  dialog.showModal();
  const autofocus = dialog.querySelector("[autofocus]") || content.querySelector(FOCUSABLE);
  (autofocus || closeButton).focus();
  return { dialog, close, error, body: content, footer };
}

/**
 * Runs `action` for `button`: disables it while it runs and shows a refusal in `errorTarget`.
 * Returns the action's result, or undefined when it failed.
 */
export async function runAction(button, errorTarget, action, busyText = "Working…") {
  const label = button.textContent;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  button.textContent = busyText;
  errorTarget?.clear();
  try {
    return await action();
  } catch (err) {
    const message = err instanceof ApiError ? err.message : `Something went wrong in the Studio: ${err.message}`;
    if (errorTarget) errorTarget.show(message);
    else console.error(err);
    return undefined;
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
    button.textContent = label;
  }
}

/** A confirmation dialog; `action` runs on confirm and the dialog closes only if it succeeds. */
export function confirmDialog({ title, message, confirmLabel, danger = true, action, onDone }) {
  const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
  const confirm = h("button", { type: "button", class: danger ? "danger" : "primary" }, confirmLabel);
  const handle = openDialog({ title, body: message, actions: [cancel, confirm], label: title });
  cancel.addEventListener("click", handle.close);
  confirm.addEventListener("click", async () => {
    const done = await runAction(confirm, handle.error, async () => ({ result: await action() }));
    if (done) {
      handle.close();
      onDone?.(done.result);
    }
  });
  cancel.focus();
  return handle;
}
