"""Settings: one frozen object, read from ``<data-dir>/roost.toml``, ``ROOST_*`` variables and flags (in rising
priority), validated before the port opens.

Every key has one canonical spelling (the field name) and is also accepted in RavenDB's spelling where RavenDB
has one (``--Security.Certificate.Path=...``), so tooling written to start a RavenDB server can start Roost.
Keys are matched ignoring case, dots, dashes and underscores.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from roost.errors import ConfigurationError
from roost.types import Clearance

DEFAULT_DATA_DIR = Path("roost-data")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8443
EVENT_LOOPS = ("asyncio", "uvloop")


@dataclass(frozen=True)
class Settings:
    data_dir: Path = DEFAULT_DATA_DIR
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    scheme: str = "https"
    public_url: str | None = None  # the URL clients use; printed, and reported by /topology
    certificate_path: Path | None = None  # a user-supplied server .pfx instead of the generated one
    certificate_password: str | None = field(default=None, repr=False)
    # Security.Certificate.Load.Exec (RavenDB's): a command whose standard output is the server .pfx, run at start
    # and every certificate_exec_refresh_seconds; and how often a certificate_path file or directory is looked at.
    certificate_exec: str | None = None
    certificate_exec_arguments: str = ""
    certificate_exec_refresh_seconds: float = 3600.0
    certificate_watch_seconds: float = 10.0
    well_known_admins: tuple[str, ...] = ()  # thumbprints, or paths of certificate files
    well_known_issuer_hashes: tuple[str, ...] = ()
    trusted_issuers: tuple[Path, ...] = ()
    # A directory holding ca.crt and ca.key, shared by the nodes of a cluster (default: <data-dir>/certificates).
    ca_dir: Path | None = None
    run_in_memory: bool = False
    storage_url: str | None = None
    # This node's tag in a cluster (RavenDB's node tags: A, B, C...): names its audit chain and its audit events.
    max_body_bytes: int = 32 * 1024 * 1024
    initial_client_clearance: Clearance = Clearance.CLUSTER_ADMIN
    allowed_ips: tuple[str, ...] = ()
    cors_allowed_origins: tuple[str, ...] = ()
    two_factor_default_minutes: int = 120
    two_factor_max_minutes: int = 24 * 60
    # Slow clients (slowloris): seconds to receive a request's head once it has begun, to receive its body, and
    # that an idle keep-alive connection stays open (also the time a new connection has to begin its first request).
    http_header_timeout_seconds: float = 10.0
    http_body_timeout_seconds: float = 60.0
    http_keepalive_timeout_seconds: float = 75.0
    # Tests only: shifts the server's clock (clock.set_offset) by this many seconds, so that session expiry and lockout
    # ends are tested against a real server process without waiting. The server warns at start-up when it is set.
    test_clock_offset_seconds: int = 0
    # Roost renews its generated server certificate this many days before expiry; GET /admin/notifications lists
    # certificates expiring within the second (issue 18).
    server_certificate_renew_days: int = 30
    certificate_expiry_notice_days: int = 30
    # A client certificate renewed through POST /certificates/renew is retired (deleted) once it has not been used
    # for this many days since its successor was issued; 0 keeps it until it expires.
    renewed_certificate_retire_days: int = 7
    # Webhooks (roost.webhooks): certificate events and expiry notices POSTed here, signed with the secret.
    webhook_url: str | None = None
    webhook_secret: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    # Server.EventLoop: asyncio (the standard library's) or uvloop (libuv; faster TLS transport, see
    # docs/performance.md). Both keep every TLS and allowlist guarantee (roost.security.allowlist, AcceptGate).
    event_loop: str = "asyncio"
    # TLS at a proxy (roost.security.proxy, docs/deployment.md): a Unix socket for a local proxy that terminates TLS,
    # its file mode, the header it forwards the client certificate in, and the certificates of remote proxies.
    trusted_proxy_socket: Path | None = None
    trusted_proxy_socket_mode: int = 0o600
    trusted_proxy_header: str = "X-SSL-Client-Cert"
    trusted_proxy_thumbprints: tuple[str, ...] = ()
    # This node's tag in a cluster (roost.cluster.nodes; NodeTag): 1-4 capital letters or digits, starting with a
    # letter; default the tag this data directory had before, else the first free letter. Every audit entry names it.
    node_tag: str | None = None

    @property
    def secured(self) -> bool:
        return self.scheme == "https"

    @property
    def certificates_dir(self) -> Path:
        return self.data_dir / "certificates"

    def url_for_port(self, port: int) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host
        if host in ("0.0.0.0", "::", "") or (self.secured and host in ("127.0.0.1", "::1")):
            host = "localhost"  # the name the generated server certificate and browsers agree on
        if ":" in host:
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{port}"


# RavenDB's configuration keys (and a few of Roost's own) mapped to fields. Canonical form: see _canonical.
_ALIASES: dict[str, str] = {
    "serverurl": "server_url",
    "publicserverurl": "public_url",
    "securitycertificatepath": "certificate_path",
    "securitycertificatepassword": "certificate_password",
    "securitycertificateloadexec": "certificate_exec",
    "securitycertificateloadexecarguments": "certificate_exec_arguments",
    "securitycertificateloadexecrefreshseconds": "certificate_exec_refresh_seconds",
    "securitycertificatewatchseconds": "certificate_watch_seconds",
    "securitywellknowncertificatesadmin": "well_known_admins",
    "securitywellknownissuerhashesadmin": "well_known_issuer_hashes",
    "securitytrustedissuers": "trusted_issuers",
    "securitycapath": "ca_dir",
    "securitycertificaterenewbeforedays": "server_certificate_renew_days",
    "securitycertificateexpirynoticedays": "certificate_expiry_notice_days",
    "securitycertificaterenewalretireunuseddays": "renewed_certificate_retire_days",
    "securityallowedips": "allowed_ips",
    "securitycorsallowedorigins": "cors_allowed_origins",
    "securitytwofactordefaultsessiondurationinmin": "two_factor_default_minutes",
    "securitytwofactormaxsessiondurationinmin": "two_factor_max_minutes",
    "initialclientcertificateclearance": "initial_client_clearance",
    "datadir": "data_dir",
    "runinmemory": "run_in_memory",
    "storageurl": "storage_url",
    "httpmaxbodysize": "max_body_bytes",
    "logslevel": "log_level",
    "servereventloop": "event_loop",
    "notificationswebhookurl": "webhook_url",
    "notificationswebhooksecret": "webhook_secret",
    "securitytrustedproxysocket": "trusted_proxy_socket",
    "securitytrustedproxysocketmode": "trusted_proxy_socket_mode",
    "securitytrustedproxyheader": "trusted_proxy_header",
    "securitytrustedproxythumbprints": "trusted_proxy_thumbprints",
}
_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
for _name in _FIELDS:
    _ALIASES.setdefault(_name.replace("_", ""), _name)

# RavenDB start flags that mean nothing to Roost: accepted, and reported in one warning line.
IGNORED_RAVENDB_KEYS = {
    "setupmode", "licenseeulaaccepted", "serverurltcp", "publicserverurltcp", "featuresavailability",
    "securityunsecuredaccessallowed", "logsmode", "logspath", "indexingrunninmemory", "runinmemoryoverride",
    "throwifanyindexcannotbeopened", "licensedisableautoupdate", "licensedisableautoupdatefromapi",
    "licensedisableleasing", "licensecanactivate", "licensecanforceupdate", "licensecanrenew",
    "securitydisablehttpsredirection", "coreservertrustedcertificatespath", "serverdisabletcpcompression",
    "licensedisablelicensesupportcheck", "licenseskipleasingerrorslogging", "license", "licensepath",
    "securitycertificateexec", "databasesmaxidletimeinsec", "clustermaxchangevectordistance",
}


def _canonical(key: str) -> str:
    return "".join(ch for ch in key.casefold() if ch.isalnum())


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        full = f"{prefix}.{key}" if prefix else key
        if isinstance(value, Mapping):
            out.update(_flatten(value, full))
        else:
            out[full] = value
    return out


@dataclass
class RawSettings:
    """Key/value pairs from every source before validation, with where each came from (for error messages)."""

    values: dict[str, tuple[Any, str]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)

    def set(self, key: str, value: Any, source: str, *, strict: bool) -> None:
        canonical = _canonical(key)
        name = _ALIASES.get(canonical)
        if name is None:
            if canonical in IGNORED_RAVENDB_KEYS or not strict:
                self.ignored.append(key)
                return
            raise ConfigurationError(f"Unknown setting '{key}' in {source}. See docs/configuration.md for the keys.")
        self.values[name] = (value, source)


def parse_flag_args(args: list[str]) -> list[tuple[str, str]]:
    """RavenDB-style ``--Key=Value`` (also ``--Key Value``) arguments."""
    pairs: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("-"):
            raise ConfigurationError(f"Unexpected argument '{arg}'. Settings are written --Key=Value.")
        body = arg.lstrip("-")
        if "=" in body:
            key, value = body.split("=", 1)
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            key, value = body, args[i + 1]
            i += 1
        else:
            key, value = body, "true"
        pairs.append((key, value))
        i += 1
    return pairs


def load_settings(
    flags: Mapping[str, Any] | None = None,
    extra_args: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Settings, list[str]]:
    """Build and validate the settings. Returns them with the list of ignored RavenDB keys (to warn about)."""
    environ = os.environ if environ is None else environ
    raw = RawSettings()
    cli = RawSettings()
    for key, value in (flags or {}).items():
        if value is not None:
            cli.set(key, value, f"--{key.replace('_', '-')}", strict=True)
    for key, value in parse_flag_args(extra_args or []):
        cli.set(key, value, f"--{key}", strict=False)
    env = RawSettings()
    for key, value in environ.items():
        if key.startswith("ROOST_"):
            env.set(key[6:], value, f"environment variable {key}", strict=True)

    data_dir_value = (cli.values.get("data_dir") or env.values.get("data_dir") or (DEFAULT_DATA_DIR, "default"))[0]
    run_in_memory = _bool(
        (cli.values.get("run_in_memory") or env.values.get("run_in_memory") or (False, ""))[0], "RunInMemory"
    )
    toml_path = Path(str(data_dir_value)) / "roost.toml"
    if not run_in_memory and toml_path.is_file():
        try:
            table = tomllib.loads(toml_path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{toml_path} is not valid TOML: {exc}") from exc
        for key, value in _flatten(table).items():
            raw.set(key, value, str(toml_path), strict=True)
    raw.values.update(env.values)
    raw.values.update(cli.values)
    ignored = raw.ignored + env.ignored + cli.ignored
    return _build(raw.values), ignored


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{key} must be true or false, not '{value}'.")


def _list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(v.strip() for v in str(value).replace(";", ",").split(",") if v.strip())


def _int(value: Any, key: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a whole number, not '{value}'.") from None
    if not low <= number <= high:
        raise ConfigurationError(f"{key} must be between {low} and {high}, not {number}.")
    return number


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]`` as a browser serializes an origin (lower case, default port left out), or None."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.casefold()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == {"http": 80, "https": 443}[scheme]:
        return f"{scheme}://{host}"
    return f"{scheme}://{host}:{port}"


def _seconds(value: Any, key: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(f"{key} must be a number of seconds, not '{value}'.") from None
    if not low <= number <= high:  # also refuses NaN
        raise ConfigurationError(f"{key} must be between {low:g} and {high:g} seconds, not {value}.")
    return number


def _origins(value: Any, source: str) -> tuple[str, ...]:
    """Security.Cors.AllowedOrigins: exact origins only. '*' would hand every web site the user's certificate."""
    result: list[str] = []
    for entry in _list(value):
        origin = origin_of(entry)
        if entry == "*" or origin is None or urlsplit(entry).path not in ("", "/") or "@" in entry:
            raise ConfigurationError(
                f"cors_allowed_origins ({source}): '{entry}' is not an origin. List exact origins such as "
                "https://app.example.com:8080; '*' is not allowed because browsers send the client certificate."
            )
        result.append(origin)
    return tuple(result)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _build(values: dict[str, tuple[Any, str]]) -> Settings:
    kwargs: dict[str, Any] = {}

    def get(name: str) -> tuple[Any, str] | None:
        return values.get(name)

    if (v := get("server_url")) is not None:
        url = urlsplit(str(v[0]))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(f"ServerUrl '{v[0]}' ({v[1]}) must look like https://host:port.")
        kwargs["scheme"] = url.scheme
        kwargs["host"] = url.hostname
        try:
            kwargs["port"] = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
        except ValueError:
            raise ConfigurationError(f"ServerUrl '{v[0]}' ({v[1]}) has an invalid port.") from None
    if (v := get("host")) is not None:
        kwargs["host"] = str(v[0])
    if (v := get("port")) is not None:
        kwargs["port"] = _int(v[0], f"port ({v[1]})", 0, 65535)
    if (v := get("scheme")) is not None:
        kwargs["scheme"] = str(v[0])
    if (v := get("public_url")) is not None:
        kwargs["public_url"] = str(v[0])
    if (v := get("data_dir")) is not None:
        kwargs["data_dir"] = Path(str(v[0])).expanduser()
    if (v := get("run_in_memory")) is not None:
        kwargs["run_in_memory"] = _bool(v[0], "RunInMemory")
    if (v := get("certificate_path")) is not None and str(v[0]):
        path = Path(str(v[0])).expanduser()
        pem_pair = path.is_dir() and (path / "tls.crt").is_file() and (path / "tls.key").is_file()
        if not (path.is_file() or pem_pair):
            raise ConfigurationError(
                f"Security.Certificate.Path '{path}' ({v[1]}) does not exist or is not a file (a .pfx), nor a "
                "directory holding tls.crt and tls.key (PEM, as a Kubernetes TLS secret is mounted)."
            )
        kwargs["certificate_path"] = path.absolute()  # not resolved: a secret's ..data symlink is swapped on update
    if (v := get("certificate_exec")) is not None and str(v[0]).strip():
        if kwargs.get("certificate_path") is not None:
            raise ConfigurationError("Security.Certificate.Path and Security.Certificate.Load.Exec are two sources of "
                                     "the server certificate: set one.")
        kwargs["certificate_exec"] = str(v[0]).strip()
    if (v := get("certificate_exec_arguments")) is not None:
        kwargs["certificate_exec_arguments"] = str(v[0])
    for name, low in (("certificate_exec_refresh_seconds", 1.0), ("certificate_watch_seconds", 0.1)):
        if (v := get(name)) is not None:
            kwargs[name] = _seconds(v[0], f"{name} ({v[1]})", low, 7 * 24 * 3600)
    if (v := get("certificate_password")) is not None:
        kwargs["certificate_password"] = str(v[0]) or None
    for name in ("well_known_admins", "well_known_issuer_hashes", "allowed_ips"):
        if (v := get(name)) is not None:
            kwargs[name] = _list(v[0])
    if (v := get("cors_allowed_origins")) is not None:
        kwargs["cors_allowed_origins"] = _origins(v[0], v[1])
    if (v := get("trusted_issuers")) is not None:
        paths = tuple(Path(p).expanduser() for p in _list(v[0]))
        for path in paths:
            if not path.is_file():
                raise ConfigurationError(f"Security.TrustedIssuers: '{path}' ({v[1]}) does not exist.")
        kwargs["trusted_issuers"] = paths
    for admin in kwargs.get("well_known_admins", ()):
        # A thumbprint is SHA-1: exactly 40 hex digits. A shorter one (a typo, a cut-off paste) would never match.
        is_thumbprint = len(admin) == 40 and all(c in "0123456789abcdefABCDEF" for c in admin)
        if not is_thumbprint and not Path(admin).is_file():
            raise ConfigurationError(
                f"Security.WellKnownCertificates.Admin: '{admin}' is neither a thumbprint nor an existing file "
                "(a thumbprint is 40 hexadecimal digits)."
            )
    if (v := get("ca_dir")) is not None and str(v[0]):
        path = Path(str(v[0])).expanduser()
        if path.exists() and not path.is_dir():
            raise ConfigurationError(f"Security.Ca.Path '{path}' ({v[1]}) must be a directory with ca.crt and ca.key.")
        if (path / "ca.crt").exists() != (path / "ca.key").exists():
            raise ConfigurationError(
                f"Security.Ca.Path '{path}' ({v[1]}) must hold both ca.crt and ca.key, or neither (to create them)."
            )
        kwargs["ca_dir"] = path.resolve()
    if (v := get("node_tag")) is not None and str(v[0]).strip():
        tag = str(v[0]).strip().upper()
        if not re.fullmatch(r"[A-Z][A-Z0-9]{0,3}", tag):
            raise ConfigurationError(f"NodeTag '{v[0]}' ({v[1]}) must be 1 to 4 letters or digits, starting with a "
                                     "letter (A, B, C, ...).")
        kwargs["node_tag"] = tag
    if (v := get("storage_url")) is not None:
        kwargs["storage_url"] = str(v[0]) or None
    if (v := get("max_body_bytes")) is not None:
        kwargs["max_body_bytes"] = _int(v[0], f"max_body_bytes ({v[1]})", 1024, 1 << 34)
    if (v := get("initial_client_clearance")) is not None:
        try:
            clearance = Clearance(str(v[0]))
        except ValueError:
            clearance = None
        if clearance not in (Clearance.CLUSTER_ADMIN, Clearance.OPERATOR):
            raise ConfigurationError(
                f"InitialClientCertificate.Clearance ({v[1]}) must be ClusterAdmin or Operator, not '{v[0]}'."
            )
        kwargs["initial_client_clearance"] = clearance
    if (v := get("two_factor_default_minutes")) is not None:
        kwargs["two_factor_default_minutes"] = _int(v[0], "two_factor_default_minutes", 1, 60 * 24 * 30)
    if (v := get("two_factor_max_minutes")) is not None:
        kwargs["two_factor_max_minutes"] = _int(v[0], "two_factor_max_minutes", 1, 60 * 24 * 30)
    for name in ("http_header_timeout_seconds", "http_body_timeout_seconds", "http_keepalive_timeout_seconds"):
        if (v := get(name)) is not None:
            kwargs[name] = _seconds(v[0], f"{name} ({v[1]})", 0.1, 24 * 3600)
    if (v := get("test_clock_offset_seconds")) is not None:
        kwargs["test_clock_offset_seconds"] = _int(v[0], "test_clock_offset_seconds", -(1 << 31), 1 << 31)
    for name in ("server_certificate_renew_days", "certificate_expiry_notice_days"):
        if (v := get(name)) is not None:
            kwargs[name] = _int(v[0], f"{name} ({v[1]})", 1, 365)
    if (v := get("renewed_certificate_retire_days")) is not None:
        kwargs["renewed_certificate_retire_days"] = _int(v[0], f"renewed_certificate_retire_days ({v[1]})", 0, 3650)
    if (v := get("log_level")) is not None:
        kwargs["log_level"] = str(v[0]).upper()
    if (v := get("event_loop")) is not None:
        if str(v[0]).lower() not in EVENT_LOOPS:
            raise ConfigurationError(f"Server.EventLoop ({v[1]}) must be asyncio or uvloop, not '{v[0]}'.")
        kwargs["event_loop"] = str(v[0]).lower()
    _trusted_proxy(get, kwargs)
    _webhook(get, kwargs)
    settings = Settings(**kwargs)
    if settings.trusted_proxy_socket is not None or settings.trusted_proxy_thumbprints:
        if not settings.secured:
            raise ConfigurationError("Security.TrustedProxy needs a secured server (an https:// ServerUrl): an "
                                     "unsecured one has no certificates to forward.")
    if settings.scheme not in ("http", "https"):
        raise ConfigurationError(f"scheme must be http or https, not '{settings.scheme}'.")
    if not settings.secured and not _is_loopback(settings.host):
        raise ConfigurationError(
            f"Refusing to serve unsecured HTTP on '{settings.host}': without TLS every caller is ClusterAdmin. "
            "Use an https:// ServerUrl, or bind to a loopback address (127.0.0.1)."
        )
    if settings.two_factor_default_minutes > settings.two_factor_max_minutes:
        raise ConfigurationError("The default 2FA session duration is longer than the maximum.")
    if settings.data_dir.exists() and not settings.data_dir.is_dir():
        raise ConfigurationError(f"Data directory '{settings.data_dir}' exists and is not a directory.")
    return settings


