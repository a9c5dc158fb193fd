"""SPIFFE IDs, the identities meshfed issues, and caller entitlements.

Why this module exists: every security decision in this package ends in "may
this caller hold this SPIFFE ID?". Parsing IDs strictly, building meshfed's
identity shapes in exactly one place, and expressing entitlement as a plain
value (an input, never looked up here) keeps that decision pure and testable.

Identity shapes (issue 3):
  workloads  spiffe://<td>/ns/<namespace>/sa/<service-account>
  gateways   spiffe://<td>/meshfed/gateway/<cluster>
  agents     spiffe://<td>/meshfed/agent/<cluster>
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from trust_bundle.errors import InvalidIdentity

SCHEME = "spiffe"
_PREFIX = "spiffe://"

# SPIFFE-ID spec §2.1 (trust domain): lowercase letters, digits, '.', '-', '_'.
_TRUST_DOMAIN_RE = re.compile(r"[a-z0-9._-]+")
# SPIFFE-ID spec §2.2 (path segments): letters, digits, '.', '-', '_'.
_SEGMENT_RE = re.compile(r"[A-Za-z0-9._-]+")
# SPIFFE-ID spec §2.3: a trust domain name is at most 255 bytes (RFC 3986 host limit).
MAX_TRUST_DOMAIN_BYTES = 255
# SPIFFE-ID spec §2.3: SPIFFE IDs are at most 2048 bytes.
MAX_SPIFFE_ID_BYTES = 2048
# The trust domain of the store's certificates (`meshfed install --store etcd`: the
# etcd peers' and the registry's client certificates, under their own store CA); no
# cluster may take it (federation.registry.trust.RESERVED_TRUST_DOMAINS).
STORE_TRUST_DOMAIN = "store.meshfed.local"


def validate_trust_domain(name: str) -> str:
    """Return ``name`` if it is a valid SPIFFE trust domain name, else raise InvalidIdentity."""
    if not name:
        raise InvalidIdentity("trust domain is empty")
    if len(name.encode()) > MAX_TRUST_DOMAIN_BYTES:
        raise InvalidIdentity(f"trust domain longer than {MAX_TRUST_DOMAIN_BYTES} bytes")
    if not _TRUST_DOMAIN_RE.fullmatch(name):
        raise InvalidIdentity(
            f"trust domain {name!r} has characters outside [a-z0-9._-] (SPIFFE-ID §2.1)"
        )
    return name


def _validate_segment(segment: str, what: str) -> str:
    if segment in ("", ".", ".."):
        raise InvalidIdentity(f"{what} {segment!r} is empty or a dot segment (SPIFFE-ID §2.2)")
    if not _SEGMENT_RE.fullmatch(segment):
        raise InvalidIdentity(
            f"{what} {segment!r} has characters outside [A-Za-z0-9._-] (SPIFFE-ID §2.2)"
        )
    return segment


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """A parsed SPIFFE ID: ``spiffe://<trust_domain><path>``; ``path`` is "" or starts with '/'."""

    trust_domain: str
    path: str

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        if self.path:
            if not self.path.startswith("/"):
                raise InvalidIdentity(f"path {self.path!r} must start with '/'")
            for segment in self.path[1:].split("/"):
                _validate_segment(segment, "path segment")
        if len(str(self).encode()) > MAX_SPIFFE_ID_BYTES:
            raise InvalidIdentity(f"SPIFFE ID longer than {MAX_SPIFFE_ID_BYTES} bytes")

    def __str__(self) -> str:
        return f"{_PREFIX}{self.trust_domain}{self.path}"

    @property
    def is_leaf_id(self) -> bool:
        """X509-SVID §3.1: leaf SVIDs must have a non-root path."""
        return bool(self.path)


def parse_spiffe_id(value: str) -> SpiffeId:
    """Parse ``value`` strictly; raise InvalidIdentity with the precise reason."""
    if not isinstance(value, str):
        raise InvalidIdentity(f"SPIFFE ID must be a string, got {type(value).__name__}")
    if not value.startswith(_PREFIX):
        raise InvalidIdentity(f"{value!r} does not start with 'spiffe://' (SPIFFE-ID §2)")
    rest = value[len(_PREFIX) :]
    if "?" in rest or "#" in rest:
        raise InvalidIdentity(f"{value!r} has a query or fragment (SPIFFE-ID §2)")
    trust_domain, slash, path = rest.partition("/")
    if ":" in trust_domain or "@" in trust_domain:
        raise InvalidIdentity(f"{value!r} has a port or userinfo (SPIFFE-ID §2.1)")
    return SpiffeId(trust_domain, slash + path if slash else "")


def trust_domain_id(trust_domain: str) -> SpiffeId:
    """The trust domain's own ID, ``spiffe://<td>`` (the name-constraint target)."""
    return SpiffeId(trust_domain, "")


def workload_id(trust_domain: str, namespace: str, service_account: str) -> SpiffeId:
    """``spiffe://<td>/ns/<ns>/sa/<sa>`` (the Istio/Linkerd workload convention)."""
    _validate_segment(namespace, "namespace")
    _validate_segment(service_account, "service account")
    return SpiffeId(trust_domain, f"/ns/{namespace}/sa/{service_account}")


def gateway_id(trust_domain: str, cluster: str) -> SpiffeId:
    """``spiffe://<td>/meshfed/gateway/<cluster>``: a cluster's east-west gateway."""
    _validate_segment(cluster, "cluster")
    return SpiffeId(trust_domain, f"/meshfed/gateway/{cluster}")


def agent_id(trust_domain: str, cluster: str) -> SpiffeId:
    """``spiffe://<td>/meshfed/agent/<cluster>``: a cluster's sync agent."""
    _validate_segment(cluster, "cluster")
    return SpiffeId(trust_domain, f"/meshfed/agent/{cluster}")


@dataclass(frozen=True, slots=True)
class Entitlement:
    """What a caller may be issued: exact IDs plus whole workload namespaces.

    The registry derives this from the caller's own authenticated identity;
    trust_bundle only applies it.
    """

    ids: frozenset[SpiffeId] = field(default_factory=frozenset)
    # (trust_domain, namespace) pairs: any spiffe://<td>/ns/<namespace>/sa/<x>.
    namespaces: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    def allows(self, spiffe_id: SpiffeId) -> bool:
        """True if ``spiffe_id`` is covered by this entitlement."""
        if spiffe_id in self.ids:
            return True
        parts = spiffe_id.path.split("/")
        # A workload path is exactly /ns/<ns>/sa/<sa>: ["", "ns", ns, "sa", sa].
        return (
            len(parts) == 5  # the five parts listed above
            and parts[1] == "ns"
            and parts[3] == "sa"
            and (spiffe_id.trust_domain, parts[2]) in self.namespaces
        )


def cluster_entitlement(
    trust_domain: str, cluster: str, namespaces: Iterable[str] = ()
) -> Entitlement:
    """The entitlement of cluster ``cluster``'s components: its gateway and agent IDs,
    plus workloads in ``namespaces`` of its trust domain."""
    return Entitlement(
        ids=frozenset({gateway_id(trust_domain, cluster), agent_id(trust_domain, cluster)}),
        namespaces=frozenset(
            (trust_domain, _validate_segment(ns, "namespace")) for ns in namespaces
        ),
    )
