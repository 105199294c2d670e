"""CertificateSigningRequest objects as the API returns them, with real signed requests."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def csr(name: str, user: str, sans: list[Any], **fields: Any) -> dict[str, Any]:
    """A kubelet-serving request by `user` for `sans`; `cn`, `spec` and `top` override parts."""
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, fields.get("cn", user))]))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .sign(key, hashes.SHA256())
    )
    pem = request.public_bytes(serialization.Encoding.PEM)
    spec = {
        "signerName": "kubernetes.io/kubelet-serving",
        "username": user,
        "request": base64.b64encode(pem).decode(),
    }
    return {
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name},
        "spec": {**spec, **fields.get("spec", {})},
        **fields.get("top", {}),
    }


def own_sans(node: str, ip: str) -> list[Any]:
    """What a kubelet asks for: its own name and its node IP."""
    return [x509.DNSName(node), x509.IPAddress(ipaddress.ip_address(ip))]


def ip_san(ip: str) -> Any:
    return x509.IPAddress(ipaddress.ip_address(ip))
