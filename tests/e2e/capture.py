"""Packet capture for the e2e drills: raw AF_PACKET frames of one interface in one
namespace, their TCP segments, and TLS record parsing of a TCP byte stream."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass

from tests.e2e.netns import enter
from tests.e2e.process import E2EError

ETH_P_ALL = 0x0003


@dataclass(frozen=True, slots=True)
class Segment:
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


class Capture:
    """A raw AF_PACKET capture of one interface in one namespace (no tcpdump needed)."""

    def __init__(self, ns: str, ifname: str) -> None:
        self.ns, self.ifname = ns, ifname
        self.frames: list[bytes] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> Capture:
        self._thread.start()
        if not self._ready.wait(5):
            raise E2EError(f"capture on {self.ns}/{self.ifname} did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        try:
            enter(self.ns)
            with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)) as s:
                s.bind((self.ifname, 0))
                s.settimeout(0.2)
                self._ready.set()
                while not self._stop.is_set():
                    with contextlib.suppress(TimeoutError):
                        self.frames.append(s.recv(65535))
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    def tcp_segments(self) -> list[Segment]:
        out = []
        for f in self.frames:
            if len(f) < 34 or f[12:14] != b"\x08\x00":
                continue
            ip = f[14:]
            ihl = (ip[0] & 0x0F) * 4
            total = struct.unpack("!H", ip[2:4])[0]
            if ip[9] != 6:
                continue
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            tcp = ip[ihl:total]
            sport, dport = struct.unpack("!HH", tcp[:4])
            offset = (tcp[12] >> 4) * 4
            out.append(Segment((src, sport), (dst, dport), bytes(tcp[offset:])))
        return out


def tls_records(stream: bytes) -> tuple[list[int], bytes]:
    """Split a TCP byte stream into TLS records: (content types, bytes that are not TLS)."""
    types: list[int] = []
    i = 0
    while i + 5 <= len(stream):
        ctype, major = stream[i], stream[i + 1]
        length = struct.unpack("!H", stream[i + 3 : i + 5])[0]
        if ctype not in (20, 21, 22, 23) or major != 3:
            return types, stream[i:]
        types.append(ctype)
        i += 5 + length
    return types, b""  # a record cut by the end of the capture is still TLS
