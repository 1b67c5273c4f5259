// Roost's public HTTP API, same origin; the browser presents the client certificate during the TLS
// handshake, so there is no token to handle here. Every failure becomes an ApiError with a message
// a person can read; a 428 (two-factor authentication required) is also announced on `apiEvents`
// so that the app can show the clearance screen.

export const apiEvents = new EventTarget();

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const FALLBACK = {
  400: "Roost could not accept this request.",
  401: "Roost did not accept your client certificate.",
  403: "Roost refused this request: your certificate does not allow it.",
  404: "Roost could not find what was asked for.",
  406: "The code was not accepted.",
  409: "This conflicts with the current state of the server.",
  413: "The request is too large.",
  428: "Your certificate requires two-factor authentication. Enter a code from your authenticator.",
  429: "Too many attempts. Wait a moment and try again.",
};

async function toError(response) {
  let type = `Http${response.status}`;
  let message = "";
  let body = null;
  const text = await response.text().catch(() => "");
  if (text) {
    try {
      body = JSON.parse(text);
      type = body.Type || type;
      message = body.Message || body.Error || "";
    } catch {
      // Not JSON (a proxy page, or plain text): show plain text, never HTML.
      if (!/^\s*</.test(text)) message = text.trim().slice(0, 500);
    }
  }
  if (!message) {
    message = FALLBACK[response.status] || `Roost answered ${response.status} ${response.statusText}.`;
  }
  const error = new ApiError(response.status, type, message);
  error.retryAfter = response.headers.get("Retry-After");
  error.body = body && typeof body === "object" ? body : null; // extra fields a refusal may carry (TriesLeft)
  return error;
}

/**
 * request("GET", "/admin/certificates", {query: {start: 0}}) -> parsed JSON (null for an empty body).
 * expect: "json" (default), "blob" ({blob, filename}) or "response".
 */
export async function request(method, path, { query, body, expect = "json", signal } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [key, value] of Object.entries(query ?? {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, "NetworkError", "Roost could not be reached. Check that the server is running.");
  }
  if (!response.ok) {
    const error = await toError(response);
    if (response.status === 428) apiEvents.dispatchEvent(new CustomEvent("two-factor-required", { detail: error }));
    // An authentication refusal mid-session (the certificate was deleted, disabled, or its session ended): the app
    // asks whoami again rather than keep showing "Signed in as ...".
    if (response.status === 403 && error.type === "InvalidAuth" && path !== "/certificates/whoami") {
      apiEvents.dispatchEvent(new CustomEvent("refused", { detail: error }));
    }
    throw error;
  }
  if (expect === "response") return response;
  if (expect === "blob") {
    return { blob: await response.blob(), filename: filenameOf(response.headers.get("Content-Disposition")) };
  }
  const text = await response.text();
  return text ? JSON.parse(text) : null;
}

function filenameOf(disposition) {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*(?:UTF-8'')?([^;]+)/i.exec(disposition);
  if (star) return safeName(decodeURIComponent(star[1].trim().replace(/^"|"$/g, "")));
  const plain = /filename\s*=\s*("?)([^";]+)\1/i.exec(disposition);
  if (plain) {
    try {
      return safeName(decodeURIComponent(plain[2].trim()));
    } catch {
      return safeName(plain[2].trim());
    }
  }
  return null;
}

function safeName(name) {
  return name.replace(/[\\/:*?"<>|\u0000-\u001f]/g, "_");
}

/** Hands a downloaded blob to the browser as a file named `filename`. */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = safeName(filename);
  link.hidden = true;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

/** Reads a File into base64, as the upload endpoints take it (DER, PEM text or .pfx bytes). */
export async function fileToBase64(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}
