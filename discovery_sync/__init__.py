"""Endpoint sources (Kubernetes, static files), the sync agent and clusterset.local DNS.

Not built yet (issue 6). The Kubernetes client may be imported only under this package.
"""
