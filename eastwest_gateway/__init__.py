"""The data plane: east-west gateways that carry cross-cluster traffic over mTLS.

Not built yet (issue 5). Imports only trust_bundle and federation.model/client.
"""
