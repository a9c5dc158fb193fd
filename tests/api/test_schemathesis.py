"""Property-based fuzzing of every operation in /openapi.json: no input yields a 5xx.

Bounded (a few examples per operation, no shrinking database) so it stays within
seconds; runs as admin so requests get past authentication into the handlers.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from tests.api.conftest import Api

EXAMPLES_PER_OPERATION = 12


def test_no_operation_returns_a_server_error(api: Api) -> None:
    schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {api.admin_token}"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=api.base_url, headers=headers, timeout=10)
            if response.status_code >= 500:
                where = f"{case.method} {case.formatted_path}"
                failures.append(f"{where} -> {response.status_code}: {response.text[:200]}")

        check()
    assert operations >= 15
    assert not failures, "\n".join(failures[:10])
