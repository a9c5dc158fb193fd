"""Parsing of `etcd://` store URLs, kept apart from the backend so it is pure and testable.

Grammar::

    etcd://host[:port][,host[:port]...][/namespace[/more]][?option=value&...]

- hosts are IPv4 literals, `[IPv6]` literals or DNS names; the port defaults to 2379
  (etcd's IANA-registered client port);
- the path, if any, is a key namespace: `/team-a` stores every key under
  `/team-a/` so several federations (or tests) can share one etcd. Callers never see
  it. One namespace must not be a path prefix of another (`/a` and `/a/b` overlap),
  as with etcd's own `--namespace` proxy;
- options: `cacert`, `cert`, `key` (PEM files; any of them turns TLS on, `cert` and
  `key` go together for mTLS), `servername` (the name to verify in the members'
  certificates, default the first host), `timeout` (seconds per request, default 5).

Every error is a `BadStoreURL` naming the part that is wrong.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from federation.errors import BadStoreURL

DEFAULT_PORT = 2379  # etcd's IANA-registered client port
# etcdctl's default --command-timeout is 5 s: the budget of one request, retries included.
DEFAULT_TIMEOUT = 5.0
OPTIONS = ("cacert", "cert", "key", "servername", "timeout")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_NS_SEGMENT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str  # without brackets for IPv6
    port: int
    kind: str  # "ipv4", "ipv6" or "dns"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if self.kind == "ipv6" else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EtcdURL:
    endpoints: tuple[Endpoint, ...]
    namespace: str  # "" or "/seg[/seg...]/"
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    servername: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def tls(self) -> bool:
        return bool(self.cacert or self.cert or self.key)


def _bad(url: str, what: str) -> BadStoreURL:
    return BadStoreURL(f"store URL {_redact(url)!r}: {what}")


def _redact(url: str) -> str:
    # No secrets are allowed in the URL, but never echo a password if one was typed.
    return re.sub(r"//[^/@]*@", "//***@", url)


def _endpoint(url: str, text: str) -> Endpoint:
    if not text:
        raise _bad(url, "empty endpoint in the host list")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise _bad(url, f"endpoint {text!r}: unclosed '['")
        if rest and not rest.startswith(":"):
            raise _bad(url, f"endpoint {text!r}: expected ':port' after ']'")
        port_text = rest[1:] if rest else ""
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad(url, f"endpoint {text!r}: {host!r} is not an IPv6 address") from None
        kind = "ipv6"
    else:
        host, _, port_text = text.partition(":")
        if ":" in port_text:
            raise _bad(url, f"endpoint {text!r}: put IPv6 addresses in brackets")
        try:
            ipaddress.IPv4Address(host)
            kind = "ipv4"
        except ValueError:
            labels = host.rstrip(".").split(".")
            if not host or not all(_DNS_LABEL.match(label) for label in labels):
                raise _bad(url, f"endpoint {text!r}: bad host {host!r}") from None
            kind = "dns"
    if port_text == "" and text.endswith(":"):
        raise _bad(url, f"endpoint {text!r}: empty port")
    port = DEFAULT_PORT
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise _bad(url, f"endpoint {text!r}: port {port_text!r} is not in 1-65535")
        port = int(port_text)
    return Endpoint(host, port, kind)


def parse(url: str) -> EtcdURL:
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # urllib: "Invalid IPv6 URL" for an unbalanced '[' / ']'
        raise _bad(url, f"{exc} (unbalanced '[' or ']' in the host list)") from None
    if parts.scheme != "etcd":
        raise _bad(url, f"scheme {parts.scheme!r} is not 'etcd'")
    netloc = parts.netloc
    if "@" in netloc:
        raise _bad(url, "credentials in the URL are not supported (use mTLS: cert=, key=)")
    if parts.fragment:
        raise _bad(url, f"unexpected fragment {parts.fragment!r}")
    if not netloc:
        raise _bad(url, "no endpoints (expected etcd://host:port[,host:port...])")
    endpoints = tuple(_endpoint(url, item.strip()) for item in netloc.split(","))
    if len(set(endpoints)) != len(endpoints):
        raise _bad(url, "an endpoint is listed twice")
    path = parts.path.strip("/")
    namespace = ""
    if path:
        for segment in path.split("/"):
            if not _NS_SEGMENT.match(segment):
                raise _bad(
                    url, f"namespace segment {segment!r} (allowed: letters, digits, '.', '_', '-')"
                )
        namespace = f"/{path}/"
    options: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in OPTIONS:
            raise _bad(url, f"unknown option {name!r} (known: {', '.join(OPTIONS)})")
        if name in options:
            raise _bad(url, f"option {name!r} given twice")
        if not value:
            raise _bad(url, f"option {name!r} has no value")
        options[name] = value
    if parts.query and not options:
        raise _bad(url, f"malformed query {parts.query!r}")
    if ("cert" in options) != ("key" in options):
        raise _bad(url, "options 'cert' and 'key' must be given together")
    timeout = DEFAULT_TIMEOUT
    if "timeout" in options:
        try:
            timeout = float(options["timeout"])
        except ValueError:
            timeout = -1.0
        if not 0 < timeout < 3600:
            raise _bad(url, f"option 'timeout' {options['timeout']!r} is not seconds in (0, 3600)")
    return EtcdURL(
        endpoints=endpoints,
        namespace=namespace,
        cacert=options.get("cacert"),
        cert=options.get("cert"),
        key=options.get("key"),
        servername=options.get("servername"),
        timeout=timeout,
    )
