"""The static route file (``--routes FILE``) as frozen dataclasses.

Why it exists: until the registry feeds routes over gRPC, and afterwards in tests
and benchmarks, a gateway runs from one YAML file. Operators edit it by hand, so
every error names the exact field (``routes[1].backend: ...``) and unknown keys
are refused rather than ignored. Parsing (:func:`parse_route_document`) is pure;
:func:`load_route_file` only adds reading the file and YAML decoding.

Format (relative paths are relative to the file's directory)::

    tls: {cert: gw.pem, key: gw.key, ca: bundle.pem}   # needed for terminate/egress
    locality: {region: eu-west1, zone: eu-west1-b}      # needed for egress
    routes:
      - {sni: "outbound_.8443_._.echo.demo.svc.cluster.local",
         backend: "127.0.0.1:9000", mode: passthrough}
      - {sni: "echo.demo.svc.clusterset.local", backend: "127.0.0.1:9001",
         mode: terminate, allow: ["spiffe://east.meshfed/meshfed/gateway/east"]}
    egress:
      - listen: "127.0.0.1:15001"
        sni: "echo.demo.svc.clusterset.local"
        mode: originate            # or passthrough (client speaks TLS itself)
        clusters:
          - {name: west, region: eu-west1, zone: eu-west1-c,
             gateways: ["10.0.0.7:15443"], weight: 1, priority: 0, ready_endpoints: 2,
             spiffe_id: "spiffe://west.meshfed/meshfed/gateway/west"}   # optional
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from eastwest_gateway.errors import ConfigError, SniFormatError
from eastwest_gateway.naming import ServiceTarget, parse_sni

SPIFFE_SCHEME: Final = "spiffe://"  # SPIFFE ID spec section 2
MAX_PORT: Final = 65535


class Mode(enum.StrEnum):
    PASSTHROUGH = "passthrough"
    TERMINATE = "terminate"


class EgressMode(enum.StrEnum):
    PASSTHROUGH = "passthrough"  # the local client speaks TLS (with SNI) itself
    ORIGINATE = "originate"  # plaintext in, mTLS with the gateway's SVID out


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsFiles:
    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True, slots=True)
class Locality:
    region: str
    zone: str


@dataclass(frozen=True, slots=True)
class Route:
    sni: str
    backend: HostPort
    mode: Mode
    allow: tuple[str, ...] = ()
    target: ServiceTarget | None = None
    # Further backends of the same service (registry mode: one per ready endpoint).
    # New connections start at the next backend in turn and fall over to the others.
    more_backends: tuple[HostPort, ...] = ()

    @property
    def backends(self) -> tuple[HostPort, ...]:
        return (self.backend, *self.more_backends)

    @property
    def service(self) -> str:
        """Metric/log label for the route's service."""
        return self.target.label if self.target is not None else self.sni


@dataclass(frozen=True, slots=True)
class UpstreamCluster:
    name: str
    locality: Locality
    gateways: tuple[HostPort, ...]
    weight: int = 1
    priority: int = 0
    ready_endpoints: int = 1
    # The SPIFFE ID the cluster's gateway must present when the egress originates
    # mTLS to it ("" : any certificate that chains to tls.ca).
    spiffe_id: str = ""


@dataclass(frozen=True, slots=True)
class EgressRoute:
    listen: HostPort
    sni: str
    mode: EgressMode
    clusters: tuple[UpstreamCluster, ...]

    @property
    def service(self) -> str:
        try:
            return parse_sni(self.sni).label
        except SniFormatError:
            return self.sni


@dataclass(frozen=True, slots=True)
class RouteFile:
    routes: tuple[Route, ...]
    egress: tuple[EgressRoute, ...] = ()
    tls: TlsFiles | None = None
    locality: Locality | None = None


