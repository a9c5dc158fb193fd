"""The fake Kubernetes API server's HTTP face: real HTTP/1.1 on loopback.

Paths, verbs, query parameters and error bodies are the API server's, so the
official `kubernetes` client (and `kubectl`-style code) works unchanged:
`/api/v1/...` and `/apis/<group>/<version>/...`, namespaced and cluster-wide
lists, `?watch=true` streams of newline-delimited JSON events over chunked
encoding, `resourceVersion`, `allowWatchBookmarks`, `timeoutSeconds`,
`labelSelector`, `fieldSelector`, `limit`/`continue`, the `status` subresource,
JSON merge patch (strategic merge patch treated as merge patch), and `Status`
bodies with 404/409/410/422 codes. A watch from a compacted version gets an
ERROR event carrying a 410 Status, as the real server sends it.

Test hooks: `compact()` expires every older resourceVersion, `drop_watches()`
cuts every open watch connection, `fail_next()` makes one request fail.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakekube.resources import ResourceType, default_types
from tests.fakekube.selectors import SelectorError, field_selector, label_selector
from tests.fakekube.store import ApiError, Store

MERGE_PATCH_TYPES = (
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


class FakeKube:
    """A running fake API server. Use `with FakeKube() as kube:` or start/stop."""

    def __init__(
        self,
        *,
        bookmark_interval: float = 1.0,
        types: list[ResourceType] | None = None,
        max_history: int = 100_000,
        store: Store | None = None,
    ) -> None:
        # `store`: serve another FakeKube's objects, as API server replicas share one
        # etcd; each replica keeps its own request log, so a test can tell clients apart.
        self.store = store or Store(types or default_types(), max_history=max_history)
        self.bookmark_interval = bookmark_interval
        self.requests: list[tuple[str, str]] = []  # (method, path?query), for assertions
        self._watch_gen = 0
        self._stopping = False
        handler = type("Handler", (_Handler,), {"kube": self})
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._http.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeKube:
        self._thread = threading.Thread(
            target=self._http.serve_forever, daemon=True, kwargs={"poll_interval": 0.05}
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        self.drop_watches()
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> FakeKube:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- test hooks ---------------------------------------------------------------

    def compact(self) -> int:
        return self.store.compact()

    def drop_watches(self) -> None:
        with self.store.changed:
            self._watch_gen += 1
            self.store.changed.notify_all()

    def fail_next(
        self, verb: str, plural: str, code: int = 500, reason: str = "InternalError"
    ) -> None:
        def pred(v: str, rt: ResourceType) -> bool:
            return v == verb and rt.plural == plural

        with self.store.changed:
            self.store.fail_next.append((pred, ApiError(code, reason, "injected failure")))

    def kube_config(self) -> Any:
        """A `kubernetes.client.Configuration` pointing at this server."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return config

    def kubeconfig_yaml(self, context: str = "fake") -> str:
        return json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": context,
                "clusters": [{"name": context, "cluster": {"server": self.url}}],
                "users": [{"name": context, "user": {"token": "fake"}}],
                "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            }
        )


def _parse_path(path: str) -> tuple[str, str, str, str, str, str]:
    """-> (group, version, namespace, plural, name, subresource)."""
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 2:
        group, version, rest = "", parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    namespace = ""
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    return group, version, namespace, plural, name, sub


