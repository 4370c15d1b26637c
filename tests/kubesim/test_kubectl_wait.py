"""`kubectl wait` over many objects: one kubectl process opens one watch per object, one after
another, and closes each once its condition holds.

kubesim only, and as its own process (`meshplane kubesim`, as the benchmarks run it): it used to
stop answering after about ten such watches. Each watch whose client had left ended, at its next
bookmark, in an exception logged as a kubesim bug, whose traceback (every frame's locals, the
stored objects among them) took the event loop seconds to render.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from kubesim.harness import kubesim_process
from tests.kubesim.support import crd, eventually, kubectl_binary

CRD_COUNT = 40
"""Istio has 15 CRDs. With 40 (124 KB each) the old kubesim needed over 100 s of CPU for the
wait, far past its timeout; now the wait takes about 0.1 s per CRD (kubectl's own pace)."""


def _schema(depth: int) -> dict[str, Any]:
    """A nested object schema with descriptions, as generated CRDs have (Istio's are 4 to 160 KB
    and up to 29 levels deep)."""
    if depth == 0:
        return {"type": "string", "description": "A leaf field of the generated schema."}
    return {
        "type": "object",
        "description": f"A level-{depth} object of the generated schema.",
        "properties": {f"field{i}": _schema(depth - 1) for i in range(4)},
    }


def _crds() -> list[dict[str, Any]]:
    made = []
    for number in range(CRD_COUNT):
        body = crd(plural=f"waiters{number}", group="wait.example.com", kind=f"Waiter{number}")
        body["spec"]["versions"][0]["schema"]["openAPIV3Schema"] = _schema(5)
        made.append(body)
    return made


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/kubesim/stats", timeout=10) as resp:
        stats: dict[str, Any] = json.loads(resp.read())
    return stats


def test_kubectl_wait_over_forty_crds_finishes(tmp_path: Path) -> None:
    crds = _crds()
    manifest = tmp_path / "crds.yaml"
    manifest.write_text(yaml.safe_dump_all(crds), encoding="utf-8")
    with kubesim_process(tmp_path / "sim") as sim:
        base = [
            kubectl_binary(),
            f"--kubeconfig={sim.kubeconfig}",
            f"--cache-dir={tmp_path / 'cache'}",
        ]
        applied = subprocess.run(
            [*base, "apply", "--server-side", "-f", str(manifest)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        names = [f"crd/{body['metadata']['name']}" for body in crds]
        waited = subprocess.run(
            [*base, "wait", "--for=condition=Established", *names, "--timeout=60s"],
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert waited.returncode == 0, waited.stderr[-2000:]
        assert waited.stdout.count("condition met") == CRD_COUNT
        # every watch kubectl left is closed, none of them ended in an internal error
        eventually(lambda: _stats(sim.url)["watchers"] == 0)
