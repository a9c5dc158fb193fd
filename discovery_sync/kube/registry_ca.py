"""The ConfigMap `meshfed-registry-ca`: the roots a new pod verifies the registry with.

Agents and gateways start with `--registry-ca /etc/meshfed/registry-ca/roots.pem`,
mounted from this ConfigMap in the install namespace. Running processes follow a
root rotation through the Watch (federation.client.rotation); a pod started later
(a restart, an HPA scale-up) reads the ConfigMap, so after a rotation's activate it
must already hold the next root, and after retire it may drop the old one. The
leading agent keeps it current: its key `roots.pem` is the roots of the agent's own
trust-domain bundle from the Watch, the same roots `registry_roots` verifies the
registry with, in the same text.

`decide` (pure) turns the Watch's bundles and the live ConfigMap into one write or
none: create when missing, update `roots.pem` only when its text differs (keeping
other keys, labels and annotations; adding `app.kubernetes.io/managed-by=meshfed`),
nothing when equal. It refuses (and the old ConfigMap stays) when the Watch carries
no bundle for the trust domain, an empty one, or one that does not parse: a pod
holding no root, or garbage, could never join. `RegistryCaWriter` is the shell: it
reads, asks `decide`, writes, and remembers what it confirmed so an unchanged view
costs no request at all.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from cryptography import x509

from discovery_sync.backoff import jittered
from discovery_sync.errors import KubeError
from discovery_sync.kube.api import CONFIG_MAPS, KubeApi
from discovery_sync.kube.sink import RESYNC_PERIOD
from federation.model import TrustDomain

log = logging.getLogger("meshfed.agent.registry_ca")

Obj = dict[str, Any]

CONFIGMAP = "meshfed-registry-ca"  # federation.install.common.REGISTRY_CA_CONFIGMAP
KEY = "roots.pem"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "meshfed"
COMPONENT_LABEL = "app.kubernetes.io/component"
COMPONENT = "registry-ca"


def roots_text(bundles: Mapping[str, TrustDomain], trust_domain: str) -> tuple[str | None, str]:
    """(`roots.pem`'s text, "") for the trust domain's bundle, or (None, why not).

    The text is `federation.client.rotation.registry_roots`': every root PEM, each
    ending in a newline, in the Watch's order.
    """
    bundle = bundles.get(trust_domain)
    if bundle is None:
        return None, f"the Watch carries no bundle for trust domain {trust_domain!r}"
    pems = [p for p in bundle.roots_pem if p.strip()]
    if not pems:
        return None, f"the bundle of {trust_domain!r} holds no root"
    for pem in pems:
        try:
            certs = x509.load_pem_x509_certificates(pem.encode())
        except ValueError as err:
            return None, f"a root of {trust_domain!r} is not a PEM certificate ({err})"
        if not certs:
            return None, f"a root of {trust_domain!r} is not a PEM certificate"
    return "".join(p if p.endswith("\n") else p + "\n" for p in pems), ""


@dataclass(frozen=True, slots=True)
class Decision:
    verb: Literal["create", "update", "unchanged", "refuse"]
    body: Obj | None = None  # the request body for create / update
    roots: str | None = None  # the roots the cluster holds once the write is done
    reason: str = ""  # why "refuse"


def desired(namespace: str, roots: str, name: str = CONFIGMAP) -> Obj:
    """A new ConfigMap holding `roots`."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {MANAGED_BY_LABEL: MANAGED_BY, COMPONENT_LABEL: COMPONENT},
        },
        "data": {KEY: roots},
    }


