"""The shared vocabulary of Roost: identifiers, clearances, access levels and route levels."""

from __future__ import annotations

import enum
from typing import NewType

Thumbprint = NewType("Thumbprint", str)
"""SHA-1 of the certificate's DER, uppercase hex, as .NET's X509Certificate2.Thumbprint (RavenDB's key)."""

DatabaseName = NewType("DatabaseName", str)
DocumentId = NewType("DocumentId", str)


class Clearance(enum.StrEnum):
    """RavenDB's SecurityClearance values, spelled as on the wire."""

    UNAUTHENTICATED_CLIENTS = "UnauthenticatedClients"
    CLUSTER_ADMIN = "ClusterAdmin"
    CLUSTER_NODE = "ClusterNode"
    OPERATOR = "Operator"
    VALID_USER = "ValidUser"

    @property
    def is_cluster_admin(self) -> bool:
        """RavenDB's IsClusterAdmin(): ClusterNode certificates are as powerful as ClusterAdmin."""
        return self in (Clearance.CLUSTER_ADMIN, Clearance.CLUSTER_NODE)

    @property
    def label(self) -> str:
        """How people read it (the Studio, the CLI, messages): the one table is CLEARANCE_LABELS."""
        return CLEARANCE_LABELS[self]


# The one table of clearance labels: the server's messages, the CLI (clearance_label) and the Studio (format.js's
# CLEARANCES, checked against this by tests/test_contracts.py) all read clearances this way.
CLEARANCE_LABELS: dict[Clearance, str] = {
    Clearance.CLUSTER_ADMIN: "Cluster Admin",
    Clearance.CLUSTER_NODE: "Cluster Node",
    Clearance.OPERATOR: "Operator",
    Clearance.VALID_USER: "User",
    Clearance.UNAUTHENTICATED_CLIENTS: "Unauthenticated",
}


def clearance_label(value: str) -> str:
    """The label of a clearance as it appears on the wire; an unknown value is shown as it is."""
    try:
        return CLEARANCE_LABELS[Clearance(value)]
    except ValueError:
        return value


class Access(enum.StrEnum):
    """Per-database access of a User certificate."""

    READ_WRITE = "ReadWrite"
    ADMIN = "Admin"
    READ = "Read"


class Level(enum.StrEnum):
    """The authorization level every route declares when it is registered."""

    UNAUTHENTICATED = "Unauthenticated"
    VALID_USER = "ValidUser"
    DATABASE_READ = "DatabaseRead"
    DATABASE_WRITE = "DatabaseWrite"
    DATABASE_ADMIN = "DatabaseAdmin"
    OPERATOR = "Operator"
    CLUSTER_ADMIN = "ClusterAdmin"

    @property
    def is_database_level(self) -> bool:
        return self in (Level.DATABASE_READ, Level.DATABASE_WRITE, Level.DATABASE_ADMIN)
