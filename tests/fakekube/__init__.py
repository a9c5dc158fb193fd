"""A fake Kubernetes API server for tests: real HTTP, faithful list/watch semantics.

`FakeKube` serves core/v1, discovery.k8s.io/v1, rbac and the MCS CRDs to the
official `kubernetes` client; see `server` for the HTTP surface and `store` for
the resourceVersion / watch / 410 semantics. No kube-apiserver can be installed
on these machines (shared/FINDINGS.md), so this is what the Kubernetes side of
meshfed is tested against; keep it faithful to the real server.
"""

from tests.fakekube.server import FakeKube
from tests.fakekube.store import ApiError

__all__ = ["ApiError", "FakeKube"]
