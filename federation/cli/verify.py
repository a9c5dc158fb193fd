"""Checks shared by `meshfed link` and `meshfed check`, over the REST API.

Each function adds pass / fail / warning lines to a `Report`; none raises for a failed
check (API errors other than the expected ones propagate).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from federation.cli.apiclient import ApiError, Client
from federation.cli.trustcheck import EXPIRY_WARNING, bundle_roots, load_pems, verify_intermediate
from federation.cli.ui import Report

NO_CA_ACCESS = (
    "not verified: the API serves a cluster's CA certificate only with its key, to admins"
)


class TrustSource:
    """Fetches (and caches) roots, bundles and intermediates for one command run."""

    def __init__(self, api: Client) -> None:
        self.api = api
        self._bundles: dict[str, list[x509.Certificate]] = {}
        self._intermediates: dict[str, str | None] = {}
        self._roots: list[x509.Certificate] | None = None

    def roots(self) -> list[x509.Certificate]:
        if self._roots is None:
            self._roots = load_pems(self.api.text("/api/v1/trust/roots.pem"))
        return self._roots

    def bundle(self, trust_domain: str) -> list[x509.Certificate]:
        if trust_domain not in self._bundles:
            doc = self.api.find(f"/api/v1/trust/bundles/{trust_domain}")
            self._bundles[trust_domain] = bundle_roots(doc) if doc else []
        return self._bundles[trust_domain]

    def intermediate(self, cluster: str) -> str | None:
        """The cluster intermediate's PEM, or None when this token may not read it."""
        if cluster not in self._intermediates:
            try:
                body = self.api.get(f"/api/v1/clusters/{cluster}/ca", format="istio")
                self._intermediates[cluster] = str(body["files"]["ca-cert.pem"])
            except ApiError as exc:
                if exc.status != 403:
                    raise
                self._intermediates[cluster] = None
        return self._intermediates[cluster]


def trust_lines(
    report: Report,
    section: str,
    trust: TrustSource,
    cluster: dict[str, Any],
    peer: dict[str, Any] | None = None,
    now: datetime | None = None,
    within: timedelta = EXPIRY_WARNING,
) -> None:
    """Does `cluster`'s intermediate chain to the served roots (and to `peer`'s bundle)?"""
    now = now or datetime.now(UTC)
    name = cluster["name"]
    pem = trust.intermediate(name)
    if pem is None:
        report.add(section, f"intermediate CA of {name}", "warn", NO_CA_ACCESS)
        return
    verdict = verify_intermediate(pem, trust.roots(), now, within=within)
    report.add(
        section,
        f"intermediate CA of {name} chains to the served bundle",
        "pass" if verdict.ok else "fail",
        verdict.detail,
    )
    if peer is not None and peer["trust_domain"] != cluster["trust_domain"]:
        roots = trust.bundle(peer["trust_domain"])
        held = verify_intermediate(pem, roots, now, within=within)
        report.add(
            section,
            f"{peer['name']} ({peer['trust_domain']}) trusts {name}'s intermediate",
            "pass" if held.ok else "fail",
            "" if held.ok else held.detail,
        )


CONDITION_TYPES = ("Ready", "GatewayReachable", "CredentialsValid", "Synced")


def condition(link: dict[str, Any], ctype: str) -> dict[str, Any] | None:
    return next((c for c in link.get("conditions", []) if c["type"] == ctype), None)


def link_name(link: dict[str, Any]) -> str:
    arrow = "<->" if link["bidirectional"] else "<-"
    return f"{link['a']}{arrow}{link['b']}"


def condition_line(
    report: Report, section: str, link: dict[str, Any], ctype: str, what: str
) -> None:
    """True passes, False fails, Unknown warns (not reported yet is not a failure)."""
    cond = condition(link, ctype)
    label = f"{link_name(link)}: {what}"
    if cond is None:
        report.add(section, label, "warn", f"no {ctype} condition")
        return
    detail = cond["reason"] + (f": {cond['message']}" if cond.get("message") else "")
    status = {"True": "pass", "False": "fail"}.get(cond["status"], "warn")
    if status == "warn":
        detail = f"{ctype} Unknown, {detail}"
    report.add(section, label, status, "" if status == "pass" else detail)  # type: ignore[arg-type]


def credential_line(
    report: Report, section: str, link: dict[str, Any], now: datetime | None = None
) -> None:
    now = now or datetime.now(UTC)
    expiry = link.get("credential_expiry")
    label = f"{link_name(link)}: credentials valid"
    if expiry is None:
        cond = condition(link, "CredentialsValid")
        if cond is not None and cond["status"] == "False":
            report.add(section, label, "fail", f"{cond['reason']}: {cond.get('message', '')}")
        else:
            report.add(section, label, "pass", "no credential held by the link")
        return
    when = datetime.fromisoformat(str(expiry).replace("Z", "+00:00"))
    if when <= now:
        report.add(section, label, "fail", f"expired {when:%Y-%m-%d %H:%M}Z")
    else:
        report.add(section, label, "pass", f"expires {when:%Y-%m-%d %H:%M}Z")


def gateway_line(
    report: Report, section: str, cluster: str, gateways: dict[str, dict[str, Any]]
) -> None:
    gw = gateways.get(cluster)
    label = f"gateway of {cluster}"
    if gw is None:
        report.add(section, label, "warn", "no gateway has reported yet")
    elif gw["healthy"] is True:
        report.add(section, label + " alive", "pass", ", ".join(gw["addresses"]))
    elif gw["healthy"] is False:
        report.add(section, label + " alive", "fail", "peers report it unhealthy")
    else:
        report.add(section, label, "warn", "not probed yet")