def parse_host_port(text: object, where: str, *, allow_port_zero: bool = False) -> HostPort:
    """``HOST:PORT`` or ``[V6]:PORT``; the error names ``where``.

    Port 0 (``allow_port_zero``) asks the kernel for any free port: fine for a
    listen address, meaningless for a destination.
    """
    if not isinstance(text, str) or not text:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    if text.startswith("["):
        host, sep, port_text = text[1:].partition("]:")
        valid_host = _is_ipv6(host)
    else:
        host, sep, port_text = text.rpartition(":")
        valid_host = bool(host) and ":" not in host
    if not sep or not valid_host:
        raise ConfigError(f"{where}: expected HOST:PORT, got {text!r}")
    lowest = 0 if allow_port_zero else 1
    if not port_text.isdigit() or not lowest <= int(port_text) <= MAX_PORT:
        raise ConfigError(f"{where}: port {port_text!r} is not in {lowest}..{MAX_PORT}")
    return HostPort(host, int(port_text))


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


class _Fields:
    """A mapping being parsed: typed getters and unknown-key detection."""

    def __init__(self, value: object, where: str, allowed: frozenset[str]) -> None:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        self.where = where
        unknown = sorted(str(k) for k in value if k not in allowed)
        if unknown:
            raise ConfigError(f"{self.at(unknown[0])}: unknown field")
        self._value: Mapping[Any, Any] = value

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return key in self._value

    def text(self, key: str, default: str | None = None) -> str:
        value = self._value.get(key, default)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{self.at(key)}: expected a non-empty string, got {value!r}")
        return value

    def integer(self, key: str, default: int, minimum: int) -> int:
        value = self._value.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"{self.at(key)}: expected an integer >= {minimum}, got {value!r}")
        return value

    def items(self, key: str, *, required: bool = True) -> list[object]:
        if not required and key not in self._value:
            return []
        value = self._value.get(key)
        if not isinstance(value, list):
            raise ConfigError(f"{self.at(key)}: expected a list, got {value!r}")
        return value

    def raw(self, key: str) -> object:
        return self._value.get(key)


def parse_route_document(doc: object, base_dir: Path) -> RouteFile:
    """Turn a decoded YAML document into a :class:`RouteFile` (pure)."""
    if doc is None:
        raise ConfigError("routes: the file is empty")
    top = _Fields(doc, "", frozenset({"tls", "locality", "routes", "egress"}))
    tls = _parse_tls(top.raw("tls"), base_dir) if top.has("tls") else None
    locality = _parse_locality(top.raw("locality"), "locality") if top.has("locality") else None
    routes = tuple(
        _parse_route(item, f"routes[{i}]", tls) for i, item in enumerate(top.items("routes"))
    )
    egress = tuple(
        _parse_egress(item, f"egress[{i}]", tls)
        for i, item in enumerate(top.items("egress", required=False))
    )
    if egress and locality is None:
        raise ConfigError("locality: required when egress routes are configured")
    listens = [e.listen for e in egress]
    for i, addr in enumerate(listens):
        if addr in listens[:i]:
            raise ConfigError(f"egress[{i}].listen: {addr} repeats an earlier egress listener")
    return RouteFile(routes=routes, egress=egress, tls=tls, locality=locality)


def _parse_tls(value: object, base_dir: Path) -> TlsFiles:
    f = _Fields(value, "tls", frozenset({"cert", "key", "ca"}))
    return TlsFiles(
        cert=base_dir / f.text("cert"), key=base_dir / f.text("key"), ca=base_dir / f.text("ca")
    )


def _parse_locality(value: object, where: str) -> Locality:
    f = _Fields(value, where, frozenset({"region", "zone"}))
    return Locality(region=f.text("region"), zone=f.text("zone"))


