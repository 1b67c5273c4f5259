// How the Studio writes dates, clearances and certificate states. Dates are shown in UTC, ISO style,
// because certificates expire at an instant and administrators compare them across time zones.

import { h } from "./dom.js";

export const DAY_MS = 24 * 60 * 60 * 1000;
export const EXPIRING_DAYS = 30;

/** Parses RavenDB's dates ("2031-11-23T07:00:00.0000000Z", sometimes without the Z) into a Date. */
export function parseDate(value) {
  if (!value) return null;
  let text = String(value).replace(/(\.\d{3})\d+/, "$1");
  if (!/(Z|[+-]\d\d:?\d\d)$/.test(text)) text += "Z";
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function formatDate(value, { time = false } = {}) {
  const date = value instanceof Date ? value : parseDate(value);
  if (!date) return "—";
  const iso = date.toISOString();
  return time ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : iso.slice(0, 10);
}

/** Whole days from now until `value` (negative once passed). */
export function daysUntil(value, now = Date.now()) {
  const date = value instanceof Date ? value : parseDate(value);
  if (!date) return null;
  return Math.floor((date.getTime() - now) / DAY_MS);
}

/** "expired", "expiring" (within 30 days) or "valid", the same words as the `state` filter. */
export function expiryState(notAfter, now = Date.now()) {
  const date = parseDate(notAfter);
  if (!date) return "valid";
  if (date.getTime() <= now) return "expired";
  if (date.getTime() - now <= EXPIRING_DAYS * DAY_MS) return "expiring";
  return "valid";
}

/** A badge for a certificate's expiry: "expired", "expires in N days", or nothing. */
export function expiryBadge(notAfter) {
  const state = expiryState(notAfter);
  if (state === "expired") return h("span", { class: "badge danger" }, "expired");
  if (state === "expiring") {
    const days = daysUntil(notAfter);
    const text = days <= 0 ? "expires today" : days === 1 ? "expires in 1 day" : `expires in ${days} days`;
    return h("span", { class: "badge warning" }, text);
  }
  return null;
}

export const CLEARANCES = {
  ClusterAdmin: "Cluster Admin",
  ClusterNode: "Cluster Node",
  Operator: "Operator",
  ValidUser: "User",
  UnauthenticatedClients: "Unauthenticated",
};

export function clearanceLabel(value) {
  return CLEARANCES[value] ?? String(value ?? "—");
}

export function clearanceBadge(value) {
  const tone = { ClusterAdmin: "admin", ClusterNode: "admin", Operator: "operator", ValidUser: "user" }[value];
  return h("span", { class: ["badge", "clearance", tone] }, clearanceLabel(value));
}

export const ACCESS = { Admin: "Admin", ReadWrite: "Read/Write", Read: "Read" };

export function accessLabel(value) {
  return ACCESS[value] ?? String(value);
}

/** "1,234" */
export function formatCount(n) {
  return Number(n).toLocaleString("en-US");
}

