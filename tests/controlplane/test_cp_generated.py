"""The committed protobuf/gRPC code is exactly what scripts/gen-proto produces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("meshfed_pb2.py", "meshfed_pb2.pyi", "meshfed_pb2_grpc.py")


def test_generated_code_is_reproducible(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen-proto"), "--out", str(tmp_path)], check=True
    )
    for name in GENERATED:
        fresh = (tmp_path / "federation" / "controlplane" / name).read_text()
        committed = (ROOT / "federation" / "controlplane" / name).read_text()
        assert fresh == committed, f"{name} is stale: run scripts/gen-proto"
