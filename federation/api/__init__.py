"""The federation dashboard REST API (FastAPI), served by `meshfed serve` under /api/v1.

The only package allowed to import FastAPI/Starlette (tests/test_import_contract.py).
It is a thin translation layer: pydantic models in `schemas`, bearer tokens and
roles in `auth`, the one place `federation.errors` become problem+json responses
in `errors`, Prometheus instrumentation in `metrics`, one `routes_*` module per
resource family; the rules themselves live in `federation.registry`.
"""

from federation.api.app import create_app

__all__ = ["create_app"]
