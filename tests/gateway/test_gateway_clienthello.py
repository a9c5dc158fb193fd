"""ClientHello parser: real hellos, fragmentation, a malformed corpus, properties, fuzz."""

from __future__ import annotations

import random

import pytest
from gateway_testlib import (
    alpn_ext,
    client_hello_body,
    ext,
    handshake,
    handshake_payload,
    real_client_hello,
    record,
    reframe,
    sni_ext,
    vec,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eastwest_gateway.clienthello import (
    MAX_CLIENT_HELLO_LEN,
    NEED_MORE,
    ClientHello,
    ClientHelloParser,
    parse_client_hello,
)
from eastwest_gateway.errors import (
    ClientHelloError,
    GatewayError,
    MalformedClientHelloError,
    NotTLSError,
    OversizedClientHelloError,
)

label = st.from_regex(r"[a-z][a-z0-9-]{0,14}[a-z0-9]", fullmatch=True)
hostnames = st.lists(label, min_size=1, max_size=6).map(".".join)
alpn_names = st.lists(
    st.from_regex(r"[a-zA-Z0-9/.\-]{1,16}", fullmatch=True), min_size=1, max_size=5
)


def feed_chunks(data: bytes, cuts: list[int]) -> ClientHello:
    parser = ClientHelloParser()
    points = sorted({c for c in cuts if 0 < c < len(data)})
    start = 0
    result: object = NEED_MORE
    for end in [*points, len(data)]:
        assert result is NEED_MORE
        result = parser.feed(data[start:end])
        start = end
    assert isinstance(result, ClientHello)
    return result


def test_real_client_hello_sni_and_alpn() -> None:
    hello = real_client_hello("echo.demo.svc.clusterset.local", ["h2", "http/1.1"])
    result = parse_client_hello(hello)
    assert result == ClientHello(
        sni="echo.demo.svc.clusterset.local", alpn=("h2", "http/1.1"), legacy_version=0x0303
    )


def test_istio_sni_and_no_alpn() -> None:
    result = parse_client_hello(real_client_hello("outbound_.8443_._.echo.demo.svc.cluster.local"))
    assert isinstance(result, ClientHello)
    assert result.sni == "outbound_.8443_._.echo.demo.svc.cluster.local"
    assert result.alpn == ()


def test_no_sni() -> None:
    result = parse_client_hello(real_client_hello(None))
    assert isinstance(result, ClientHello) and result.sni is None


def test_one_byte_at_a_time_and_raw_kept() -> None:
    hello = real_client_hello("a.example", ["h2"])
    parser = ClientHelloParser()
    for i in range(len(hello) - 1):
        assert parser.feed(hello[i : i + 1]) is NEED_MORE
    result = parser.feed(hello[-1:])
    assert isinstance(result, ClientHello) and result.sni == "a.example"
    assert parser.raw == hello
    assert parser.feed(b"more") is result  # finished parsers are idempotent


def test_sni_lower_cased() -> None:
    body = client_hello_body(sni_ext(b"Echo.Demo.SVC"))
    result = parse_client_hello(record(handshake(body)))
    assert isinstance(result, ClientHello) and result.sni == "echo.demo.svc"


def test_tls12_hello_without_extensions() -> None:
    result = parse_client_hello(record(handshake(client_hello_body(None))))
    assert result == ClientHello(sni=None, alpn=(), legacy_version=0x0303)


def test_unknown_name_type_ignored() -> None:
    body = client_hello_body(sni_ext(b"x", name_type=7))
    result = parse_client_hello(record(handshake(body)))
    assert isinstance(result, ClientHello) and result.sni is None


def test_hello_at_the_size_limit_accepted_and_one_above_refused() -> None:
    def sized(total: int) -> bytes:
        base = client_hello_body(sni_ext(b"a.b") + ext(21, b""))
        pad = total - 4 - len(base)
        body = client_hello_body(sni_ext(b"a.b") + ext(21, bytes(pad)))
        msg = handshake(body)
        assert len(msg) == total
        return reframe(msg, [10000])

    result = parse_client_hello(sized(MAX_CLIENT_HELLO_LEN))
    assert isinstance(result, ClientHello) and result.sni == "a.b"
    with pytest.raises(OversizedClientHelloError):
        parse_client_hello(sized(MAX_CLIENT_HELLO_LEN + 1))


GOOD = client_hello_body(sni_ext(b"a.b"))

MALFORMED_CORPUS: list[tuple[str, bytes, type[ClientHelloError]]] = [
    ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", NotTLSError),
    ("ssh banner", b"SSH-2.0-OpenSSH_9.2\r\n", NotTLSError),
    ("sslv2 hello", bytes([0x80, 0x2E, 0x01, 0x00, 0x02]), NotTLSError),
    ("alert record", record(b"\x02\x28", content_type=21), NotTLSError),
    ("record major version 2", record(handshake(GOOD), version=b"\x02\x00"), NotTLSError),
    ("zero-length record", record(b""), MalformedClientHelloError),
    ("record above 2^14", bytes([22, 3, 1, 0x40, 0x01]) + bytes(10), MalformedClientHelloError),
    ("server hello type", record(handshake(GOOD, msg_type=2)), MalformedClientHelloError),
    (
        "interleaved alert",
        reframe(handshake(GOOD), [20])[:25] + record(b"\x02\x28", content_type=21),
        MalformedClientHelloError,
    ),
    (
        "body shorter than random",
        record(handshake(b"\x03\x03" + bytes(10))),
        MalformedClientHelloError,
    ),
    (
        "session id of 33 bytes",
        record(handshake(client_hello_body(b"", session_id=bytes(33)))),
        MalformedClientHelloError,
    ),
    (
        "odd cipher suites",
        record(handshake(client_hello_body(b"", suites=b"\x13"))),
        MalformedClientHelloError,
    ),
    (
        "no cipher suites",
        record(handshake(client_hello_body(b"", suites=b""))),
        MalformedClientHelloError,
    ),
    (
        "no compression",
        record(handshake(client_hello_body(b"", compression=b""))),
        MalformedClientHelloError,
    ),
    ("trailing bytes", record(handshake(GOOD + b"\x00")), MalformedClientHelloError),
    (
        "duplicate extension",
        record(handshake(client_hello_body(sni_ext(b"a") + sni_ext(b"b")))),
        MalformedClientHelloError,
    ),
    (
        "extension overrun",
        record(handshake(client_hello_body(b"\x00\x00\x00\x09ab"))),
        MalformedClientHelloError,
    ),
    (
        "two host names",
        record(handshake(client_hello_body(sni_ext(b"a", b"b")))),
        MalformedClientHelloError,
    ),
    (
        "empty host name",
        record(handshake(client_hello_body(sni_ext(b"")))),
        MalformedClientHelloError,
    ),
    (
        "non-ascii host name",
        record(handshake(client_hello_body(sni_ext("é.x".encode())))),
        MalformedClientHelloError,
    ),
    (
        "host with nul",
        record(handshake(client_hello_body(sni_ext(b"a\x00b")))),
        MalformedClientHelloError,
    ),
    (
        "trailing dot",
        record(handshake(client_hello_body(sni_ext(b"a.b.")))),
        MalformedClientHelloError,
    ),
    (
        "empty label",
        record(handshake(client_hello_body(sni_ext(b"a..b")))),
        MalformedClientHelloError,
    ),
    (
        "host of 300 bytes",
        record(handshake(client_hello_body(sni_ext(b"a" * 300)))),
        MalformedClientHelloError,
    ),
    (
        "empty server name list",
        record(handshake(client_hello_body(ext(0, vec(b"", 2))))),
        MalformedClientHelloError,
    ),
    (
        "empty alpn list",
        record(handshake(client_hello_body(ext(16, vec(b"", 2))))),
        MalformedClientHelloError,
    ),
    (
        "empty alpn name",
        record(handshake(client_hello_body(alpn_ext(b"")))),
        MalformedClientHelloError,
    ),
    (
        "alpn trailing",
        record(handshake(client_hello_body(ext(16, vec(vec(b"h2", 1), 2) + b"x")))),
        MalformedClientHelloError,
    ),
    ("declared 1 MiB hello", record(b"\x01\x10\x00\x00" + bytes(100)), OversizedClientHelloError),
    (
        "endless 1-byte records",
        b"".join(record(bytes([b])) for b in b"\x01\x00\x20\x00") + record(b"\x00") * 8000,
        OversizedClientHelloError,
    ),
]


@pytest.mark.parametrize(
    ("data", "error"),
    [pytest.param(d, e, id=name) for name, d, e in MALFORMED_CORPUS],
)
def test_malformed_corpus(data: bytes, error: type[ClientHelloError]) -> None:
    parser = ClientHelloParser()
    with pytest.raises(error):
        parser.feed(data)
    with pytest.raises(error):  # finished parsers keep failing the same way
        parser.feed(b"")


@pytest.mark.parametrize("cut", [1, 3, 5, 9, 40, 60])
def test_truncated_hello_needs_more(cut: int) -> None:
    assert ClientHelloParser().feed(record(handshake(GOOD))[:cut]) is NEED_MORE


def test_non_tls_detected_on_first_byte() -> None:
    with pytest.raises(NotTLSError):
        ClientHelloParser().feed(b"G")


@given(hostnames, alpn_names, st.lists(st.integers(0, 4000), max_size=12))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_real_hello_split_at_arbitrary_points(host: str, alpn: list[str], cuts: list[int]) -> None:
    result = feed_chunks(real_client_hello(host, alpn), cuts)
    assert result.sni == host
    assert result.alpn == tuple(alpn)


@given(
    hostnames,
    st.lists(st.integers(1, 4000), max_size=12),
    st.lists(st.integers(0, 4000), max_size=12),
)
@settings(max_examples=150, deadline=None)
def test_real_hello_across_records(host: str, record_cuts: list[int], feed_cuts: list[int]) -> None:
    payload = handshake_payload(real_client_hello(host, ["h2"]))
    result = feed_chunks(reframe(payload, record_cuts), feed_cuts)
    assert (result.sni, result.alpn) == (host, ("h2",))


def check_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    parser = ClientHelloParser()
    points = sorted({c for c in cuts if 0 < c < len(data)})
    start = 0
    try:
        for end in [*points, len(data)]:
            parser.feed(data[start:end])
            start = end
    except ClientHelloError:
        pass
    except GatewayError as exc:  # pragma: no cover - would be a bug
        raise AssertionError(f"untyped gateway error {exc!r}") from exc


@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=6))
@settings(max_examples=400, deadline=None)
def test_random_bytes_only_typed_errors(data: bytes, cuts: list[int]) -> None:
    check_only_typed_errors(data, cuts)


