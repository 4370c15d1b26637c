"""Where the coordinator's store lives, as the server and the commands that open it agree.

`meshplane coordinator` and `meshplane perf import` (which writes into the store directly) name
the same environment variables and the same file in a data directory.
"""

from __future__ import annotations

__all__ = ["DATA_DIR_ENV", "ENV_PREFIX", "STORE_ENV", "STORE_FILE"]

ENV_PREFIX = "MESHPLANE_COORDINATOR_"
"""Every coordinator flag's environment variable: this prefix, then the flag in upper case."""
STORE_FILE = "coordinator.db"
"""The SQLite store's file name inside the data directory."""
STORE_ENV = f"{ENV_PREFIX}STORE"
DATA_DIR_ENV = f"{ENV_PREFIX}DATA_DIR"
