"""Certificates, configuration files and processes of the gateway benchmark.

One backend nginx serves the same two files (``/`` 64 bytes, ``/big.bin`` 64 MiB)
over TLS (for passthrough targets and direct) and, with client-certificate
verification, over mTLS (``direct-mtls``, the terminate reference), and in
plaintext (what the terminating proxies forward to). Proxies under test:

* haproxy     -- ``mode tcp``, routes on ``req.ssl_sni`` (passthrough)
* nginx       -- ``stream`` + ``ssl_preread`` (passthrough)
* nginx-term  -- ``stream`` terminating mTLS (``ssl_verify_client on``), plaintext to the backend
* meshfed     -- passthrough route (epoll + splice relay)
* meshfed-term -- terminate route (client certificate verified, SPIFFE ID authorised)

wrk cannot present a client certificate, so the terminate targets are driven by
wrk through a client-side haproxy (``mode tcp``, ``server ... ssl crt client.pem``)
that opens one mTLS connection per wrk connection: the same client pipeline for
``direct-mtls``, ``nginx-term`` and ``meshfed-term``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

SNI = "localhost"
TERM_SNI = "term.localhost"
CLIENT_ID = "spiffe://bench.meshfed/ns/bench/sa/client"
BIG = 64 << 20


@dataclass(frozen=True)
class Target:
    name: str
    group: str  # "passthrough" or "terminate"
    port: int  # where clients with their own TLS connect
    wrk_port: int  # where wrk connects (the mTLS sidecar for terminate targets)
    proc: str | None  # process whose CPU is the proxy's; None for direct


@dataclass
class Bench:
    work: Path
    targets: dict[str, Target] = field(default_factory=dict)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def pid(self, target: Target) -> int | None:
        return None if target.proc is None else self.procs[target.proc].pid

    def stop(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(work: Path) -> None:
    """A CA, a server certificate (backend and both terminating proxies) and a client SVID."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _openssl(
        "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=meshfed bench CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=work,
    )  # fmt: skip
    leaves = {
        "server": f"DNS:{SNI},DNS:{TERM_SNI},URI:spiffe://bench.meshfed/gateway/bench",
        "client": f"URI:{CLIENT_ID}",
    }
    for name, san in leaves.items():
        (work / f"{name}.ext").write_text(
            f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n"
        )
        _openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=work)  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
            "-extfile", f"{name}.ext",
            cwd=work,
        )  # fmt: skip
    bundle = (work / "client.pem").read_text() + (work / "client.key").read_text()
    (work / "client-bundle.pem").write_text(bundle)


def _nginx_head(work: Path, name: str, stream: bool) -> str:
    load = "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n" if stream else ""
    return (
        f"{load}daemon off; master_process off; worker_processes 1;\n"
        f"error_log {work}/{name}.err; pid {work}/{name}.pid;\n"
        "events { worker_connections 8192; }\n"
    )


