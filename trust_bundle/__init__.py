"""Certificates and trust for the federation.

Pure `cryptography` code: the federation root, per-cluster intermediates,
X.509-SVIDs, SPIFFE bundles and staged root rotation. This package imports no
other meshfed package (checked by tests/test_import_contract.py).
"""
