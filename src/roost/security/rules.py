"""Who may create, upload, edit, disable, delete and purge which certificate: one table, one check.

RavenDB's rules (reference ravendb-certificates.md, section 2.1) with its gaps closed: an Operator never creates,
raises to, edits, disables, deletes or purges a ClusterAdmin or ClusterNode certificate (RavenDB lets it generate
ClusterNode and purge anything); nobody touches a well-known admin (it is a setting, not a registration) or the
server certificate through the certificate API; an earlier server certificate may only be deleted, by a cluster
administrator. ``docs/certificates.md`` shows ``markdown_table()``; a test keeps the two equal.

The rules that do not depend on clearance (nobody deletes or disables the certificate they are connected with;
a collection is deleted through its primary) are the last two functions here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from roost.errors import ForbiddenOperationError
from roost.security.identity import WELL_KNOWN_NAME, Identity
from roost.types import Clearance


class Actor(enum.StrEnum):
    """Who calls, as the rules see it."""

    CLUSTER_ADMIN = "ClusterAdmin"
    CLUSTER_NODE = "ClusterNode"  # a server certificate used as a client: as powerful as ClusterAdmin
    WELL_KNOWN_ADMIN = "Well-known admin"
    OPERATOR = "Operator"
    USER = "User"
    NOBODY = "No valid certificate"


class Verb(enum.StrEnum):
    CREATE = "create"  # POST /admin/certificates: Roost issues the certificate
    UPLOAD = "upload"  # PUT /admin/certificates, also over an existing registration
    EDIT = "edit"  # POST /admin/certificates/edit: name, clearance, permissions, 2FA key
    DISABLE = "disable"  # the same call with Disabled: true
    DELETE = "delete"
    PURGE = "purge"  # DELETE /admin/certificates/purge removes the expired ones the caller may delete
    RENEW = "renew"  # POST /certificates/renew: a certificate gets its own successor (the target is the caller)


class Target(enum.StrEnum):
    """What is touched: a registration by its clearance, or one of the certificates the API cannot change."""

    CLUSTER_ADMIN = "ClusterAdmin"
    CLUSTER_NODE = "ClusterNode"
    OPERATOR = "Operator"
    USER = "ValidUser"
    WELL_KNOWN_ADMIN = "Well-known admin"
    SERVER_CERTIFICATE = "Server certificate"  # the one this server presents
    OLD_SERVER_CERTIFICATE = "Old server certificate"  # "Old Server Certificate - can delete"


ALL_VERBS = frozenset(Verb)
# Renewal is of oneself only (the route renews the caller's certificate): it is in the cells where a caller is
# its own target, and nowhere else. A node's certificate renews through refresh or replace-cluster-cert.
_MANAGE = ALL_VERBS - {Verb.RENEW}
_RENEW = frozenset({Verb.RENEW})
_ADMINS = (Actor.CLUSTER_ADMIN, Actor.CLUSTER_NODE, Actor.WELL_KNOWN_ADMIN)
_REGISTRATIONS = (Target.CLUSTER_ADMIN, Target.CLUSTER_NODE, Target.OPERATOR, Target.USER)

# The table. A pair that is not listed allows nothing.
RULES: Mapping[tuple[Actor, Target], frozenset[Verb]] = {
    **{(actor, target): _MANAGE for actor in _ADMINS for target in _REGISTRATIONS},
    (Actor.CLUSTER_ADMIN, Target.CLUSTER_ADMIN): ALL_VERBS,
    # Earlier server certificates stay ClusterNode until deleted (nodes may still present them); never edited.
    **{(actor, Target.OLD_SERVER_CERTIFICATE): frozenset({Verb.DELETE, Verb.PURGE}) for actor in _ADMINS},
    (Actor.OPERATOR, Target.OPERATOR): ALL_VERBS,
    (Actor.OPERATOR, Target.USER): _MANAGE,
    (Actor.USER, Target.USER): _RENEW,
}


def allowed(actor: Actor, verb: Verb, target: Target) -> bool:
    return verb in RULES.get((actor, target), frozenset())


def actor_of(caller: Identity) -> Actor:
    if caller.synthetic_name == WELL_KNOWN_NAME and caller.status.authenticated:
        return Actor.WELL_KNOWN_ADMIN
    return {
        Clearance.CLUSTER_ADMIN: Actor.CLUSTER_ADMIN,
        Clearance.CLUSTER_NODE: Actor.CLUSTER_NODE,
        Clearance.OPERATOR: Actor.OPERATOR,
        Clearance.VALID_USER: Actor.USER,
    }.get(caller.effective_clearance, Actor.NOBODY)  # type: ignore[arg-type]


def target_of_clearance(clearance: Clearance) -> Target:
    return {
        Clearance.CLUSTER_ADMIN: Target.CLUSTER_ADMIN,
        Clearance.CLUSTER_NODE: Target.CLUSTER_NODE,
        Clearance.OPERATOR: Target.OPERATOR,
    }.get(clearance, Target.USER)


def target_of(thumbprint: str, clearance: Clearance, *, source: str = "", well_known: Iterable[str] = (),
              server_thumbprints: Iterable[str] = ()) -> Target:
    """The target a registered (or offered) certificate is: the setting and the server come before clearance.

    ``server_thumbprints``: the certificates the server trusts as itself whatever the registry says (the one it
    presents, and earlier ones kept in its certificates directory).
    """
    if thumbprint in set(well_known):
        return Target.WELL_KNOWN_ADMIN
    if thumbprint in set(server_thumbprints):
        return Target.SERVER_CERTIFICATE
    if source == "server":
        return Target.OLD_SERVER_CERTIFICATE
    return target_of_clearance(clearance)


def _label(caller: Identity) -> str:
    return caller.clearance.value if caller.clearance else caller.status.value


def ensure(caller: Identity, verb: Verb, target: Target, *, name: str, thumbprint: str = "",
           clearance: Clearance | None = None, raising: bool = False, together_with: str = "") -> None:
    """Refuse (403, RavenDB's messages where RavenDB has one) unless the table lets the caller do it.

    ``raising``: the edit gives the certificate this new clearance. ``together_with``: the certificate the
    caller named, when ``name`` is another certificate the operation also applies to (collection, same key).
    """
    if allowed(actor_of(caller), verb, target):
        return
    shown = (clearance or Clearance.CLUSTER_NODE).value
    if together_with:
        protected = " and is a server certificate." if target in (
            Target.SERVER_CERTIFICATE, Target.OLD_SERVER_CERTIFICATE) else (
            " while the current client certificate being used has a lower clearance: " + _label(caller))
        raise ForbiddenOperationError(
            f"Cannot change the certificate '{together_with}' together with its same-key certificate '{name}' "
            f"({thumbprint}): it has '{shown}' security clearance{protected}"
        )
    if verb is Verb.RENEW:
        raise ForbiddenOperationError(_renew_refusal(target, name, thumbprint))
    if not any(allowed(actor, verb, target) for actor in Actor):  # nobody may: say why, not "lower clearance"
        if target is Target.WELL_KNOWN_ADMIN:
            word = "register" if verb in (Verb.CREATE, Verb.UPLOAD) else verb.value
            raise ForbiddenOperationError(
                f"Cannot {word} the well-known admin certificate {thumbprint}: it is configured by the server's "
                "Security.WellKnownCertificates.Admin setting, not through the API."
            )
        if verb in (Verb.CREATE, Verb.UPLOAD):
            raise ForbiddenOperationError(
                f"Cannot register the server certificate {thumbprint} through this API: it is this server's own "
                "(current or earlier) certificate."
            )
        raise ForbiddenOperationError(
            f"Cannot {verb.value} the server certificate {thumbprint} through this API. Use replace-cluster-cert "
            "or refresh."
        )
    lower = f"the current client certificate being used has a lower clearance: {_label(caller)}"
    if verb is Verb.CREATE:
        label = "Cluster Admin" if clearance is Clearance.CLUSTER_ADMIN else shown
        message = f"Cannot generate the client certificate '{name}' with '{label}' security clearance because {lower}"
    elif verb is Verb.UPLOAD:
        message = f"Cannot save the certificate '{name}' with '{shown}' security clearance because {lower}"
    elif raising:
        message = (f"Cannot edit security clearance to '{shown}' for certificate '{name}'. Only a 'Cluster Admin' "
                   f"can do that and your current client certificate has a lower clearance: {_label(caller)}")
    elif verb in (Verb.EDIT, Verb.DISABLE):
        message = f"Cannot edit the certificate '{name}'. It has '{shown}' security clearance while {lower}"
    else:
        message = f"Cannot {verb.value} the certificate '{name}' with '{shown}' security clearance because {lower}"
    raise ForbiddenOperationError(message)


def _renew_refusal(target: Target, name: str, thumbprint: str) -> str:
    if target is Target.WELL_KNOWN_ADMIN:
        return (f"Cannot renew the well-known admin certificate {thumbprint}: it is configured by the server's "
                "Security.WellKnownCertificates.Admin setting; replace it there.")
    if target in (Target.SERVER_CERTIFICATE, Target.OLD_SERVER_CERTIFICATE, Target.CLUSTER_NODE):
        return (f"Cannot renew the server certificate '{name}' ({thumbprint}) through /certificates/renew. Use "
                "replace-cluster-cert or refresh (roost server-cert renew).")
    return f"Cannot renew the certificate '{name}': a certificate renews only itself."


def ensure_not_own(caller: Identity, verb: Verb, name: str, thumbprints: Iterable[str]) -> None:
    """Nobody deletes or disables the certificate they are connected with (it would lock them out mid-request)."""
    if caller.thumbprint is not None and caller.thumbprint in set(thumbprints):
        raise ForbiddenOperationError(
            f"Cannot {verb.value} {name} because it's the current client certificate being used"
        )


def ensure_primary(name: str, thumbprint: str, primary: str) -> None:
    """A collection is deleted as a whole, through its primary (RavenDB's rule)."""
    if primary != thumbprint:
        raise ForbiddenOperationError(
            f"Cannot delete {name} (Thumbprint: {thumbprint}) because it is a secondary member of a certificate "
            f"collection. You need to delete the primary certificate of the collection: {primary}"
        )


def markdown_table() -> str:
    """The table for docs/certificates.md: one row per caller, one column per target, the allowed verbs."""
    header = "| Caller \\ certificate | " + " | ".join(t.value for t in Target) + " |"
    lines = [header, "|" + "---|" * (len(Target) + 1)]
    for actor in Actor:
        cells = []
        for target in Target:
            verbs = [v.value for v in Verb if allowed(actor, v, target)]
            if len(verbs) == len(Verb):
                cells.append("all")
            elif set(verbs) == set(_MANAGE):
                cells.append("all but renew")
            else:
                cells.append(", ".join(verbs) or "-")
        lines.append(f"| {actor.value} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
