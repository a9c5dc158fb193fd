"""Who may do what: API tokens, join tokens, CA material, the audit trail.

Secrets never live here in the clear: tokens are stored as SHA-256 digests of
their secret part, CA private keys as sealed (encrypted PKCS#8) blobs produced by
`trust_bundle`'s key protector. The REST API must never return `CaMaterial` or a
token digest in a list or get response.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from federation.errors import ValidationError
from federation.model import validation as v
from federation.model.base import Record, _time, _tuple_of

ROLES = ("admin", "editor", "viewer")
CA_KINDS = ("root", "intermediate")
# trust_bundle.rotation.Stage values; the record stores the string.
ROTATION_STAGES = ("stable", "propagating", "active")
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Join token id: 6-32 lowercase hex/alnum, like kubeadm's "[a-z0-9]{6}" token id.
_TOKEN_ID = re.compile(r"^[a-z0-9]{6,32}$")
_EVENT_ID = re.compile(r"^[0-9]{20}-[0-9a-f]{8}$")


def _digest(field: str, value: object) -> str:
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise ValidationError(field, "must be a SHA-256 hex digest")
    return value


@dataclass(frozen=True, slots=True)
class ApiToken(Record):
    """A bearer token for the dashboard API, with one role."""

    KIND: ClassVar[str] = "tokens"

    name: str
    role: str
    secret_sha256: str
    created: datetime
    expires: datetime | None = None

    def __post_init__(self) -> None:
        v.dns1123_label("name", self.name)
        v.choice("role", self.role, ROLES)
        _digest("secret_sha256", self.secret_sha256)
        object.__setattr__(self, "created", _time("created", self.created))
        if self.expires is not None:
            object.__setattr__(self, "expires", _time("expires", self.expires))

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class JoinToken(Record):
    """A bootstrap token: `<id>.<secret>` buys SVIDs for one cluster's agent and gateway.

    Single use (the default): the first redemption spends it (`used`). Reusable,
    like kubeadm's bootstrap tokens: any number of redemptions until `expires`,
    each counted in `uses`, so gateway replicas and restarted agents share one.
    Records stored before `reusable` and `uses` existed decode with their defaults.
    """

    KIND: ClassVar[str] = "jointokens"

    id: str
    cluster: str
    secret_sha256: str
    expires: datetime
    used: bool = False  # single-use tokens only: spent
    reusable: bool = False
    uses: int = 0  # redemptions so far (a spent single-use token has 1, or 0 if older)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _TOKEN_ID.fullmatch(self.id):
            raise ValidationError("id", f"{self.id!r} is not a token id ([a-z0-9]{{6,32}})")
        v.dns1123_label("cluster", self.cluster)
        _digest("secret_sha256", self.secret_sha256)
        object.__setattr__(self, "expires", _time("expires", self.expires))
        for fname in ("used", "reusable"):
            if not isinstance(getattr(self, fname), bool):
                raise ValidationError(fname, "must be true or false")
        if isinstance(self.uses, bool) or not isinstance(self.uses, int) or self.uses < 0:
            raise ValidationError("uses", f"must be a non-negative integer, got {self.uses!r}")
        if self.reusable and self.used:
            raise ValidationError("used", "a reusable token is never spent")
        if not self.reusable and self.uses > 1:
            raise ValidationError("uses", f"a single-use token is redeemed once, not {self.uses}")

    @property
    def key(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class CaMaterial(Record):
    """A CA certificate with its sealed private key (the root, or a cluster's intermediate)."""

    KIND: ClassVar[str] = "cas"

    name: str  # "root", "root-next", or the cluster name for intermediates
    kind: str
    cert_pem: str
    sealed_key: str  # encrypted PKCS#8 PEM from trust_bundle's KeyProtector
    not_after: datetime
    chain_pem: str = ""  # intermediates: the chain up to (not including) the root

    def __post_init__(self) -> None:
        v.dns1123_label("name", self.name)
        v.choice("kind", self.kind, CA_KINDS)
        for fname in ("cert_pem", "sealed_key"):
            if not isinstance(getattr(self, fname), str) or "-----BEGIN" not in getattr(
                self, fname
            ):
                raise ValidationError(fname, "is not PEM")
        object.__setattr__(self, "not_after", _time("not_after", self.not_after))

    @property
    def key(self) -> str:
        return self.name

    def __repr__(self) -> str:  # never print the sealed key, even encrypted
        return f"CaMaterial(name={self.name!r}, kind={self.kind!r}, not_after={self.not_after})"


@dataclass(frozen=True, slots=True)
class RootRotation(Record):
    """Where the federation root's staged rotation stands (docs/trust.md, runbook).

    The roots themselves are `CaMaterial` "root" (current) and "root-next" (next);
    this record holds the rest of `trust_bundle.rotation.RotationState`. Cluster
    membership is the cluster records; what each cluster's gateway holds is its
    `BundleReport` (federation.model.topology).
    """

    KIND: ClassVar[str] = "rotations"

    name: str  # "root": the federation has one root, so one record
    stage: str
    stage_since: datetime
    sequence: int = 1  # the state machine's bundle sequence: +1 per bundle change it made
    refresh_hint_seconds: int = 300  # fixed at prepare: propagation waits 3 x this
    # SHA-256 of every root a retire removed: `meshfed serve --root-ca` given the root
    # the federation was installed with still starts after a rotation replaced it.
    retired_roots_sha256: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        v.dns1123_label("name", self.name)
        v.choice("stage", self.stage, ROTATION_STAGES)
        object.__setattr__(self, "stage_since", _time("stage_since", self.stage_since))
        for fname in ("sequence", "refresh_hint_seconds"):
            val = getattr(self, fname)
            if isinstance(val, bool) or not isinstance(val, int) or val < 1:
                raise ValidationError(fname, f"must be a positive integer, got {val!r}")
        retired = _tuple_of("retired_roots_sha256", self.retired_roots_sha256)
        for i, fp in enumerate(retired):
            _digest(f"retired_roots_sha256[{i}]", fp)
        object.__setattr__(self, "retired_roots_sha256", retired)

    @property
    def key(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class AuditEvent(Record):
    """One entry of the audit trail: who changed what, when."""

    KIND: ClassVar[str] = "events"

    id: str  # "<20-digit unix ns>-<8 hex>": sorts by time in the store's key order
    time: datetime
    actor: str
    action: str
    target_kind: str  # the changed record's kind, e.g. "clusters"
    target: str  # the changed record's key, e.g. "east"
    detail: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not _EVENT_ID.fullmatch(self.id):
            raise ValidationError("id", f"{self.id!r} is not <20 digits>-<8 hex>")
        object.__setattr__(self, "time", _time("time", self.time))
        for fname in ("actor", "action", "target_kind", "target"):
            if not isinstance(getattr(self, fname), str) or not getattr(self, fname):
                raise ValidationError(fname, "must be a non-empty string")

    @property
    def key(self) -> str:
        return self.id
