"""The client library agents and gateways use to talk to the registry's control plane.

It may import `federation.model`, `federation.errors`, `trust_bundle`, grpc and the
generated messages in `federation.controlplane` (never the server, the store or
the registry); `eastwest_gateway` and `discovery_sync` reach the registry only
through it. See docs/controlplane.md.

  credentials  Identity (key, SVID chain, bundle) and CSR helpers
  client       join(), ControlPlaneClient (renew, report_health, report_endpoints,
               watch, follow), EndpointReporter
  watch        pure: Watch messages as records, WatchView.apply
  rotation     pure: the roots to trust and when to renew, from the Watch's bundles
  errors       gRPC status -> federation errors
"""

from federation.client.client import (
    ControlPlaneClient,
    EndpointReporter,
    ExportedService,
    PeerProbe,
    join,
)
from federation.client.credentials import Identity
from federation.client.errors import RegistryError, RegistryUnavailable, StreamAborted
from federation.client.watch import Delta, Heartbeat, Items, Snapshot, WatchEvent, WatchView

__all__ = [
    "ControlPlaneClient",
    "Delta",
    "EndpointReporter",
    "ExportedService",
    "Heartbeat",
    "Identity",
    "Items",
    "PeerProbe",
    "RegistryError",
    "RegistryUnavailable",
    "Snapshot",
    "StreamAborted",
    "WatchEvent",
    "WatchView",
    "join",
]
