"""Find X.509 certificates (PEM or DER) in files and in an image's filesystem (a tar stream).

Used by the container tier to prove that the images do not carry the build host's private
CAs (e.g. a TLS-intercepting proxy's): those are the certificates of the host's CA bundle
that are not in a distribution's public set (`/usr/share/ca-certificates`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO

_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----")
PUBLIC_CA_DIR = Path("/usr/share/ca-certificates")


def pem_certificates(data: bytes) -> list[bytes]:
    """The DER bytes of every well-formed PEM certificate in `data`."""
    found = []
    for match in _PEM.finditer(data):
        try:
            found.append(base64.b64decode(b"".join(match[1].split()), validate=True))
        except binascii.Error:
            continue
    return found


def fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER bytes, in hex."""
    return hashlib.sha256(der).hexdigest()


def directory_certificates(files: Iterable[bytes]) -> set[str]:
    """Fingerprints of the PEM certificates in `files` (their contents)."""
    return {fingerprint(der) for data in files for der in pem_certificates(data)}


def host_public_certificates(root: Path = PUBLIC_CA_DIR) -> set[str]:
    """Fingerprints of this host's distribution CA set (empty if it has none)."""
    if not root.is_dir():
        return set()
    return directory_certificates(p.read_bytes() for p in root.rglob("*.crt") if p.is_file())


def tar_certificates(stream: IO[bytes]) -> set[str]:
    """Fingerprints of the PEM certificates in the `*.crt` files of a tar stream."""
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        return directory_certificates(
            _read(tar, member) for member in tar if member.isfile() and member.name.endswith(".crt")
        )


def private_cas(bundle: bytes, public: set[str]) -> dict[str, bytes]:
    """Fingerprint → DER of the certificates in `bundle` that are not in `public`."""
    return {
        fingerprint(der): der for der in pem_certificates(bundle) if fingerprint(der) not in public
    }


def files_carrying(stream: IO[bytes], wanted: dict[str, bytes]) -> list[str]:
    """Paths in a tar stream (e.g. `docker export`) holding any of `wanted` (fingerprint →
    DER) as DER bytes or as a PEM certificate."""
    hits = []
    with tarfile.open(fileobj=stream, mode="r|") as tar:
        for member in tar:
            if not member.isfile():
                continue
            data = _read(tar, member)
            if any(der in data for der in wanted.values()) or (
                b"BEGIN CERTIFICATE" in data
                and any(fingerprint(der) in wanted for der in pem_certificates(data))
            ):
                hits.append(member.name)
    return hits


def _read(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    return handle.read() if handle is not None else b""
