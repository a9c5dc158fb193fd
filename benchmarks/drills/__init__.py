"""Failover drills of issue 9, repeated: time to shift and requests lost, p50/p99.

`python -m benchmarks.drills [--runs N] [--write-docs]` (root: network namespaces)
builds the tests/e2e federation -- registry and clusters `a`, `b`, `c` as network
namespaces, every component a real `meshfed` process -- and repeats drill 3 (SIGKILL
of `b`'s gateway), drill 4 (partition of the a<->b link) and drill 7 (the etcd leader
killed, registry on a 3-member etcd) N times under `a`'s steady load of 20 requests/s
(one request per new connection), restoring the federation after each run. The
reference in the same run is the issue's target and the direct path: the same load
with no fault (baseline) on each federation.
"""
