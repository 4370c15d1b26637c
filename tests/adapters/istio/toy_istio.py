"""Our own small Istio stand-ins, so a fresh clone without ../shared covers every code path.

`tests/fixtures/istio/charts/` holds toy `base`, `istiod` and `gateway` charts (CRDs, profiles,
webhooks, a gateway per release) and `tests/fixtures/istio/mirror/` a tiny manifests mirror laid
out like the shared fixtures (`apps/…`, `addons/…`). `package_toy_repo` turns the charts into a
Helm repository (archives + index.yaml with digests) at the versions a test asks for.
"""

from __future__ import annotations

from pathlib import Path

from tests.adapters.toy_repository import package_toy_repository
from tests.fixtures_paths import OWN_FIXTURES

TOY_CHARTS = OWN_FIXTURES / "istio" / "charts"
TOY_MIRROR = OWN_FIXTURES / "istio" / "mirror"
TOY_VERSIONS = ("1.0.0", "1.1.0")


def package_toy_repo(repo: Path, versions: tuple[str, ...] = TOY_VERSIONS) -> Path:
    """Write a chart repository of the toy charts at ``versions`` into ``repo``."""
    return package_toy_repository("istio", repo, {version: version for version in versions})
