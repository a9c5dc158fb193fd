"""The static sink's file: one cluster's imports as YAML, and reading it back.

`meshfed agent --imports-file F` writes it for hosts without Kubernetes (a VM's
service discovery, the demo); `meshfed dns --imports F` serves DNS from it. The
file is replaced atomically (write a temporary file, fsync, rename), so a reader
never sees half of it, and only when its content changes.

```yaml
cluster: east
revision: 42
clusters:
  - {name: west, region: us-west, zone: us-west-1a, gateway_healthy: true,
     gateway_addresses: ["10.0.0.7:15443"]}
services:
  - namespace: demo
    name: echo
    type: ClusterSetIP          # or Headless
    ips: [198.18.0.10]
    ports: [{name: http, port: 8080, protocol: TCP}]
    clusters: [west]
    conflicts: []
    endpoints:
      - {cluster: west, address: 10.3.0.5, zone: us-west-1a, ready: true, weight: 1,
         ports: [{name: http, port: 9000, protocol: TCP}]}
```
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import yaml

from discovery_sync.errors import SourceError
from discovery_sync.types import HEADLESS, ClusterInfo, ImportedService, ImportView, Locality
from federation.errors import ValidationError
from federation.model import Endpoint, Port, ServiceKey


def _port(p: Port) -> dict[str, Any]:
    out: dict[str, Any] = {"port": p.port, "protocol": p.protocol}
    if p.name:
        out["name"] = p.name
    if p.app_protocol:
        out["appProtocol"] = p.app_protocol
    return out


def dump(view: ImportView) -> str:
    doc = {
        "cluster": view.cluster,
        "revision": view.revision,
        "clusters": [
            {
                "name": c.name,
                "region": c.locality.region,
                "zone": c.locality.zone,
                "gateway_healthy": c.gateway_healthy,
                "gateway_addresses": list(c.gateway_addresses),
            }
            for c in sorted(view.clusters.values(), key=lambda c: c.name)
        ],
        "services": [
            {
                "namespace": s.service.namespace,
                "name": s.service.name,
                "type": s.type,
                "ips": list(s.ips),
                "ports": [_port(p) for p in s.ports],
                "clusters": list(s.clusters),
                "conflicts": list(s.conflicts),
                "endpoints": [
                    {
                        "cluster": e.cluster,
                        "address": e.address,
                        "zone": e.zone,
                        "ready": e.ready,
                        "weight": e.weight,
                        "ports": [_port(p) for p in e.ports],
                    }
                    for e in s.endpoints
                ],
            }
            for s in sorted(view.services.values(), key=lambda s: str(s.service))
        ],
    }
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)


def _ports(field: str, raw: Any) -> tuple[Port, ...]:
    if not isinstance(raw, list):
        raise SourceError(field, "must be a list")
    out = []
    for i, p in enumerate(raw):
        if not isinstance(p, Mapping):
            raise SourceError(f"{field}[{i}]", "must be a mapping")
        try:
            out.append(
                Port(
                    p.get("port"),  # type: ignore[arg-type]
                    p.get("protocol", "TCP"),
                    p.get("name", ""),
                    p.get("appProtocol", ""),
                )
            )
        except ValidationError as err:
            raise SourceError(f"{field}[{i}].{err.field}", err.message) from err
    return tuple(out)


def load(text: str) -> ImportView:
    """Parse the file; errors name the field."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SourceError("YAML", f"invalid YAML: {err}") from err
    if not isinstance(doc, Mapping):
        raise SourceError("(top level)", "must be a mapping")
    try:
        clusters = {}
        for c in doc.get("clusters") or []:
            info = ClusterInfo(
                str(c["name"]),
                Locality(str(c.get("region") or ""), str(c.get("zone") or "")),
                c.get("gateway_healthy"),
                tuple(c.get("gateway_addresses") or ()),
            )
            clusters[info.name] = info
        services = {}
        for i, s in enumerate(doc.get("services") or []):
            field = f"services[{i}]"
            key = ServiceKey(s["namespace"], s["name"])
            eps = tuple(
                Endpoint(
                    e["cluster"],
                    key.namespace,
                    key.name,
                    e["address"],
                    _ports(f"{field}.endpoints[{j}].ports", e.get("ports")),
                    e["zone"],
                    e.get("ready", True),
                    e.get("weight", 1),
                )
                for j, e in enumerate(s.get("endpoints") or [])
            )
            services[key] = ImportedService(
                key,
                _ports(f"{field}.ports", s.get("ports") or []),
                tuple(s.get("clusters") or sorted({e.cluster for e in eps})),
                eps,
                s.get("type") == HEADLESS,
                tuple(s.get("ips") or ()),
                tuple(s.get("conflicts") or ()),
            )
        return ImportView(
            str(doc.get("cluster", "")), services, clusters, int(doc.get("revision") or 0)
        )
    except ValidationError as err:
        raise SourceError(err.field, err.message) from err
    except (KeyError, TypeError, AttributeError, ValueError) as err:
        raise SourceError("imports file", f"malformed: {err!r}") from err


def write_atomic(path: str, text: str) -> bool:
    """Replace `path` with `text` unless it already holds it; True if written."""
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return False
    except OSError:
        pass
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".imports-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as err:
        raise SourceError(path, f"cannot write: {err.strerror}") from err
    return True
