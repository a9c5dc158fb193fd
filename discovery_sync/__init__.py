"""Endpoint sources (Kubernetes, static files), the sync agent and clusterset.local DNS.

Layout: `sources/` turns what a cluster runs into meshfed records (pure parsers plus
thin watch shells), `dns/` answers `clusterset.local` (a pure answer builder and an
asyncio server), `kube/` talks to the Kubernetes API (watch loop, MCS sink), `agent`
composes them with the registry client. The Kubernetes client may be imported only
under this package.
"""
