"""The discovery package's exception tree.

Everything `discovery_sync` raises on purpose derives from `DiscoveryError`, so the
agent and the CLI catch one root. Foreign exceptions (YAML, the Kubernetes client,
sockets, federation's `ValidationError`) are translated once, where they enter, with
`raise ... from` so the cause stays in the traceback.
"""

from __future__ import annotations


class DiscoveryError(Exception):
    """Root of every error raised by `discovery_sync`."""


class SourceError(DiscoveryError, ValueError):
    """An input (static file, Kubernetes object, flag) is invalid; `field` names where."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class KubeError(DiscoveryError):
    """The Kubernetes API refused or failed a request."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Gone(KubeError):
    """A watch named a resourceVersion the API server has compacted (HTTP 410): relist."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 410)


class KubeConflict(KubeError):
    """A write lost a race (HTTP 409): stale resourceVersion or the object exists."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class DnsError(DiscoveryError):
    """The DNS server could not start (bad address, port taken)."""


class RegistryUnavailable(DiscoveryError):
    """The registry could not be reached; the agent keeps what it has and retries."""
