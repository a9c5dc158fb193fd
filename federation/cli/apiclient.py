"""A small synchronous client of the registry's REST API (docs/api.md), for the CLI.

The CLI could call the registry in-process, but driving it over HTTP exactly as
Terraform and curl do keeps the CLI honest: what it can do, the API can do.

Errors come back as `ApiError` (a problem+json answer) or `Unreachable` (no
answer); `command` turns both, and a bad config, into one `error: ...` line on
stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

import httpx

from federation.cli.context import ConfigError, Target, UsageError, resolve

TIMEOUT = 15.0  # seconds per request; CA issuance takes milliseconds, so this is generous


class CliError(Exception):
    """A failure the CLI reports as one line and exit code 1."""


class Unreachable(CliError):
    pass


class ApiError(CliError):
    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status = status
        self.reason = reason
        self.detail = detail
        super().__init__(f"{status} {_phrase(status)}: {detail}")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# Store keys in registry messages read better as the noun they name:
# "already exists: clusters/east" -> 'cluster "east" already exists'.
_KEYED = re.compile(r"^(already exists|not found): ([a-z]+?)s/(\S+)$")


def readable(detail: str) -> str:
    m = _KEYED.match(detail.strip())
    if not m:
        return detail
    what, kind, key = m.groups()
    return f'{kind} "{key}" {what}'


class Client:
    def __init__(self, target: Target, *, timeout: float = TIMEOUT) -> None:
        self.target = target
        headers = {"Accept": "application/json", "User-Agent": "meshfed-cli"}
        if target.token:
            headers["Authorization"] = f"Bearer {target.token}"
        self._http = httpx.Client(base_url=target.registry, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unreachable(
                f"registry {self.target.registry} unreachable: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            raise _error(response)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def text(self, path: str) -> str:
        return self.request("GET", path).text

    def post(self, path: str, body: Any = None) -> Any:
        response = self.request("POST", path, json=body)
        return response.json() if response.content else None

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body).json()

    def delete(self, path: str) -> None:
        self.request("DELETE", path)

    def find(self, path: str) -> Any | None:
        """GET, or None on 404."""
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, path: str, **params: Any) -> list[Any]:
        """Every item of a paginated list (follows `continue`)."""
        return list(self._pages(path, params))

    def _pages(self, path: str, params: dict[str, Any]) -> Iterator[Any]:
        query = {k: v for k, v in params.items() if v is not None}
        query["limit"] = 500
        while True:
            page = self.get(path, **query)
            yield from page.get("items", [])
            token = page.get("continue")
            if not token:
                return
            query["continue"] = token


def _error(response: httpx.Response) -> ApiError:
    reason, detail = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        reason = str(body.get("reason", ""))
        detail = str(body.get("detail") or body.get("title") or "")
    if not detail:
        detail = response.text.strip()[:200] or response.reason_phrase
    if response.status_code == 401 and "token" not in detail.lower():
        detail += " (check --token-file, MESHFED_TOKEN or the context's token-file)"
    return ApiError(response.status_code, reason, readable(detail))


def connect(ns: argparse.Namespace) -> Client:
    return Client(resolve(ns))


Handler = Callable[[argparse.Namespace], int]


def command(fn: Handler) -> Handler:
    """Run a handler; report API, connection and config failures as one line, exit 1
    (a bad MESHFED_REGISTRY: exit 2)."""

    @functools.wraps(fn)
    def run(ns: argparse.Namespace) -> int:
        try:
            return fn(ns)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except (CliError, ConfigError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return run
