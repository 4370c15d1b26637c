"""The Meshery contract driven by a client nobody here wrote: grpcurl, reading our .proto file.

grpcurl parses `protos/meshplane/meshery/meshops.proto` itself (no reflection, no code of ours on
the client side) and calls `meshplane adapter istio` against kubesim: MeshName,
SupportedOperations, an ApplyOperation that installs, and one that is refused. `make grpcurl`
builds it into .tools/bin; without it (no Go, or no module proxy) this test skips, saying so.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import grpc.aio
import pytest

from kubesim.harness import RunningSim
from meshplane.adapter.v1 import adapter_pb2 as pb
from meshplane.adapter.v1 import adapter_pb2_grpc as pb_grpc
from tests.conformance.adapters_under_test import (
    ACCEPT_LOOPBACK_KUBECONFIGS,
    TOY_ISTIO,
    ServerFactory,
    running_adapter,
)
from tests.fixtures_paths import PROJECT_ROOT

GRPCURL = PROJECT_ROOT / ".tools" / "bin" / "grpcurl"
PROTO = "meshplane/meshery/meshops.proto"


async def grpcurl(address: str, method: str, request: dict[str, Any]) -> tuple[int, str, str]:
    """Run grpcurl once: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        str(GRPCURL),
        "-plaintext",
        "-emit-defaults",
        "-max-time",
        "30",
        "-import-path",
        str(PROJECT_ROOT / "protos"),
        "-proto",
        PROTO,
        "-d",
        "@",
        address,
        f"meshes.MeshService/{method}",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(json.dumps(request).encode()), 40)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def call(address: str, method: str, request: dict[str, Any] | None = None) -> Any:
    code, out, err = await grpcurl(address, method, request or {})
    assert code == 0, err
    return json.loads(out)


@pytest.mark.timeout(120)
async def test_grpcurl_registers_installs_and_is_refused_over_the_meshery_contract(
    kubesim: RunningSim, tmp_path: Path, static_http_server: ServerFactory
) -> None:
    if not GRPCURL.is_file():
        pytest.skip(f"{GRPCURL} is not built: `make grpcurl` needs Go and the Go module proxy")
    with running_adapter(
        "istio",
        TOY_ISTIO(tmp_path),
        sim=kubesim,
        tmp_path=tmp_path,
        serve=static_http_server,
        extra_args=ACCEPT_LOOPBACK_KUBECONFIGS,
    ) as adapter:
        assert await call(adapter.address, "MeshName") == {"name": "ISTIO"}

        supported = await call(adapter.address, "SupportedOperations")
        assert supported["error"] == ""
        categories = {op["key"]: op["category"] for op in supported["ops"]}
        assert categories["install"] == "INSTALL"
        assert categories["bookinfo"] == "SAMPLE_APPLICATION"
        assert categories["validate"] == "VALIDATE"

        operation_id = str(uuid.uuid4())
        kubeconfig = kubesim.kubeconfig.read_text(encoding="utf-8")
        applied = await call(
            adapter.address,
            "ApplyOperation",
            {
                "opName": "install",
                "operation_id": operation_id,
                "version": "1.1.0",
                "kube_configs": [kubeconfig],
                "username": "grpcurl",
            },
        )
        assert applied == {"operationId": operation_id, "error": ""}

        async with grpc.aio.insecure_channel(adapter.address) as channel:
            native = pb_grpc.MeshAdapterServiceStub(channel)
            async with asyncio.timeout(60):
                while True:
                    reply = await native.GetOperation(
                        pb.GetOperationRequest(operation_id=operation_id)
                    )
                    if reply.operation.end_time.seconds:
                        break
                    await asyncio.sleep(0.05)
        operation = reply.operation
        assert operation.state == pb.OPERATION_STATE_SUCCEEDED, operation.error
        assert (operation.mesh_version, operation.username) == ("1.1.0", "grpcurl")
        assert list(operation.clusters) == ["kubesim"]

        code, _, err = await grpcurl(
            adapter.address, "ApplyOperation", {"opName": "nope", "operation_id": "x-1"}
        )
        assert code != 0
        assert "Code: NotFound" in err
        assert "opName: 'nope' is not in the istio catalogue" in err
        assert "SupportedOperations" in err
