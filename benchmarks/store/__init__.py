"""Store benchmark: write rate, snapshot time, watch fan-out latency, memory per endpoint.

Run `python -m benchmarks.store [--backends sqlite,postgresql,etcd] [--services 1000
--per-service 100]` from the repository root. Real servers are started with the same
helpers the tests use (tests/servers). Each figure is measured for every backend in
one run, and the typed snapshot is set beside the raw backend read of the same keys
(the reference: what the store costs before meshfed decodes anything).
"""
