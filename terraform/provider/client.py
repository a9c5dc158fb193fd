"""A small, synchronous client for the registry's dashboard REST API (`/api/v1`).

Why this module exists: every resource and data source talks to the registry the
same way (Bearer token, JSON bodies, problem+json errors), and Terraform's plugin
must start fast, so this uses the standard library's `urllib.request` (imported
only when the first request is made) rather than an HTTP library. Errors keep the
API's own `detail` and `field`, so the registry's validation message reaches the
Terraform user unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

# Long enough for a registry under load, short enough that a wrong endpoint fails a plan.
DEFAULT_TIMEOUT = 30.0
USER_AGENT = "terraform-provider-meshfed/0.1"


class ApiError(Exception):
    """An error answer (or no answer) from the registry."""

    def __init__(
        self, status: int, reason: str, detail: str, field: str | None = None, title: str = ""
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.field = field
        self.title = title or reason

    @property
    def not_found(self) -> bool:
        return self.status == 404

    def summary(self) -> str:
        """One line for a diagnostic's summary, e.g. `meshfed API: Invalid request (422)`."""
        if self.status == 0:
            return "meshfed API unreachable"
        return f"meshfed API: {self.title} ({self.status} {self.reason})"


def problem_error(status: int, body: bytes) -> ApiError:
    """An ApiError from an error response: problem+json if it is one, the raw text if not."""
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        detail = str(doc.get("detail") or doc.get("title") or text)
        field = doc.get("field")
        return ApiError(
            status,
            str(doc.get("reason") or "Error"),
            detail,
            field if isinstance(field, str) else None,
            str(doc.get("title") or ""),
        )
    return ApiError(status, "Error", text.strip() or f"HTTP {status}")


def path(*segments: str) -> str:
    """`/api/v1/<seg>/<seg>` with each segment percent-encoded (names come from users)."""
    return "/api/v1/" + "/".join(quote(s, safe="") for s in segments)


@dataclass(frozen=True, slots=True)
class Client:
    """The registry at `endpoint` (e.g. `http://127.0.0.1:9470`), as the holder of `token`."""

    endpoint: str
    token: str | None = None
    ca_file: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    def request(
        self,
        method: str,
        url_path: str,
        body: Any = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """Send one request; the decoded JSON answer (None for 204), or ApiError."""
        import urllib.error  # lazy: see the module docstring
        import urllib.request

        url = self.endpoint.rstrip("/") + url_path
        if query:
            url += "?" + urlencode(query)
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls()) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise problem_error(exc.code, exc.read()) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, "Unreachable", f"{method} {url}: {reason}") from None
        return json.loads(raw) if raw else None

    def _tls(self) -> Any:
        """An SSL context trusting `ca_file` for https endpoints (None: the defaults)."""
        if not self.endpoint.startswith("https:"):
            return None
        import ssl

        # Passed explicitly: these machines set SSL_CERT_FILE, which must not win.
        return ssl.create_default_context(cafile=self.ca_file) if self.ca_file else None

    def list_all(self, url_path: str, query: dict[str, str] | None = None) -> list[Any]:
        """Every item of a paged list, following `continue` tokens."""
        items: list[Any] = []
        params = dict(query or {})
        while True:
            page = self.request("GET", url_path, query=params)
            items.extend(page.get("items", []))
            token = page.get("continue")
            if not token:
                return items
            params["continue"] = token

    def get_or_none(self, url_path: str, query: dict[str, str] | None = None) -> Any:
        """GET, but None where the object does not exist (drift: deleted outside Terraform)."""
        try:
            return self.request("GET", url_path, query=query)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
