"""The data plane: east-west gateways that carry cross-cluster traffic over mTLS.

Pure core (no I/O, time and randomness passed in):
``clienthello`` (sans-IO SNI/ALPN parser), ``naming`` (Istio and meshfed SNI
formats), ``routefile`` (the static YAML route file), ``routing`` (SNI -> route),
``identity`` (SPIFFE ID checks), ``ranking`` (locality failover and outlier
ejection), ``health`` (probe state machine), ``settings``, ``errors`` (the one
``GatewayError`` tree).

Thin asyncio shells: ``ingress`` (port 15443: passthrough and terminate),
``egress`` (local listeners with failover), ``relay`` (os.splice threads or
asyncio copies), ``tlsstream`` (MemoryBIO TLS over raw sockets), ``probe``,
``admin`` (/metrics, /ready, /config), ``metrics``, ``net``, ``gateway`` (process
composition, reload, drain) and ``main`` (``run(argv) -> int``).

Imports only the standard library and third-party packages (cryptography,
pyyaml, prometheus-client); the registry join mode (``--registry``) is not built
yet. See docs/gateway.md.
"""