def _trusted_proxy(get: Any, kwargs: dict[str, Any]) -> None:
    if (v := get("trusted_proxy_socket")) is not None and str(v[0]):
        path = Path(str(v[0])).expanduser()
        if not path.parent.is_dir():
            raise ConfigurationError(f"Security.TrustedProxy.Socket ({v[1]}): the directory '{path.parent}' does not "
                                     "exist.")
        kwargs["trusted_proxy_socket"] = path.absolute()
    if (v := get("trusted_proxy_socket_mode")) is not None:
        text = str(v[0]).strip().removeprefix("0o")  # the digits as written, 660 in TOML too
        try:
            mode = int(text, 8)
        except ValueError:
            mode = -1
        if not 0o600 <= mode <= 0o777 or mode & 0o600 != 0o600 or mode & 0o007:
            raise ConfigurationError(
                f"Security.TrustedProxy.SocketMode ({v[1]}) must be an octal file mode such as 600 or 660 that lets "
                f"Roost read and write and gives others nothing, not '{v[0]}': whoever may connect to the socket may "
                "speak as any certificate.")
        kwargs["trusted_proxy_socket_mode"] = mode
    if (v := get("trusted_proxy_header")) is not None:
        name = str(v[0]).strip()
        if not name or not all(ch.isalnum() or ch == "-" for ch in name):
            raise ConfigurationError(f"Security.TrustedProxy.Header ({v[1]}) must be a header name, not '{v[0]}'.")
        kwargs["trusted_proxy_header"] = name
    if (v := get("trusted_proxy_thumbprints")) is not None:
        thumbprints = _list(v[0])
        for thumbprint in thumbprints:
            if len(thumbprint) != 40 or any(c not in "0123456789abcdefABCDEF" for c in thumbprint):
                raise ConfigurationError(f"Security.TrustedProxy.Thumbprints ({v[1]}): '{thumbprint}' is not a "
                                         "thumbprint (40 hexadecimal digits).")
        kwargs["trusted_proxy_thumbprints"] = tuple(t.upper() for t in thumbprints)


def _webhook(get: Any, kwargs: dict[str, Any]) -> None:
    url_value, secret_value = get("webhook_url"), get("webhook_secret")
    if url_value is None or not str(url_value[0]).strip():
        if secret_value is not None and str(secret_value[0]):
            raise ConfigurationError(f"Notifications.Webhook.Secret ({secret_value[1]}) is set but "
                                     "Notifications.Webhook.Url is not.")
        return
    url = str(url_value[0]).strip()
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname or (
            parts.scheme == "http" and not _is_loopback(parts.hostname)):
        raise ConfigurationError(f"Notifications.Webhook.Url ({url_value[1]}) must be an https:// URL (http:// only on "
                                 "a loopback address): the deliveries name certificates.")
    secret = str(secret_value[0]) if secret_value is not None else ""
    if len(secret) < 16:
        raise ConfigurationError("Notifications.Webhook.Secret must be set, at least 16 characters: receivers check "
                                 "each delivery's HMAC signature with it.")
    kwargs["webhook_url"] = url
    kwargs["webhook_secret"] = secret
