"""A user-supplied server certificate that changes under a running server (issue 18, docs/certificates.md).

Three sources, each checked exactly as at start-up (its key, valid now, serverAuth) before it is installed:

- ``Security.Certificate.Path`` naming a ``.pfx`` file: re-read when the file changes (looked at every
  ``certificate_watch_seconds``, 10 s by default: its inode, size and modification time);
- the same setting naming a directory with ``tls.crt`` and ``tls.key`` (PEM, as Kubernetes mounts a TLS secret and
  cert-manager renews it by swapping the directory's ``..data`` link);
- ``Security.Certificate.Load.Exec`` (RavenDB's): a command whose standard output is the ``.pfx``, run at start
  and every ``certificate_exec_refresh_seconds`` (an hour by default).

A new certificate is installed without a restart and without dropping a connection (open connections keep the one
they negotiated), and audited as ``server-certificate.replaced``. A file that does not load, or a certificate that
fails a check, changes nothing: the server keeps the one it has and says why in its log, once per change.

Each process of ``--workers N`` follows the source on its own and writes what ``ssl`` loads into a directory of its
own (``<certificates>/reload-<pid>``), so two workers never write the same key file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shlex
import shutil
import subprocess
from pathlib import Path

from roost.errors import ConfigurationError, RoostError
from roost.pki import datadir
from roost.security.identity import AuthStatus, Identity
from roost.settings import Settings

log = logging.getLogger("roost.certificates")

EXEC_TIMEOUT_SECONDS = 60.0
FILE_SOURCE = Identity(AuthStatus.CLUSTER_ADMIN, display_name="the certificate file (Security.Certificate.Path)")
EXEC_SOURCE = Identity(AuthStatus.CLUSTER_ADMIN, display_name="Security.Certificate.Load.Exec")


def run_exec(settings: Settings) -> bytes:
    """The .pfx the Load.Exec command writes to its standard output."""
    assert settings.certificate_exec is not None
    command = [settings.certificate_exec, *shlex.split(settings.certificate_exec_arguments)]
    try:
        done = subprocess.run(command, capture_output=True, timeout=EXEC_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigurationError(f"Security.Certificate.Load.Exec '{settings.certificate_exec}' could not run: "
                                 f"{exc}.") from None
    if done.returncode != 0 or not done.stdout:
        error = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise ConfigurationError(f"Security.Certificate.Load.Exec '{settings.certificate_exec}' exited with "
                                 f"{done.returncode}: {error[0][:300]}")
    return done.stdout


def load_exec(settings: Settings, certs_dir: Path) -> datadir.ServerCertificate:
    return datadir.install_supplied_certificate(certs_dir, run_exec(settings), settings.certificate_password,
                                                f"Security.Certificate.Load.Exec '{settings.certificate_exec}'")


def _signature(path: Path) -> tuple[object, ...] | None:
    """What changes when the file (or the PEM pair's files) is replaced; None while it cannot be read."""
    files = [path / datadir.PEM_CERTIFICATE_FILE, path / datadir.PEM_KEY_FILE] if path.is_dir() else [path]
    try:
        stats = [os.stat(f) for f in files]
    except OSError:
        return None
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


class CertificateSource:
    """Follows the configured server certificate and installs each valid new one (``ServerCertificates.adopt``)."""

    def __init__(self, settings: Settings, adopt: object) -> None:
        self._settings = settings
        self._adopt = adopt  # ServerCertificates.adopt (roost.security.server_certificate)
        self._dir = settings.certificates_dir / f"reload-{os.getpid()}"
        self._task: asyncio.Task[None] | None = None

    @staticmethod
    def configured(settings: Settings) -> bool:
        return settings.certificate_path is not None or settings.certificate_exec is not None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._follow())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        shutil.rmtree(self._dir, ignore_errors=True)

    def _load(self) -> datadir.ServerCertificate:
        settings = self._settings
        self._dir.mkdir(mode=0o700, exist_ok=True)
        if settings.certificate_exec is not None:
            return load_exec(settings, self._dir)
        assert settings.certificate_path is not None
        return datadir.supplied_server_certificate(self._dir, settings.certificate_path,
                                                   settings.certificate_password)

    async def _follow(self) -> None:
        settings = self._settings
        by_exec = settings.certificate_exec is not None
        interval = settings.certificate_exec_refresh_seconds if by_exec else settings.certificate_watch_seconds
        last = None if by_exec else _signature(settings.certificate_path)  # type: ignore[arg-type]
        while True:
            await asyncio.sleep(interval)
            if not by_exec:
                seen = _signature(settings.certificate_path)  # type: ignore[arg-type]
                if seen is None or seen == last:
                    continue
                last = seen
            try:
                new = await asyncio.to_thread(self._load)
                await self._adopt(new, EXEC_SOURCE if by_exec else FILE_SOURCE)  # type: ignore[operator]
            except RoostError as exc:
                log.error("The new server certificate was not installed; the server keeps presenting the one it "
                          "has. %s", exc.message)
            except Exception:
                log.exception("The new server certificate could not be installed; the server keeps the one it has")
