"""The local CA issues what the control plane and its clients need."""

from __future__ import annotations

import ipaddress
import ssl
from pathlib import Path

from cryptography import x509

from localcluster.pki import CertificateAuthority, Identity, service_account_keys, subject_of


def test_client_certificates_carry_user_and_groups(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.client("node", Identity("system:node:n1", ("system:nodes",)))
    assert subject_of(pair.cert) == Identity("system:node:n1", ("system:nodes",))
    assert oct(pair.key.stat().st_mode & 0o777) == "0o600"


def test_serving_certificates_name_their_addresses_and_verify_against_the_ca(
    tmp_path: Path,
) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("api", "kube-apiserver", hosts=["10.213.0.2", "kubernetes"], server=True)
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("10.213.0.2") in san.get_values_for_type(x509.IPAddress)
    assert "kubernetes" in san.get_values_for_type(x509.DNSName)
    context = ssl.create_default_context(cafile=str(ca.cert_path))
    context.load_cert_chain(str(pair.cert), str(pair.key))  # key matches the certificate


def test_a_second_run_reuses_the_ca(tmp_path: Path) -> None:
    first = CertificateAuthority(tmp_path).pem
    assert CertificateAuthority(tmp_path).pem == first
    keys = service_account_keys(tmp_path)
    assert service_account_keys(tmp_path).key.read_bytes() == keys.key.read_bytes()
    assert b"PUBLIC KEY" in keys.cert.read_bytes()