def start(work: Path, meshfed_relay: str = "auto") -> Bench:
    """Write every configuration, start every process, wait for every port."""
    make_pki(work)
    (work / "www").mkdir()
    (work / "www" / "index.html").write_text("x" * 64)
    with (work / "www" / "big.bin").open("wb") as f:
        f.write(os.urandom(1 << 20) * (BIG >> 20))
    p = {
        k: free_port()
        for k in (
            "tls", "mtls", "plain", "haproxy", "nginx", "nginx-term", "meshfed",
            "side-direct-mtls", "side-nginx-term", "side-meshfed-term",
        )
    }  # fmt: skip
    tls = f"ssl_certificate {work}/server.pem; ssl_certificate_key {work}/server.key;"
    (work / "backend.conf").write_text(
        _nginx_head(work, "backend", stream=False)
        + f"""http {{ access_log off; keepalive_requests 10000000; root {work}/www;
  server {{ listen 127.0.0.1:{p["tls"]} ssl; {tls} }}
  server {{ listen 127.0.0.1:{p["mtls"]} ssl; {tls}
           ssl_verify_client on; ssl_client_certificate {work}/ca.pem; }}
  server {{ listen 127.0.0.1:{p["plain"]}; }} }}
"""
    )
    (work / "proxy.conf").write_text(
        _nginx_head(work, "proxy", stream=True)
        + f"""stream {{
  map $ssl_preread_server_name $up {{ {SNI} 127.0.0.1:{p["tls"]}; }}
  server {{ listen 127.0.0.1:{p["nginx"]}; ssl_preread on; proxy_pass $up; }}
  server {{ listen 127.0.0.1:{p["nginx-term"]} ssl; {tls}
           ssl_verify_client on; ssl_client_certificate {work}/ca.pem;
           proxy_pass 127.0.0.1:{p["plain"]}; }} }}
"""
    )
    (work / "haproxy.cfg").write_text(f"""global
  nbthread 1
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:{p["haproxy"]}
  tcp-request inspect-delay 5s
  tcp-request content accept if {{ req.ssl_hello_type 1 }}
  use_backend be if {{ req.ssl_sni -i {SNI} }}
backend be
  server s1 127.0.0.1:{p["tls"]}
""")
    # The mTLS client for wrk: one TLS connection (full handshake) per wrk connection.
    side = ["global\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n"
            "  timeout client 60s\n  timeout server 60s\n"]  # fmt: skip
    for name, port in (
        ("direct-mtls", p["mtls"]),
        ("nginx-term", p["nginx-term"]),
        ("meshfed-term", p["meshfed"]),
    ):
        side.append(
            f"listen {name}\n  bind 127.0.0.1:{p['side-' + name]}\n"
            f"  server s 127.0.0.1:{port} ssl crt {work}/client-bundle.pem"
            f" ca-file {work}/ca.pem verify required verifyhost {TERM_SNI}"
            f" sni str({TERM_SNI}) no-ssl-reuse\n"
        )
    (work / "sidecar.cfg").write_text("".join(side))
    (work / "routes.yaml").write_text(
        f"tls: {{cert: {work}/server.pem, key: {work}/server.key, ca: {work}/ca.pem}}\n"
        "routes:\n"
        f'  - {{sni: "{SNI}", backend: "127.0.0.1:{p["tls"]}", mode: passthrough}}\n'
        f'  - {{sni: "{TERM_SNI}", backend: "127.0.0.1:{p["plain"]}", mode: terminate,'
        f' allow: ["{CLIENT_ID}"]}}\n'
    )
    bench = Bench(work)
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root}
    cmds = {
        "backend": ["nginx", "-c", str(work / "backend.conf"), "-p", str(work)],
        "nginx": ["nginx", "-c", str(work / "proxy.conf"), "-p", str(work)],
        "haproxy": ["haproxy", "-db", "-f", str(work / "haproxy.cfg")],
        "sidecar": ["haproxy", "-db", "-f", str(work / "sidecar.cfg")],
        "meshfed": [
            sys.executable, "-m", "eastwest_gateway.main", "--cluster", "bench",
            "--routes", str(work / "routes.yaml"), "--listen", f"127.0.0.1:{p['meshfed']}",
            "--relay", meshfed_relay, "--log-level", "WARNING",
        ],
    }  # fmt: skip
    try:
        for name, cmd in cmds.items():
            bench.procs[name] = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL)
        for key, proc in (
            ("tls", "backend"), ("mtls", "backend"), ("plain", "backend"),
            ("haproxy", "haproxy"), ("nginx", "nginx"), ("nginx-term", "nginx"),
            ("meshfed", "meshfed"), ("side-direct-mtls", "sidecar"),
        ):  # fmt: skip
            wait_port(p[key], bench.procs[proc])
    except BaseException:
        bench.stop()
        raise
    for t in (
        Target("direct", "passthrough", p["tls"], p["tls"], None),
        Target("haproxy", "passthrough", p["haproxy"], p["haproxy"], "haproxy"),
        Target("nginx", "passthrough", p["nginx"], p["nginx"], "nginx"),
        Target("meshfed", "passthrough", p["meshfed"], p["meshfed"], "meshfed"),
        Target("direct-mtls", "terminate", p["mtls"], p["side-direct-mtls"], None),
        Target("nginx-term", "terminate", p["nginx-term"], p["side-nginx-term"], "nginx"),
        Target("meshfed-term", "terminate", p["meshfed"], p["side-meshfed-term"], "meshfed"),
    ):
        bench.targets[t.name] = t
    return bench
