"""Every test gets its own client configuration directory (what `meshplane up` registers and
the CLI reads), and no token from the developer's environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.client.contexts import CONTEXT_ENV
from coordinator.client.credentials import CONFIG_DIR_ENV, TOKEN_ENV, TOKEN_FILE_ENV


@pytest.fixture(autouse=True)
def isolated_client_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """``$MESHPLANE_CONFIG_DIR`` pointed at a fresh directory (inherited by child processes)."""
    directory = tmp_path_factory.mktemp("client-config")
    monkeypatch.setenv(CONFIG_DIR_ENV, str(directory))
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.delenv(TOKEN_FILE_ENV, raising=False)
    monkeypatch.delenv(CONTEXT_ENV, raising=False)
    return directory