@given(st.binary(max_size=400))
@settings(max_examples=300, deadline=None)
def test_random_bytes_behind_a_handshake_header(tail: bytes) -> None:
    # exercise the ClientHello body parser rather than just the record check
    check_only_typed_errors(record(handshake(tail)), [])
    check_only_typed_errors(record(handshake(b"\x03\x03" + bytes(32) + tail)), [])


_SEEDS = [
    real_client_hello("echo.demo.svc.clusterset.local", ["h2", "http/1.1"]),
    record(handshake(GOOD)),
]


@given(st.sampled_from(_SEEDS), st.randoms(use_true_random=False), st.integers(1, 8))
@settings(max_examples=300, deadline=None)
def test_mutated_hellos_only_typed_errors(seed: bytes, rnd: random.Random, n: int) -> None:
    check_only_typed_errors(mutate(seed, rnd, n), [rnd.randrange(0, len(seed) + 1)])


def mutate(seed: bytes, rnd: random.Random, n: int) -> bytes:
    data = bytearray(seed)
    for _ in range(n):
        op = rnd.randrange(4)
        i = rnd.randrange(len(data)) if data else 0
        if op == 0 and data:
            data[i] = rnd.randrange(256)
        elif op == 1:
            data[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 5)))
        elif op == 2:
            del data[i : i + rnd.randrange(1, 5)]
        else:
            data = data[:i]
    return bytes(data)


@pytest.mark.fuzz
def test_fuzz_run() -> None:
    """A longer deterministic mutation fuzz run (seeded; 100k inputs, about 1.5 s)."""
    rnd = random.Random(20261126)
    seeds = [*_SEEDS, real_client_hello(None), real_client_hello("x.y", ["a" * 200] * 3)]
    for _ in range(100_000):
        seed = rnd.choice(seeds)
        check_only_typed_errors(mutate(seed, rnd, rnd.randrange(1, 10)), [rnd.randrange(0, 64)])
