"""The registry's service layer: what the REST API and the gRPC control plane call.

No web framework and no gRPC here: `trust` (CAs, join tokens, SVIDs, bundles),
`service` (clusters, links, services, topology), `auth` (API tokens and roles),
`audit` (the audit trail), `pages` (list pagination) and `serve` (the
`meshfed serve` process that composes them). Every method takes the time as a
parameter and raises only `federation.errors`.
"""
