"""`meshfed dns`: serves an imports file, follows its changes, names bad flags."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from pathlib import Path

import dns.asyncquery
import dns.message
import pytest
from discovery_views import clusterset, view

from discovery_sync.dns_main import parser, serve
from discovery_sync.dns_main import run as dns_main
from discovery_sync.imports_file import dump

NAME = "echo.demo.svc.clusterset.local"


@pytest.mark.parametrize("extra", [[], ["--udp-on-loop"]])
async def test_serves_the_file_and_reloads_it(tmp_path: Path, extra: list[str]) -> None:
    imports = tmp_path / "imports.yaml"
    imports.write_text(dump(view(clusterset())))
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = parser().parse_args(["--imports", str(imports), "--listen", f"127.0.0.1:{port}", *extra])
    ready = asyncio.Event()
    task = asyncio.create_task(serve(args, ready))
    try:
        await asyncio.wait_for(ready.wait(), 5)
        q = dns.message.make_query(NAME, "A")
        r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
        assert [rd.to_text() for rd in r.answer[0]] == ["198.18.0.10"]
        imports.write_text(dump(view(clusterset(ips=("198.18.0.77",)))))

        async def reloaded() -> None:
            while True:
                r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2)
                if [rd.to_text() for rd in r.answer[0]] == ["198.18.0.77"]:
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(reloaded(), 5)
        imports.write_text("services: [oops")  # a broken file keeps the last good zone
        await asyncio.sleep(1.2)
        r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, timeout=2)
        assert [rd.to_text() for rd in r.answer[0]] == ["198.18.0.77"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_bad_flags_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, flag in ((["--listen", "localhost"], "--listen"), (["--zone", "a b"], "--zone")):
        with pytest.raises(SystemExit) as exit_:
            dns_main(["--imports", "x.yaml", *argv])
        assert exit_.value.code == 2 and flag in capsys.readouterr().err
    assert dns_main(["--imports", "/nonexistent/imports.yaml"]) == 1
    assert "cannot read" in capsys.readouterr().err
