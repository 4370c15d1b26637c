"""Where the control plane's binaries are (`make kube` builds them into .tools/kube/bin)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BIN_DIR_ENV = "MESHPLANE_KUBE_BIN"
DEFAULT_BIN_DIR = Path(__file__).resolve().parent.parent / ".tools" / "kube" / "bin"
NAMES: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
)
KUBERNETES_VERSION = "v1.37.2"


class MissingBinaries(RuntimeError):
    """Some binary is not there; the message says which and how to build them."""


@dataclass(frozen=True, kw_only=True)
class KubeBinaries:
    directory: Path

    def path(self, name: str) -> Path:
        return self.directory / name

    @property
    def kubectl(self) -> Path:
        return self.directory / "kubectl"


def bin_dir() -> Path:
    """``$MESHPLANE_KUBE_BIN`` when set, else ``.tools/kube/bin`` of this checkout."""
    configured = os.environ.get(BIN_DIR_ENV)
    return Path(configured) if configured else DEFAULT_BIN_DIR


def find_binaries(directory: Path | None = None) -> KubeBinaries:
    """The binaries in ``directory`` (default `bin_dir()`); MissingBinaries names the absent."""
    where = directory or bin_dir()
    missing = [name for name in NAMES if not os.access(where / name, os.X_OK)]
    if missing:
        raise MissingBinaries(
            f"{', '.join(missing)} not found in {where} (build them with `make kube`, "
            f"which needs Go; or set ${BIN_DIR_ENV})"
        )
    return KubeBinaries(directory=where)