def decide(
    bundles: Mapping[str, TrustDomain],
    trust_domain: str,
    namespace: str,
    live: Obj | None,
    name: str = CONFIGMAP,
) -> Decision:
    """The write that makes `live` (None: missing) hold the Watch's roots, if any."""
    roots, why = roots_text(bundles, trust_domain)
    if roots is None:
        return Decision("refuse", reason=why)
    if live is None:
        return Decision("create", desired(namespace, roots, name), roots)
    meta = dict(live.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    data = dict(live.get("data") or {})
    if data.get(KEY) == roots and labels.get(MANAGED_BY_LABEL) == MANAGED_BY:
        return Decision("unchanged", roots=roots)
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    labels.setdefault(COMPONENT_LABEL, COMPONENT)
    meta["labels"] = labels
    data[KEY] = roots
    body = {k: v for k, v in live.items() if k not in ("metadata", "data")}
    body.update(apiVersion="v1", kind="ConfigMap", metadata=meta, data=data)
    return Decision("update", body, roots)  # carries live's resourceVersion: a 409 if raced


@dataclass
class WriterStats:
    creates: int = 0
    updates: int = 0
    unchanged: int = 0
    refused: int = 0
    failures: int = 0


class RegistryCaWriter:
    """Keeps `namespace/meshfed-registry-ca` holding the Watch's roots (leader only).

    One per leadership term (a new leader reads the ConfigMap again). `held` is the
    text the cluster was last confirmed to hold: an `apply` with the same roots
    sends nothing; `resync` forgets it, so the next apply reads and repairs drift.
    A failed write (no RBAC, no namespace) is logged and tried again at the resync
    or when the roots change, not on every view.
    """

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        trust_domain: str,
        *,
        name: str = CONFIGMAP,
        resync_period: float = RESYNC_PERIOD,
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.trust_domain = trust_domain
        self.name = name
        self.resync_period = resync_period
        self.rng = rng or random.Random()
        self.held: str | None = None
        self.failed: str | None = None  # roots whose write failed: retried at the resync
        self.stats = WriterStats()
        self._bundles: Mapping[str, TrustDomain] | None = None
        self._lock = asyncio.Lock()
        self._refused = ""  # the last refusal logged (log a new reason once)

    async def apply(self, bundles: Mapping[str, TrustDomain]) -> None:
        async with self._lock:
            self._bundles = bundles
            await self._apply(bundles)

    async def resync(self) -> None:
        async with self._lock:
            self.held = self.failed = None
            if self._bundles is not None:
                await self._apply(self._bundles)

    async def run_resync(self) -> None:
        while True:
            await asyncio.sleep(jittered(self.resync_period, self.rng))
            await self.resync()

    async def _apply(self, bundles: Mapping[str, TrustDomain]) -> None:
        roots, why = roots_text(bundles, self.trust_domain)
        if roots is None:
            self._refuse(why)
            return
        if roots in (self.held, self.failed):
            return  # confirmed, or failed (RBAC, no namespace): not again on every view
        for attempt in range(2):  # a 409 (someone wrote meanwhile): read and decide again
            try:
                await self._write_once(bundles)
                return
            except KubeError as err:
                if err.status == 409 and attempt == 0:
                    continue
                self.stats.failures += 1
                self.failed = roots
                log.warning(
                    "ConfigMap %s/%s not written (%s); retried at the resync or when the "
                    "roots change",
                    self.namespace,
                    self.name,
                    err,
                )
                return

    async def _write_once(self, bundles: Mapping[str, TrustDomain]) -> None:
        live = await asyncio.to_thread(self._get)
        decision = decide(bundles, self.trust_domain, self.namespace, live, self.name)
        if decision.verb == "refuse":
            self._refuse(decision.reason)
            return
        if decision.verb == "create":
            assert decision.body is not None
            await asyncio.to_thread(self.api.create, CONFIG_MAPS, self.namespace, decision.body)
            self.stats.creates += 1
        elif decision.verb == "update":
            assert decision.body is not None
            await asyncio.to_thread(
                self.api.replace, CONFIG_MAPS, self.namespace, self.name, decision.body
            )
            self.stats.updates += 1
        else:
            self.stats.unchanged += 1
        if decision.verb != "unchanged":
            log.info(
                "ConfigMap %s/%s %sd: %d root(s) of %s",
                self.namespace,
                self.name,
                decision.verb,
                (decision.roots or "").count("-----BEGIN CERTIFICATE-----"),
                self.trust_domain,
            )
        self._refused = ""
        self.failed = None
        self.held = decision.roots

    def _get(self) -> Obj | None:
        try:
            return self.api.get(CONFIG_MAPS, self.namespace, self.name)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    def _refuse(self, why: str) -> None:
        self.stats.refused += 1
        if why != self._refused:
            self._refused = why
            log.warning("ConfigMap %s/%s kept as it is: %s", self.namespace, self.name, why)
