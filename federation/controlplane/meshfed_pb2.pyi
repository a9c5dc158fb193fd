import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Health(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_UNKNOWN: _ClassVar[Health]
    HEALTH_UP: _ClassVar[Health]
    HEALTH_DOWN: _ClassVar[Health]
HEALTH_UNKNOWN: Health
HEALTH_UP: Health
HEALTH_DOWN: Health

class JoinRequest(_message.Message):
    __slots__ = ("token", "csr_pem")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    token: str
    csr_pem: bytes
    def __init__(self, token: _Optional[str] = ..., csr_pem: _Optional[bytes] = ...) -> None: ...

class SignCSRRequest(_message.Message):
    __slots__ = ("csr_pem",)
    CSR_PEM_FIELD_NUMBER: _ClassVar[int]
    csr_pem: bytes
    def __init__(self, csr_pem: _Optional[bytes] = ...) -> None: ...

class Credentials(_message.Message):
    __slots__ = ("spiffe_id", "chain_pem", "bundle_pem", "not_after")
    SPIFFE_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_PEM_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    spiffe_id: str
    chain_pem: bytes
    bundle_pem: bytes
    not_after: _timestamp_pb2.Timestamp
    def __init__(self, spiffe_id: _Optional[str] = ..., chain_pem: _Optional[bytes] = ..., bundle_pem: _Optional[bytes] = ..., not_after: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Port(_message.Message):
    __slots__ = ("port", "protocol", "name", "app_protocol")
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    APP_PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    port: int
    protocol: str
    name: str
    app_protocol: str
    def __init__(self, port: _Optional[int] = ..., protocol: _Optional[str] = ..., name: _Optional[str] = ..., app_protocol: _Optional[str] = ...) -> None: ...

class ServiceRef(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ServiceExport(_message.Message):
    __slots__ = ("cluster", "namespace", "name", "created", "ports", "scope")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    name: str
    created: _timestamp_pb2.Timestamp
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    scope: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., name: _Optional[str] = ..., created: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., scope: _Optional[_Iterable[str]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("cluster", "namespace", "service", "address", "ports", "zone", "ready", "weight")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    namespace: str
    service: str
    address: str
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    zone: str
    ready: bool
    weight: int
    def __init__(self, cluster: _Optional[str] = ..., namespace: _Optional[str] = ..., service: _Optional[str] = ..., address: _Optional[str] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., zone: _Optional[str] = ..., ready: _Optional[bool] = ..., weight: _Optional[int] = ...) -> None: ...

class Condition(_message.Message):
    __slots__ = ("type", "status", "reason", "message", "last_transition_time")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LAST_TRANSITION_TIME_FIELD_NUMBER: _ClassVar[int]
    type: str
    status: str
    reason: str
    message: str
    last_transition_time: _timestamp_pb2.Timestamp
    def __init__(self, type: _Optional[str] = ..., status: _Optional[str] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ..., last_transition_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Link(_message.Message):
    __slots__ = ("a", "b", "bidirectional", "mode", "namespaces", "conditions", "credential_expiry")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    BIDIRECTIONAL_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACES_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    CREDENTIAL_EXPIRY_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    bidirectional: bool
    mode: str
    namespaces: _containers.RepeatedScalarFieldContainer[str]
    conditions: _containers.RepeatedCompositeFieldContainer[Condition]
    credential_expiry: _timestamp_pb2.Timestamp
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ..., bidirectional: _Optional[bool] = ..., mode: _Optional[str] = ..., namespaces: _Optional[_Iterable[str]] = ..., conditions: _Optional[_Iterable[_Union[Condition, _Mapping]]] = ..., credential_expiry: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Gateway(_message.Message):
    __slots__ = ("cluster", "addresses", "modes", "healthy", "region", "zone", "trust_domain")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    MODES_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    addresses: _containers.RepeatedScalarFieldContainer[str]
    modes: _containers.RepeatedScalarFieldContainer[str]
    healthy: Health
    region: str
    zone: str
    trust_domain: str
    def __init__(self, cluster: _Optional[str] = ..., addresses: _Optional[_Iterable[str]] = ..., modes: _Optional[_Iterable[str]] = ..., healthy: _Optional[_Union[Health, str]] = ..., region: _Optional[str] = ..., zone: _Optional[str] = ..., trust_domain: _Optional[str] = ...) -> None: ...

class TrustBundle(_message.Message):
    __slots__ = ("trust_domain", "roots_pem", "sequence", "refresh_hint_seconds", "signing_root_sha256")
    TRUST_DOMAIN_FIELD_NUMBER: _ClassVar[int]
    ROOTS_PEM_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    REFRESH_HINT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SIGNING_ROOT_SHA256_FIELD_NUMBER: _ClassVar[int]
    trust_domain: str
    roots_pem: _containers.RepeatedScalarFieldContainer[str]
    sequence: int
    refresh_hint_seconds: int
    signing_root_sha256: str
    def __init__(self, trust_domain: _Optional[str] = ..., roots_pem: _Optional[_Iterable[str]] = ..., sequence: _Optional[int] = ..., refresh_hint_seconds: _Optional[int] = ..., signing_root_sha256: _Optional[str] = ...) -> None: ...

class ServiceState(_message.Message):
    __slots__ = ("export", "endpoints")
    EXPORT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    export: ServiceExport
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    def __init__(self, export: _Optional[_Union[ServiceExport, _Mapping]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ...) -> None: ...

class EndpointReport(_message.Message):
    __slots__ = ("full_state", "services", "removed")
    FULL_STATE_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    full_state: bool
    services: _containers.RepeatedCompositeFieldContainer[ServiceState]
    removed: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    def __init__(self, full_state: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[ServiceState, _Mapping]]] = ..., removed: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ...) -> None: ...

class ReportEndpointsResponse(_message.Message):
    __slots__ = ("revision", "services")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    revision: int
    services: int
    def __init__(self, revision: _Optional[int] = ..., services: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("cluster", "since_revision")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    SINCE_REVISION_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    since_revision: int
    def __init__(self, cluster: _Optional[str] = ..., since_revision: _Optional[int] = ...) -> None: ...

class ServiceImport(_message.Message):
    __slots__ = ("service", "ports", "clusters", "conflicts", "endpoints")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    service: ServiceRef
    ports: _containers.RepeatedCompositeFieldContainer[Port]
    clusters: _containers.RepeatedScalarFieldContainer[str]
    conflicts: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedCompositeFieldContainer[Endpoint]
    def __init__(self, service: _Optional[_Union[ServiceRef, _Mapping]] = ..., ports: _Optional[_Iterable[_Union[Port, _Mapping]]] = ..., clusters: _Optional[_Iterable[str]] = ..., conflicts: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[_Union[Endpoint, _Mapping]]] = ...) -> None: ...

class LinkRef(_message.Message):
    __slots__ = ("a", "b")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    a: str
    b: str
    def __init__(self, a: _Optional[str] = ..., b: _Optional[str] = ...) -> None: ...

class WatchState(_message.Message):
    __slots__ = ("imports", "links", "gateways", "bundles", "exports")
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    imports: _containers.RepeatedCompositeFieldContainer[ServiceImport]
    links: _containers.RepeatedCompositeFieldContainer[Link]
    gateways: _containers.RepeatedCompositeFieldContainer[Gateway]
    bundles: _containers.RepeatedCompositeFieldContainer[TrustBundle]
    exports: _containers.RepeatedCompositeFieldContainer[ServiceImport]
    def __init__(self, imports: _Optional[_Iterable[_Union[ServiceImport, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[Link, _Mapping]]] = ..., gateways: _Optional[_Iterable[_Union[Gateway, _Mapping]]] = ..., bundles: _Optional[_Iterable[_Union[TrustBundle, _Mapping]]] = ..., exports: _Optional[_Iterable[_Union[ServiceImport, _Mapping]]] = ...) -> None: ...

class WatchRemovals(_message.Message):
    __slots__ = ("imports", "links", "gateways", "bundles", "exports")
    IMPORTS_FIELD_NUMBER: _ClassVar[int]
    LINKS_FIELD_NUMBER: _ClassVar[int]
    GATEWAYS_FIELD_NUMBER: _ClassVar[int]
    BUNDLES_FIELD_NUMBER: _ClassVar[int]
    EXPORTS_FIELD_NUMBER: _ClassVar[int]
    imports: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    links: _containers.RepeatedCompositeFieldContainer[LinkRef]
    gateways: _containers.RepeatedScalarFieldContainer[str]
    bundles: _containers.RepeatedScalarFieldContainer[str]
    exports: _containers.RepeatedCompositeFieldContainer[ServiceRef]
    def __init__(self, imports: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ..., links: _Optional[_Iterable[_Union[LinkRef, _Mapping]]] = ..., gateways: _Optional[_Iterable[str]] = ..., bundles: _Optional[_Iterable[str]] = ..., exports: _Optional[_Iterable[_Union[ServiceRef, _Mapping]]] = ...) -> None: ...

class WatchEvent(_message.Message):
    __slots__ = ("revision", "snapshot", "delta", "heartbeat")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    revision: int
    snapshot: WatchState
    delta: WatchDelta
    heartbeat: Heartbeat
    def __init__(self, revision: _Optional[int] = ..., snapshot: _Optional[_Union[WatchState, _Mapping]] = ..., delta: _Optional[_Union[WatchDelta, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ...) -> None: ...

class WatchDelta(_message.Message):
    __slots__ = ("upserted", "removed")
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    upserted: WatchState
    removed: WatchRemovals
    def __init__(self, upserted: _Optional[_Union[WatchState, _Mapping]] = ..., removed: _Optional[_Union[WatchRemovals, _Mapping]] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerProbe(_message.Message):
    __slots__ = ("peer_cluster", "up", "reason", "message")
    PEER_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    UP_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    peer_cluster: str
    up: bool
    reason: str
    message: str
    def __init__(self, peer_cluster: _Optional[str] = ..., up: _Optional[bool] = ..., reason: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class HealthReport(_message.Message):
    __slots__ = ("probes", "trusted_roots_sha256", "instance")
    PROBES_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_ROOTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    probes: _containers.RepeatedCompositeFieldContainer[PeerProbe]
    trusted_roots_sha256: _containers.RepeatedScalarFieldContainer[str]
    instance: str
    def __init__(self, probes: _Optional[_Iterable[_Union[PeerProbe, _Mapping]]] = ..., trusted_roots_sha256: _Optional[_Iterable[str]] = ..., instance: _Optional[str] = ...) -> None: ...

class ReportHealthResponse(_message.Message):
    __slots__ = ("unknown_peers",)
    UNKNOWN_PEERS_FIELD_NUMBER: _ClassVar[int]
    unknown_peers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unknown_peers: _Optional[_Iterable[str]] = ...) -> None: ...
