"""Package our own toy charts into a Helm repository (archives + index.yaml with digests).

A fresh clone without ../shared/fixtures still runs every adapter path against these: each mesh
keeps its toy charts under tests/fixtures/<mesh>/charts and a tiny mirror under .../mirror.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import helm_python
import yaml

from tests.fixtures_paths import OWN_FIXTURES


def toy_mirror(mesh: str) -> Path:
    """The mesh's toy manifests mirror (laid out like the shared fixtures: ``apps/…``)."""
    return OWN_FIXTURES / mesh / "mirror"


def package_toy_repository(mesh: str, repo: Path, versions: Mapping[str, str]) -> Path:
    """Write every toy chart of ``mesh`` at each version (version → appVersion) into ``repo``."""
    repo.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, object]]] = {}
    for chart in sorted(p for p in (OWN_FIXTURES / mesh / "charts").iterdir() if p.is_dir()):
        for version, app_version in versions.items():
            archive = Path(
                helm_python.package(
                    chart, destination=repo, version=version, app_version=app_version
                )
            )
            entries.setdefault(chart.name, []).append(
                {
                    "apiVersion": "v2",
                    "name": chart.name,
                    "version": version,
                    "appVersion": app_version,
                    "digest": hashlib.sha256(archive.read_bytes()).hexdigest(),
                    "created": "2026-01-01T00:00:00Z",
                    "urls": [archive.name],
                }
            )
    index = {"apiVersion": "v1", "entries": entries, "generated": "2026-01-01T00:00:00Z"}
    (repo / "index.yaml").write_text(yaml.safe_dump(index), encoding="utf-8")
    return repo
