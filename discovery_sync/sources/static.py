"""The static source: a YAML file of services for VMs, bare metal and the demo.

```yaml
services:
  - namespace: demo
    name: echo
    ports: [{name: http, port: 8080, protocol: TCP}]
    headless: false          # optional
    scope: [cluster-b]       # optional: only these clusters may import it
    created: 2026-01-01T00:00:00Z   # optional: decides MCS conflicts (oldest wins)
    endpoints:
      - {address: 127.0.0.1, port: 9000, zone: zone-a, ready: true, weight: 1}
```

An endpoint's `port` is its target port for the service's only port; a service
with several ports takes `ports: [{name: http, port: 9000}]` per endpoint instead.
Every error names the field (`services[0].endpoints[1].address: ...`) and the YAML
position of a syntax error. Parsing is pure; `watch_static` in `sources.poll`
re-reads the file when it changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import yaml

from discovery_sync.errors import SourceError
from discovery_sync.types import LocalService
from federation.errors import ValidationError
from federation.model import Endpoint, Port, ServiceExport, ServiceKey

_SERVICE_KEYS = {"namespace", "name", "ports", "endpoints", "headless", "scope", "created"}
_ENDPOINT_KEYS = {"address", "port", "ports", "zone", "ready", "weight"}
_PORT_KEYS = {"name", "port", "protocol", "appProtocol"}


def load_static(
    text: str,
    *,
    cluster: str,
    default_zone: str,
    now: datetime,
    first_seen: Mapping[ServiceKey, datetime] | None = None,
) -> dict[ServiceKey, LocalService]:
    """Parse the static file's text. `first_seen` keeps `created` stable across re-reads."""
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        raise SourceError(where, f"invalid YAML: {err.problem}") from err
    except yaml.YAMLError as err:
        raise SourceError("YAML", f"invalid YAML: {err}") from err
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise SourceError("(top level)", f"must be a mapping, got {type(doc).__name__}")
    _no_unknown("(top level)", doc, {"services"})
    services = _list("services", doc.get("services"))
    out: dict[ServiceKey, LocalService] = {}
    for i, raw in enumerate(services):
        field = f"services[{i}]"
        local = _service(field, raw, cluster, default_zone, now, first_seen or {})
        if local.key in out:
            raise SourceError(f"{field}", f"service {local.key} is listed twice")
        out[local.key] = local
    return out


def _no_unknown(field: str, raw: Mapping[Any, Any], allowed: set[str]) -> None:
    for key in raw:
        if key not in allowed:
            raise SourceError(
                f"{field}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})"
            )


def _mapping(field: str, raw: object) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise SourceError(field, f"must be a mapping, got {type(raw).__name__}")
    return raw


def _list(field: str, raw: object) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SourceError(field, f"must be a list, got {type(raw).__name__}")
    return raw


def _port(field: str, raw: object) -> Port:
    d = _mapping(field, raw)
    _no_unknown(field, d, _PORT_KEYS)
    if "port" not in d:
        raise SourceError(f"{field}.port", "is required")
    try:
        return Port(
            port=d["port"],
            protocol=d.get("protocol", "TCP"),
            name=d.get("name", ""),
            app_protocol=d.get("appProtocol", ""),
        )
    except ValidationError as err:
        raise SourceError(f"{field}.{err.field}", err.message) from err


def _service(
    field: str,
    raw: object,
    cluster: str,
    default_zone: str,
    now: datetime,
    first_seen: Mapping[ServiceKey, datetime],
) -> LocalService:
    d = _mapping(field, raw)
    _no_unknown(field, d, _SERVICE_KEYS)
    for required in ("namespace", "name"):
        if required not in d:
            raise SourceError(f"{field}.{required}", "is required")
    try:
        key = ServiceKey(d["namespace"], d["name"])
    except ValidationError as err:
        raise SourceError(f"{field}.{err.field}", err.message) from err
    ports = tuple(
        _port(f"{field}.ports[{j}]", p)
        for j, p in enumerate(_list(f"{field}.ports", d.get("ports")))
    )
    headless = d.get("headless", False)
    if not isinstance(headless, bool):
        raise SourceError(f"{field}.headless", "must be true or false")
    created = d.get("created", first_seen.get(key, now))
    try:
        export = ServiceExport(
            cluster,
            key.namespace,
            key.name,
            created,
            ports,
            tuple(_list(f"{field}.scope", d.get("scope"))),
        )
    except ValidationError as err:
        raise SourceError(f"{field}.{err.field}", err.message) from err
    endpoints: dict[str, Endpoint] = {}
    for j, ep_raw in enumerate(_list(f"{field}.endpoints", d.get("endpoints"))):
        ep = _endpoint(f"{field}.endpoints[{j}]", ep_raw, key, ports, cluster, default_zone)
        if ep.address in endpoints:
            raise SourceError(f"{field}.endpoints[{j}].address", f"{ep.address} is listed twice")
        endpoints[ep.address] = ep
    return LocalService(export, tuple(endpoints[a] for a in sorted(endpoints)), headless)


def _endpoint(
    field: str,
    raw: object,
    key: ServiceKey,
    service_ports: tuple[Port, ...],
    cluster: str,
    default_zone: str,
) -> Endpoint:
    d = _mapping(field, raw)
    _no_unknown(field, d, _ENDPOINT_KEYS)
    if "address" not in d:
        raise SourceError(f"{field}.address", "is required")
    ports = _endpoint_ports(field, d, service_ports)
    try:
        return Endpoint(
            cluster,
            key.namespace,
            key.name,
            d["address"],
            ports,
            d.get("zone", default_zone),
            d.get("ready", True),
            d.get("weight", 1),
        )
    except ValidationError as err:
        raise SourceError(f"{field}.{err.field}", err.message) from err


def _endpoint_ports(
    field: str, d: Mapping[str, Any], service_ports: tuple[Port, ...]
) -> tuple[Port, ...]:
    if "port" in d and "ports" in d:
        raise SourceError(f"{field}.ports", "give either port or ports, not both")
    if "ports" not in d:
        if "port" not in d:
            if not service_ports:
                raise SourceError(f"{field}.port", "is required")
            return service_ports  # the endpoint listens on the service's own ports
        if len(service_ports) > 1:
            raise SourceError(
                f"{field}.port",
                f"the service has {len(service_ports)} ports: give ports: [{{name, port}}]",
            )
        proto = service_ports[0] if service_ports else Port(1)
        try:
            return (Port(d["port"], proto.protocol, proto.name, proto.app_protocol),)
        except ValidationError as err:
            raise SourceError(f"{field}.port", err.message) from err
    by_name = {p.name: p for p in service_ports}
    out: list[Port] = []
    for k, raw in enumerate(_list(f"{field}.ports", d["ports"])):
        pfield = f"{field}.ports[{k}]"
        p = _port(pfield, raw)
        svc_port = by_name.get(p.name)
        if svc_port is None:
            raise SourceError(f"{pfield}.name", f"{p.name!r} names none of the service's ports")
        out.append(Port(p.port, svc_port.protocol, p.name, svc_port.app_protocol))
    return tuple(out)


def read_static(path: str, **kwargs: Any) -> dict[ServiceKey, LocalService]:
    """Read and parse the file at `path`; an unreadable file is a `SourceError`."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as err:
        raise SourceError(path, f"cannot read: {err.strerror}") from err
    except UnicodeDecodeError as err:
        raise SourceError(path, "is not UTF-8 text") from err
    try:
        return load_static(text, **kwargs)
    except SourceError as err:
        raise SourceError(f"{path}: {err.field}", err.message) from err
