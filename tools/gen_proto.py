"""Regenerate the gRPC stubs in fxgate_contract/_proto from proto/ (one command, reproducible).

grpc_tools emits absolute imports (``from fxgate.v1 import gateway_pb2``); the
stubs live inside the ``fxgate_contract`` package, so the import is rewritten to a
relative one. Run: ``python tools/gen_proto.py [OUT_DIR]``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO = "fxgate/v1/gateway.proto"
STUBS = ("gateway_pb2.py", "gateway_pb2.pyi", "gateway_pb2_grpc.py")


def generate(out_dir: Path) -> None:
    """Write the three stub files into out_dir."""
    with tempfile.TemporaryDirectory() as tmp:
        include = Path(protoc.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--grpc_python_out={tmp}",
            str(ROOT / "proto" / PROTO),
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        for name in STUBS:
            text = (Path(tmp) / "fxgate" / "v1" / name).read_text()
            text = text.replace("from fxgate.v1 import gateway_pb2", "from . import gateway_pb2")
            (out_dir / name).write_text(text)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "fxgate_contract" / "_proto")
