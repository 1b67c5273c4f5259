"""Figure 6's set-up: 100,000 certificates issued by the server's own CA, written straight into its storage.

Generation runs in a process pool (EC P-256 keys, about 0.25 ms each in one process); the definitions go
into storage through Roost's own ``CertificateDefinition`` and ``Storage.put_certificates`` so the server
loads exactly what it would have written itself. This runs while the server is stopped.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CA: tuple[Any, Any] | None = None


def _init(ca_cert_pem: bytes, ca_key_pem: bytes) -> None:
    global _CA
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))  # generation uses every core
    _CA = (
        x509.load_pem_x509_certificate(ca_cert_pem),
        serialization.load_pem_private_key(ca_key_pem, None),
    )


def _wire_date(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _chunk(args: tuple[int, int, str]) -> list[dict[str, Any]]:
    start, count, prefix = args
    assert _CA is not None
    ca_cert, ca_key = _CA
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    not_before, not_after = now - dt.timedelta(days=7), now + dt.timedelta(days=5 * 365)
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])
    basic = x509.BasicConstraints(ca=False, path_length=None)
    out = []
    for i in range(start, start + count):
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"{prefix}-{i:06d}"
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(basic, critical=True)
            .add_extension(eku, critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        der = cert.public_bytes(serialization.Encoding.DER)
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        out.append({
            "Name": name,
            "Thumbprint": hashlib.sha1(der).hexdigest().upper(),
            "SecurityClearance": "ValidUser",
            "Permissions": {"bench": "Read"},
            "NotBefore": _wire_date(not_before),
            "NotAfter": _wire_date(not_after),
            "PublicKeyPinningHash": base64.b64encode(hashlib.sha256(spki).digest()).decode(),
            "Certificate": base64.b64encode(der).decode(),
            "Subject": f"CN={name}",
            "CollectionPrimaryKey": "",
            "CollectionSecondaryKeys": [],
            "Disabled": False,
            "TwoFactorAuthenticationKey": None,
            "Source": "generated",
        })
    return out


def cached_definitions(count: int, ca_cert_pem: bytes, ca_key_pem: bytes, prefix: str, cache_dir: Path
                       ) -> tuple[list[dict[str, Any]], bool]:
    """``generate_definitions``, kept in ``cache_dir`` (bench/.work) for the next run: (definitions, from cache).

    The registered certificates only need to be distinct, parseable certificates: nothing checks their issuer
    (generated entries are not TLS anchors) and nobody connects with them, so a set made by an earlier run's CA
    serves as well and saves minutes on a busy machine.
    """
    path = cache_dir / f"bulk-registry-{count}.pickle"
    if path.exists():
        with path.open("rb") as f:
            return pickle.load(f), True
    definitions = generate_definitions(count, ca_cert_pem, ca_key_pem, prefix)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as f:
        pickle.dump(definitions, f, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(path)
    return definitions, False


def generate_definitions(
    count: int, ca_cert_pem: bytes, ca_key_pem: bytes, prefix: str = "bulk"
) -> list[dict[str, Any]]:
    chunk = 2000
    jobs = [(s, min(chunk, count - s), prefix) for s in range(0, count, chunk)]
    with ProcessPoolExecutor(max_workers=os.cpu_count() or 2, initializer=_init,
                             initargs=(ca_cert_pem, ca_key_pem)) as pool:
        return [d for part in pool.map(_chunk, jobs) for d in part]


def register(data_dir: Path, definitions: list[dict[str, Any]]) -> None:
    """Write the definitions through Roost's storage, after checking Roost itself reads them back the same."""
    from roost.security.registry import CertificateDefinition
    from roost.storage import open_storage

    # Round-trip one through Roost's own type: a change in the storage format fails here, not in the server.
    sample = CertificateDefinition.from_storage(definitions[0]).to_storage()
    assert sample["Thumbprint"] == definitions[0]["Thumbprint"], sample

    async def write() -> None:
        storage = await open_storage(None, data_dir)
        try:
            for s in range(0, len(definitions), 10000):
                await storage.put_certificates(definitions[s : s + 10000])
        finally:
            await storage.close()

    asyncio.run(write())
