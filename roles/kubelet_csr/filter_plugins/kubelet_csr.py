"""Which kubelet serving-certificate requests may be approved: only a node asking for itself."""

from __future__ import annotations

import base64
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

SIGNER = "kubernetes.io/kubelet-serving"
PREFIX = "system:node:"


def _acceptable(csr: dict[str, Any], node_ips: dict[str, str]) -> bool:
    spec = csr.get("spec", {})
    if spec.get("signerName") != SIGNER or csr.get("status", {}).get("conditions"):
        return False
    username = spec.get("username", "")
    node = username.removeprefix(PREFIX)
    if not username.startswith(PREFIX) or node not in node_ips:
        return False
    try:
        request = x509.load_pem_x509_csr(base64.b64decode(spec["request"]))
        sans = request.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (KeyError, ValueError, x509.ExtensionNotFound):
        return False
    if not request.is_signature_valid:
        return False
    if request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value != username:
        return False
    names = set(sans.get_values_for_type(x509.DNSName))
    ips = set(sans.get_values_for_type(x509.IPAddress))
    others = len(sans) - len(names) - len(ips)
    allowed_ip = {ipaddress.ip_address(node_ips[node])}
    return bool(names or ips) and others == 0 and names <= {node} and ips <= allowed_ip


def kubelet_csrs_to_approve(csrs: list[dict[str, Any]], node_ips: dict[str, str]) -> list[str]:
    """Names of the pending kubelet-serving requests that a known node made for its own name and
    k8s_node_ip and nothing else."""
    return [c["metadata"]["name"] for c in csrs if _acceptable(c, node_ips)]


def kubelet_csr_requesters(csrs: list[dict[str, Any]]) -> list[str]:
    """Nodes that have asked for a serving certificate, whatever became of the request."""
    return sorted(
        {
            c["spec"]["username"].removeprefix(PREFIX)
            for c in csrs
            if c.get("spec", {}).get("signerName") == SIGNER
            and c["spec"].get("username", "").startswith(PREFIX)
        }
    )


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "kubelet_csrs_to_approve": kubelet_csrs_to_approve,
            "kubelet_csr_requesters": kubelet_csr_requesters,
        }
