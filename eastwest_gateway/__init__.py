"""The data plane: east-west gateways that carry cross-cluster traffic over mTLS.

Pure core (no I/O, time and randomness passed in):
``clienthello`` (sans-IO SNI/ALPN parser), ``naming`` (Istio and meshfed SNI
formats), ``routefile`` (the static YAML route file), ``routing`` (SNI -> route),
``identity`` (SPIFFE ID checks), ``ranking`` (locality failover and outlier
ejection), ``health`` (probe state machine), ``desired`` (registry Watch view ->
configuration), ``settings``, ``errors`` (the one ``GatewayError`` tree).

Thin asyncio shells: ``ingress`` (port 15443: passthrough and terminate),
``egress`` (local listeners with failover), ``relay`` (os.splice threads or
asyncio copies), ``tlsstream`` (MemoryBIO TLS over raw sockets), ``probe``,
``admin`` (/metrics, /ready, /config), ``metrics``, ``net``, ``gateway`` (process
composition, reload, drain), ``registry_mode`` (Watch, health reports) with
``registry_identity`` (join, SVID renewal), ``snapshot`` (the state directory)
and ``main`` (``run(argv) -> int``).

Of meshfed it imports only ``federation.model``, ``federation.client``,
``federation.errors`` and ``trust_bundle`` (tests/test_import_contract.py).
See docs/gateway.md.
"""
