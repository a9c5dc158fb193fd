"""The Kubernetes side: `api` (the official client behind a small typed facade),
`informer` (list + watch loop), `source` (exports from a cluster), `plan` (pure:
desired MCS objects and the writes that reach them), `sink` (applies the plan).
"""