class _Handler(BaseHTTPRequestHandler):
    kube: FakeKube
    protocol_version = "HTTP/1.1"
    # Headers and body leave in two writes; without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every request.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing -------------------------------------------------------------------

    def _send(self, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, "BadRequest", "the request body is not JSON") from None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.kube.requests.append((method, self.path))
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            if url.path in ("/version", "/version/"):
                self._send(200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake"})
                return
            group, version, ns, plural, name, sub = _parse_path(url.path)
            store = self.kube.store
            if not ns and plural == "namespaces" and name and group == "" and not sub:
                rt = store.type("", "v1", "namespaces")
            else:
                rt = store.type(group, version, plural)
            if ns and not rt.namespaced:
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            if sub and not (sub == "status" and rt.status_subresource):
                raise ApiError(404, "NotFound", "the server could not find the requested resource")
            self._route(method, rt, ns, name, sub == "status", query)
        except ApiError as err:
            self._send(err.code, err.status())
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(
        self, method: str, rt: ResourceType, ns: str, name: str, status: bool, query: dict[str, str]
    ) -> None:
        store = self.kube.store
        if method == "GET" and not name:
            if query.get("watch") in ("true", "1"):
                self._watch(rt, ns, query)
            else:
                self._list(rt, ns, query)
        elif method == "GET":
            self._send(200, store.get(rt, ns, name))
        elif method == "POST" and not name:
            self._send(201, store.create(rt, ns, self._body()))
        elif method == "PUT" and name:
            self._send(200, store.update(rt, ns, name, self._body(), status=status))
        elif method == "PATCH" and name:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype not in MERGE_PATCH_TYPES:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format: {ctype}",
                )
            body = self._body()
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "a merge patch must be an object")
            self._send(200, store.patch(rt, ns, name, body, status=status))
        elif method == "DELETE" and name:
            self._send(200, store.delete(rt, ns, name))
        else:
            raise ApiError(405, "MethodNotAllowed", f"{method} is not supported here")

    def _selectors(self, query: dict[str, str]) -> Callable[[dict[str, Any]], bool]:
        try:
            labels = label_selector(query.get("labelSelector"))
            fields = field_selector(query.get("fieldSelector"))
        except SelectorError as err:
            raise ApiError(400, "BadRequest", str(err)) from None
        return lambda o: labels(o) and fields(o)

    def _list(self, rt: ResourceType, ns: str, query: dict[str, str]) -> None:
        items, rv = self.kube.store.list(rt, ns, self._selectors(query))
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        limit = int(query.get("limit") or 0)
        offset = 0
        if query.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(query["continue"]))
                offset, rv = int(token["o"]), int(token["rv"])
            except (ValueError, KeyError, TypeError):
                raise ApiError(400, "BadRequest", "invalid continue token") from None
            meta["resourceVersion"] = str(rv)
        if limit:
            page = items[offset : offset + limit]
            if offset + limit < len(items):
                meta["continue"] = base64.urlsafe_b64encode(
                    json.dumps({"o": offset + limit, "rv": rv}).encode()
                ).decode()
                meta["remainingItemCount"] = len(items) - offset - limit
            items = page
        self._send(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": meta,
                "items": items,
            },
        )

    # --- watch ----------------------------------------------------------------------

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _watch(self, rt: ResourceType, ns: str, query: dict[str, str]) -> None:
        store, kube = self.kube.store, self.kube
        match = self._selectors(query)
        bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        key = (rt.group, rt.plural)
        start = query.get("resourceVersion", "")
        with store.changed:
            gen = kube._watch_gen
            initial: list[dict[str, Any]] = []
            if start in ("", "0"):  # "most recent": synthetic ADDED for what exists
                items, last = store.list(rt, ns, match)
                initial = [{"type": "ADDED", "object": o} for o in items]
                gone = None
            else:
                try:
                    last = int(start)
                except ValueError:
                    raise ApiError(
                        400, "BadRequest", f"invalid resourceVersion {start!r}"
                    ) from None
                try:
                    store.events_after(last)
                    gone = None
                except ApiError as err:
                    gone = err
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if gone is not None:
                self._chunk({"type": "ERROR", "object": gone.status()})
                return
            for event in initial:
                self._chunk(event)
            next_bookmark = time.monotonic() + kube.bookmark_interval
            while True:
                with store.changed:
                    while True:
                        if kube._watch_gen != gen or kube._stopping:
                            self.close_connection = True
                            return  # dropped: cut without the terminating chunk
                        try:
                            events = [e for e in store.events_after(last) if e.key == key]
                        except ApiError as err:
                            events, gone = [], err
                            break
                        if events:
                            break
                        now = time.monotonic()
                        if now >= deadline or (bookmarks and now >= next_bookmark):
                            break
                        wait_until = min(deadline, next_bookmark) if bookmarks else deadline
                        store.changed.wait(max(0.001, wait_until - now))
                    current = store.rv
                if gone is not None:
                    self._chunk({"type": "ERROR", "object": gone.status()})
                    break
                for e in events:
                    last = e.rv
                    out = _visible(rt, ns, match, e)
                    if out is not None:
                        self._chunk(out)
                now = time.monotonic()
                if bookmarks and now >= next_bookmark:
                    self._chunk(
                        {
                            "type": "BOOKMARK",
                            "object": {
                                "kind": rt.kind,
                                "apiVersion": rt.api_version,
                                "metadata": {"resourceVersion": str(max(last, current))},
                            },
                        }
                    )
                    last = max(last, current)
                    next_bookmark = now + kube.bookmark_interval
                if now >= deadline:
                    break
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    do_GET = lambda self: self._dispatch("GET")  # noqa: E731
    do_POST = lambda self: self._dispatch("POST")  # noqa: E731
    do_PUT = lambda self: self._dispatch("PUT")  # noqa: E731
    do_PATCH = lambda self: self._dispatch("PATCH")  # noqa: E731
    do_DELETE = lambda self: self._dispatch("DELETE")  # noqa: E731


def _visible(
    rt: ResourceType, ns: str, match: Callable[[dict[str, Any]], bool], e: Any
) -> dict[str, Any] | None:
    """The event as a watcher with this namespace/selector sees it (or None).

    An object that starts matching the selector is ADDED for this watcher, one
    that stops matching is DELETED, as the API server's watch cache does.
    """
    obj_ns = (e.obj.get("metadata") or {}).get("namespace", "")
    if ns and obj_ns != ns:
        return None
    now_in = e.type != "DELETED" and match(e.obj)
    was_in = e.old is not None and match(e.old)
    out = dict(e.obj, apiVersion=rt.api_version, kind=rt.kind)
    if e.type == "DELETED":
        return {"type": "DELETED", "object": out} if was_in or match(e.obj) else None
    if now_in and not was_in:
        return {"type": "ADDED", "object": out}
    if now_in and was_in:
        return {"type": "MODIFIED", "object": out}
    if was_in and not now_in:
        return {"type": "DELETED", "object": out}
    return None
