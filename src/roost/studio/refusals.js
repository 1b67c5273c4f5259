// Roost's authentication refusals, each in its own words with its own remedy. The API answers every one as 403
// "InvalidAuth" and tells them apart only in its message (RavenDB's wording), so the Studio reads the message;
// anything it does not recognise is shown as the server wrote it.

const NEW_WINDOW =
  "Then close the browser (or open a new private window) so that it asks again which certificate to use.";

/** {title, message, remedy, offerTwoFactor} for a refusal of GET /certificates/whoami (or of any call). */
export function describeRefusal(err) {
  const text = err?.message ?? "";
  const name = /client certificate '([^']*)'/.exec(text)?.[1];
  const yours = name ? `The certificate your browser presented (${name})` : "The certificate your browser presented";
  if (/none was provided/i.test(text)) {
    return {
      title: "No client certificate",
      message: "Roost did not receive a client certificate from your browser.",
      remedy: `Install your certificate (.pfx) in the browser. ${NEW_WINDOW}`,
    };
  }
  if (/is unknown to the server but has a known Public Key Pinning Hash/i.test(text)) {
    return {
      title: "This certificate's issuer is not trusted",
      message: `${yours} has the key of a registered certificate, but Roost does not know who issued it.`,
      remedy: "Ask an administrator to register this certificate, or to trust its issuer (Security.WellKnownIssuerHashes.Admin).",
    };
  }
  if (/is unknown to the server/i.test(text)) {
    return {
      title: "This certificate is not registered on this server",
      message: `${yours} is not registered here: it may have been deleted, or it belongs to another server.`,
      remedy: `Ask an administrator for a new certificate, or to upload this one again. ${NEW_WINDOW}`,
    };
  }
  if (/has expired/i.test(text)) {
    return {
      title: "Your certificate has expired",
      message: `${yours} has expired${expiredOn(text) ? ` on ${expiredOn(text)}` : ""}.`,
      remedy: `Ask an administrator for a new certificate. ${NEW_WINDOW}`,
    };
  }
  if (/cannot be used before/i.test(text)) {
    return {
      title: "Your certificate is not valid yet",
      message: `${yours} ${text.replace(/^.*?(cannot be used before)/i, "$1")}.`,
      remedy: "Check this computer's date and time; if they are right, wait until then or ask for a new certificate.",
    };
  }
  if (/is disabled/i.test(text)) {
    return {
      title: "Your certificate is disabled",
      message: `${yours} is registered, but disabled on this server.`,
      remedy: "Ask an administrator to enable it again (Certificates > Edit), or to issue you a new one.",
    };
  }
  if (/^Access to the server was denied\.?$/i.test(text.trim())) {
    // RavenDB's words when a two-factor session limited to one browser is presented by another.
    return {
      title: "Your two-factor session belongs to another browser",
      message: "Your certificate uses two-factor authentication, and its session was opened for another browser only.",
      remedy: "Enter a code from your authenticator app to open a session here.",
      offerTwoFactor: true,
    };
  }
  if (/Could not authorize|Insufficient security clearance/i.test(text)) {
    return {
      title: "Your certificate does not allow this",
      message: text,
      remedy: "Your certificate works; it lacks the clearance or the database access this needs. Ask an administrator for more access.",
    };
  }
  return { title: "Roost did not let you in", message: text || "Roost refused the request.", remedy: "" };
}

/** "Monday, December 01, 2026" from RavenDB's "... has expired on Monday, December 01, 2026. Please ..." */
function expiredOn(text) {
  return /has expired on ([^.]+)\./.exec(text)?.[1] ?? null;
}
