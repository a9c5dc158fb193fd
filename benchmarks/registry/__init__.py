"""Registry benchmark: ReportEndpoints -> Watch propagation, and REST list latency.

`python -m benchmarks.registry [--backends sqlite,etcd] [--agents 10 --services 1000
--endpoints 10 --watchers 20 --deltas 200]` from the repository root. Real store
servers (tests/servers), the real TrustService and control plane over mTLS on
loopback, real clients joined with join tokens. The reference figure beside each
propagation latency is the store's own feed latency measured in the same run
(a raw store watcher on the same revisions): what the control plane adds on top.
"""
