"""Our own small Istio stand-ins, so a fresh clone without ../shared covers every code path.

`tests/fixtures/istio/charts/` holds toy `base`, `istiod` and `gateway` charts (CRDs, profiles,
webhooks, a gateway per release) and `tests/fixtures/istio/mirror/` a tiny manifests mirror laid
out like the shared fixtures (`apps/…`, `addons/…`). `package_toy_repo` turns the charts into a
Helm repository (archives + index.yaml with digests) at the versions a test asks for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import helm_python
import yaml

from tests.fixtures_paths import OWN_FIXTURES

TOY_CHARTS = OWN_FIXTURES / "istio" / "charts"
TOY_MIRROR = OWN_FIXTURES / "istio" / "mirror"
TOY_VERSIONS = ("1.0.0", "1.1.0")
CHARTS = ("base", "istiod", "gateway")


def package_toy_repo(repo: Path, versions: tuple[str, ...] = TOY_VERSIONS) -> Path:
    """Write a chart repository of the toy charts at ``versions`` into ``repo``."""
    repo.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, object]]] = {chart: [] for chart in CHARTS}
    for chart in CHARTS:
        for version in versions:
            archive = Path(
                helm_python.package(
                    TOY_CHARTS / chart, destination=repo, version=version, app_version=version
                )
            )
            entries[chart].append(
                {
                    "apiVersion": "v2",
                    "name": chart,
                    "version": version,
                    "appVersion": version,
                    "digest": hashlib.sha256(archive.read_bytes()).hexdigest(),
                    "created": "2026-01-01T00:00:00Z",
                    "urls": [archive.name],
                }
            )
    index = {"apiVersion": "v1", "entries": entries, "generated": "2026-01-01T00:00:00Z"}
    (repo / "index.yaml").write_text(yaml.safe_dump(index), encoding="utf-8")
    return repo
