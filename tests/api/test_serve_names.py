"""`meshfed serve --server-name`: the names agents dial are in the control plane's cert."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509

from tests.servers.ports import free_port, grpc_port_pair

ROOT = Path(__file__).resolve().parents[2]


def serve(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_")}
    return subprocess.Popen(
        [sys.executable, "-m", "federation.cli", "serve", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def served_certificate(port: int, timeout: float = 30) -> x509.Certificate:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only reading the certificate's names here
    deadline = time.monotonic() + timeout
    while True:
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
                context.wrap_socket(raw) as tls,
            ):
                der = tls.getpeercert(binary_form=True)
                assert der is not None
                return x509.load_der_x509_certificate(der)
        except OSError:
            assert time.monotonic() < deadline, "control plane never answered TLS"
            time.sleep(0.2)


def test_server_names_land_in_the_control_plane_certificate(tmp_path: Path) -> None:
    grpc = grpc_port_pair()
    api = free_port()
    while api in (grpc, grpc + 1):
        api = free_port()
    proc = serve("--data-dir", str(tmp_path), "--api", f"127.0.0.1:{api}",
                 "--grpc", f"127.0.0.1:{grpc}", "--lease-ttl", "5",
                 "--server-name", "meshfed-registry.meshfed-system.svc",
                 "--server-name", "203.0.113.7")  # fmt: skip
    try:
        try:
            cert = served_certificate(grpc)
        except AssertionError:
            proc.terminate()
            raise AssertionError(f"serve output: {proc.communicate(timeout=30)[0]}") from None
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "meshfed-registry.meshfed-system.svc" in san.get_values_for_type(x509.DNSName)
        assert "203.0.113.7" in [str(a) for a in san.get_values_for_type(x509.IPAddress)]
        assert "203.0.113.7" not in san.get_values_for_type(x509.DNSName)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0


def test_bad_lease_ttl_exits_2_naming_the_value(tmp_path: Path) -> None:
    proc = serve("--data-dir", str(tmp_path), "--lease-ttl", "0.1")
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "'0.1'" in out


def test_a_taken_grpc_port_is_one_clear_error_line_not_a_traceback(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve("--data-dir", str(tmp_path), "--api", f"127.0.0.1:{free_port()}",
                     "--grpc", f"127.0.0.1:{port}")  # fmt: skip
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1, out
    assert "Traceback" not in out
    assert f"cannot listen on 127.0.0.1:{port}" in out