def _parse_route(value: object, where: str, tls: TlsFiles | None) -> Route:
    f = _Fields(value, where, frozenset({"sni", "backend", "mode", "allow"}))
    sni = f.text("sni").lower()
    mode_text = f.text("mode", Mode.PASSTHROUGH.value)
    try:
        mode = Mode(mode_text)
    except ValueError:
        raise ConfigError(
            f"{where}.mode: {mode_text!r} is not one of passthrough, terminate"
        ) from None
    allow = tuple(
        _parse_spiffe_id(v, f"{where}.allow[{j}]")
        for j, v in enumerate(f.items("allow", required=False))
    )
    if mode is Mode.TERMINATE:
        if tls is None:
            raise ConfigError(f"{where}.mode: terminate needs the top-level tls section")
        if not allow:
            raise ConfigError(f"{where}.allow: terminate needs a non-empty list of SPIFFE IDs")
    elif allow:
        raise ConfigError(f"{where}.allow: only terminate routes can check peer identities")
    try:
        target: ServiceTarget | None = parse_sni(sni)
    except SniFormatError:
        target = None  # any exact name may still be routed; it just gets no service match
    return Route(
        sni=sni,
        backend=parse_host_port(f.raw("backend"), f"{where}.backend"),
        mode=mode,
        allow=allow,
        target=target,
    )


def _parse_spiffe_id(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.startswith(SPIFFE_SCHEME):
        raise ConfigError(f"{where}: expected a spiffe:// ID, got {value!r}")
    trust_domain = value[len(SPIFFE_SCHEME) :].partition("/")[0]
    if not trust_domain:
        raise ConfigError(f"{where}: {value!r} has no trust domain")
    return value


def _parse_egress(value: object, where: str, tls: TlsFiles | None) -> EgressRoute:
    f = _Fields(value, where, frozenset({"listen", "sni", "mode", "clusters"}))
    mode_text = f.text("mode", EgressMode.ORIGINATE.value)
    try:
        mode = EgressMode(mode_text)
    except ValueError:
        raise ConfigError(
            f"{where}.mode: {mode_text!r} is not one of passthrough, originate"
        ) from None
    if mode is EgressMode.ORIGINATE and tls is None:
        raise ConfigError(f"{where}.mode: originate needs the top-level tls section")
    clusters = tuple(
        _parse_cluster(item, f"{where}.clusters[{j}]") for j, item in enumerate(f.items("clusters"))
    )
    if not clusters:
        raise ConfigError(f"{where}.clusters: at least one cluster is needed")
    names = [c.name for c in clusters]
    for j, name in enumerate(names):
        if name in names[:j]:
            raise ConfigError(f"{where}.clusters[{j}].name: {name!r} repeats an earlier cluster")
    return EgressRoute(
        listen=parse_host_port(f.raw("listen"), f"{where}.listen", allow_port_zero=True),
        sni=f.text("sni").lower(),
        mode=mode,
        clusters=clusters,
    )


def _parse_cluster(value: object, where: str) -> UpstreamCluster:
    f = _Fields(
        value,
        where,
        frozenset(
            {
                *("name", "region", "zone", "gateways", "weight", "priority"),
                *("ready_endpoints", "spiffe_id"),
            }
        ),
    )
    gateways = tuple(
        parse_host_port(g, f"{where}.gateways[{k}]") for k, g in enumerate(f.items("gateways"))
    )
    if not gateways:
        raise ConfigError(f"{where}.gateways: at least one gateway address is needed")
    return UpstreamCluster(
        name=f.text("name"),
        locality=Locality(region=f.text("region"), zone=f.text("zone")),
        gateways=gateways,
        weight=f.integer("weight", 1, 0),
        priority=f.integer("priority", 0, 0),
        ready_endpoints=f.integer("ready_endpoints", 1, 0),
        spiffe_id=(
            _parse_spiffe_id(f.raw("spiffe_id"), f.at("spiffe_id")) if f.has("spiffe_id") else ""
        ),
    )


def load_route_file(path: Path) -> RouteFile:
    """Read and parse a route file; every failure is a :class:`ConfigError`."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read route file: {exc.strerror or exc}") from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return parse_route_document(doc, path.parent)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
