"""Generate the gRPC stubs of the lifecycle manager from proto/.

The .proto files live in proto/shim/api/v1/ (proto package berth.shim.v1), so the
Python modules land in shim/api/v1/ and import each other as `shim.api.v1.X_pb2`.
Runs only when a stub is older than its .proto file.
"""

from __future__ import annotations

from pathlib import Path


def _stale(protos: list[Path], out_dir: Path) -> bool:
    for proto in protos:
        stub = out_dir / (proto.stem + "_pb2.py")
        if not stub.exists() or stub.stat().st_mtime < proto.stat().st_mtime:
            return True
    return False


def generate(root: Path) -> None:
    proto_root = root / "proto"
    protos = sorted(proto_root.glob("shim/api/v1/*.proto"))
    if not protos:
        return
    out_dir = root / "shim" / "api" / "v1"
    if not _stale(protos, out_dir):
        return
    import grpc_tools
    from grpc_tools import protoc  # build-time only

    out_dir.mkdir(parents=True, exist_ok=True)
    for pkg in (root / "shim" / "api", out_dir):
        (pkg / "__init__.py").touch()
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{proto_root}",
        f"-I{well_known}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        *[str(p) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on " + " ".join(p.name for p in protos))
