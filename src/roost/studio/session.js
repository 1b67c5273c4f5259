// Who the caller is (from GET /certificates/whoami) and what their clearance lets them do. The server
// decides; these checks only decide which buttons to offer and why others are disabled.

import { request } from "./api.js";

const RANK = { UnauthenticatedClients: 0, ValidUser: 1, Operator: 2, ClusterNode: 3, ClusterAdmin: 3 };

export const session = {
  me: null,
  async load() {
    this.me = await request("GET", "/certificates/whoami");
    return this.me;
  },
  get clearance() {
    return this.me?.SecurityClearance ?? "UnauthenticatedClients";
  },
  get thumbprint() {
    return (this.me?.Thumbprint ?? "").toUpperCase();
  },
  isOperator() {
    return RANK[this.clearance] >= RANK.Operator;
  },
  isClusterAdmin() {
    return RANK[this.clearance] >= RANK.ClusterAdmin;
  },
};

/** Clearances ordered by what they allow (Cluster Node and Cluster Admin alike). */
export function clearanceRank(clearance) {
  return RANK[clearance] ?? 0;
}

export function isAdminClearance(clearance) {
  return clearance === "ClusterAdmin" || clearance === "ClusterNode";
}

export const OLD_SERVER_CERTIFICATE = "Old Server Certificate - can delete";

/** Why the caller may not edit `cert`, or null when they may. */
export function editRefusal(cert) {
  if (cert.Name === OLD_SERVER_CERTIFICATE && cert.SecurityClearance === "ClusterNode") {
    return "A former server certificate: it stays trusted as Cluster Node so that nodes still presenting it keep working. Delete it once no node uses it.";
  }
  return manageRefusal(cert);
}

/** Why the caller may not manage `cert` (edit or delete it), or null when they may. */
export function manageRefusal(cert) {
  if (!session.isOperator()) return "Managing certificates needs Operator or Cluster Admin clearance.";
  if (isAdminClearance(cert.SecurityClearance) && !session.isClusterAdmin()) {
    return `Only a Cluster Admin can change a ${cert.SecurityClearance === "ClusterNode" ? "Cluster Node" : "Cluster Admin"} certificate.`;
  }
  return null;
}

/** Why the caller may not delete `cert`, or null when they may. */
export function deleteRefusal(cert) {
  if (cert.Thumbprint && cert.Thumbprint.toUpperCase() === session.thumbprint) {
    return "You are connected with this certificate, so it cannot be deleted.";
  }
  if (cert.CollectionPrimaryKey) {
    return "Part of a collection: delete its primary certificate instead.";
  }
  return manageRefusal(cert);
}

export const CLUSTER_ADMIN_ONLY = "Only a Cluster Admin can do this; you are an Operator.";
export const OPERATOR_ONLY = "This needs Operator or Cluster Admin clearance.";
