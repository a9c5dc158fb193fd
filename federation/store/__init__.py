"""The registry's persistent state behind one `Store` interface and three backends.

`open_store(url)` picks the backend by URL scheme:

- `sqlite:///path/to/registry.db` - the default, one file in the data dir (WAL mode);
- `postgresql://user:pass@host:port/db` - several registries on one database;
- `etcd://host:port[,host:port...]?cacert=F&cert=F&key=F` - an etcd cluster, mTLS optional.

Backends are imported lazily so a SQLite user never needs the etcd client.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from federation.errors import BadStoreURL
from federation.store.backend import Backend
from federation.store.typed import Store, Versioned

__all__ = ["Backend", "Store", "Versioned", "open_backend", "open_store", "url_scheme"]

SCHEMES = ("sqlite", "postgresql", "etcd")


def url_scheme(url: str) -> str:
    """The backend family named by `url`; BadStoreURL naming the URL if unknown."""
    try:
        scheme = urlsplit(url).scheme.split("+", 1)[0]
    except ValueError as exc:  # e.g. an unclosed "[" around an IPv6 host
        raise BadStoreURL(f"store URL {url!r} is malformed: {exc}") from exc
    if scheme == "postgres":
        scheme = "postgresql"
    if scheme not in SCHEMES:
        raise BadStoreURL(
            f"store URL {url!r}: unknown scheme {scheme!r} (expected one of {', '.join(SCHEMES)})"
        )
    return scheme


async def open_backend(url: str) -> Backend:
    """Connect to the backend named by `url` (schema migrated, ready to use)."""
    scheme = url_scheme(url)
    if scheme == "etcd":
        from federation.store.etcd import EtcdBackend

        return await EtcdBackend.open(url)
    from federation.store.sql import SqlBackend

    return await SqlBackend.open(url)


async def open_store(url: str) -> Store:
    return Store(await open_backend(url))
