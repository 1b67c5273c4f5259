// The two-factor clearance screen (figure 3, "Entering Studio with Two-Factor Authentication"), shown
// whenever the API answers 428: (A) the authentication code, (B) the session duration and whether the
// clearance holds for this browser only or for every client of the certificate.

import { ApiError, request } from "./api.js";
import { errorBox, field, h, replace } from "./dom.js";
import { runAction } from "./dialog.js";

export async function renderTwoFactor(container, { reason, onCleared }) {
  let config = { DefaultTwoFactorSessionDurationInMin: 120, MaxTwoFactorSessionDurationInMin: 1440 };
  try {
    config = { ...config, ...(await request("GET", "/authentication/2fa/configuration")) };
  } catch {
    // Keep the defaults; the server still enforces its own maximum.
  }
  const errors = errorBox();
  const code = h("input", {
    type: "text",
    name: "code",
    inputmode: "numeric",
    autocomplete: "one-time-code",
    pattern: "[0-9]{6}",
    maxlength: 6,
    required: true,
    autofocus: true,
    class: "code",
  });
  const max = config.MaxTwoFactorSessionDurationInMin;
  const duration = h("input", {
    type: "number",
    name: "duration",
    min: 1,
    max,
    step: 1,
    value: String(config.DefaultTwoFactorSessionDurationInMin),
  });
  const thisBrowser = h("input", { type: "radio", name: "scope", id: "scope-browser", value: "browser", checked: true });
  const allClients = h("input", { type: "radio", name: "scope", id: "scope-all", value: "all" });
  const submit = h("button", { type: "submit", class: "primary" }, "Verify");
  const hint = h("p", { class: "notice success", role: "status", hidden: true });
  const form = h(
    "form",
    { class: "form two-factor", novalidate: true },
    h("h2", {}, "A. Authentication code"),
    field("Code from your authenticator app", code, "Six digits; a new code appears every 30 seconds."),
    h("h2", {}, "B. Additional settings"),
    field("Session duration (minutes)", duration, `At most ${max} minutes.`),
    h(
      "fieldset",
      { class: "radios" },
      h("legend", {}, "Grant access to"),
      h("div", { class: "field checkbox" }, thisBrowser, h("label", { for: "scope-browser" }, "Only this browser")),
      h(
        "div",
        { class: "field checkbox" },
        allClients,
        h("label", { for: "scope-all" }, "All clients of this certificate (applications, other browsers)"),
      ),
    ),
    errors,
    hint,
    h("div", { class: "dialog-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = code.value.replace(/\s+/g, "");
    if (!/^\d{6}$/.test(token)) {
      errors.show("Enter the six-digit code shown by your authenticator app.");
      code.focus();
      return;
    }
    const minutes = Number(duration.value);
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > max) {
      errors.show(`The session duration is a whole number of minutes from 1 to ${max}.`);
      duration.focus();
      return;
    }
    let lockedFor = 0;
    const ok = await runAction(submit, errors, async () => {
      try {
        await request("POST", "/authentication/2fa", {
          query: { hasLimits: thisBrowser.checked, sessionDurationInMin: minutes },
          body: { Token: token },
        });
        return true;
      } catch (err) {
        code.select();
        if (err instanceof ApiError && err.status === 429) lockedFor = lockSeconds(err);
        throw err instanceof ApiError ? new ApiError(err.status, err.type, explain(err)) : err;
      }
    }, "Verifying…");
    if (ok) onCleared?.();
    else if (lockedFor > 0) lockOut(lockedFor);
  });

  // Locked out: one message with a countdown, and Verify disabled until the lock ends.
  let timer = null;
  function lockOut(seconds) {
    clearInterval(timer);
    const until = Date.now() + seconds * 1000;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      if (left === 0) {
        clearInterval(timer);
        submit.disabled = false;
        errors.clear();
        hint.textContent = "The lock has ended: enter the current code.";
        hint.hidden = false;
        return;
      }
      submit.disabled = true;
      errors.show(
        `Too many wrong codes: two-factor sign-in for this certificate is locked. Try again in ${clockText(left)}.`,
      );
    };
    hint.hidden = true;
    tick();
    timer = setInterval(tick, 1000);
  }

  replace(
    container,
    h(
      "section",
      { class: "card clearance-screen", "aria-labelledby": "clearance-title" },
      h("h1", { id: "clearance-title" }, "Two-factor authentication"),
      h("p", {}, "Your certificate requires two-factor authentication. Enter the code from your authenticator app to continue."),
      reason ? h("p", { class: "hint" }, reason) : null,
      form,
    ),
  );
  code.focus();
}

function lockSeconds(err) {
  const wait = Number(err.retryAfter);
  if (Number.isFinite(wait) && wait > 0) return Math.ceil(wait);
  const said = /locked for (\d+) more seconds/.exec(err.message ?? "");
  return said ? Number(said[1]) : 60;
}

/** 299 -> "4:59" */
function clockText(seconds) {
  return `${Math.floor(seconds / 60)}:${String(seconds % 60).padStart(2, "0")}`;
}

function explain(err) {
  if (err.status === 406) {
    if (/already used/.test(err.message)) {
      return "That code was already used; each code is accepted once. Wait for the next code from your authenticator app.";
    }
    // A wrong code's refusal carries TriesLeft: the wrong codes left before the lockout.
    const left = err.body?.TriesLeft;
    const tries = !Number.isInteger(left) ? ""
      : left === 0 ? " That was the last try: sign-in for this certificate is now locked for a while."
      : ` ${left} ${left === 1 ? "try" : "tries"} left before sign-in is locked for a while.`;
    return `That code was not accepted. Codes change every 30 seconds and each is accepted once: wait for the next one and check that your phone's clock is right.${tries}`;
  }
  if (err.status === 429) {
    return `Too many wrong codes: two-factor sign-in for this certificate is locked. Try again in ${clockText(lockSeconds(err))}.`;
  }
  return err.message;
}
