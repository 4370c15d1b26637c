"""Flags with an environment fallback: precedence, help and errors naming the source."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from serving.command_settings import (
    SERVER_TLS_FLAGS,
    Flag,
    FlagTable,
    SettingsError,
    boolean,
    port,
    server_tls_setting,
)

TABLE = FlagTable(
    env_prefix="MESHPLANE_TEST_",
    flags=(
        Flag(flag="--port", parse=port, help="a port"),
        Flag(flag="--verbose-mode", parse=boolean, switch=True, help="say more"),
        *SERVER_TLS_FLAGS,
    ),
)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    TABLE.add_to(parser)
    return parser.parse_args(argv)


def test_flag_beats_environment_which_beats_absence() -> None:
    environ = {"MESHPLANE_TEST_PORT": "2000", "MESHPLANE_TEST_VERBOSE_MODE": ""}
    assert TABLE.resolve(parse(["--port", "1000"]), environ) == {"port": 1000}
    assert TABLE.resolve(parse([]), environ) == {"port": 2000}
    assert TABLE.resolve(parse(["--verbose-mode"]), {}) == {"verbose_mode": True}
    assert TABLE.resolve(parse([]), {}) == {}


def test_help_names_each_environment_variable() -> None:
    parser = argparse.ArgumentParser()
    TABLE.add_to(parser)
    text = " ".join(parser.format_help().split())
    assert "[env MESHPLANE_TEST_PORT]" in text
    assert "[env MESHPLANE_TEST_TLS_CLIENT_CA]" in text


def test_a_bad_value_names_where_it_came_from() -> None:
    with pytest.raises(SettingsError, match=r"MESHPLANE_TEST_PORT='70000'"):
        TABLE.resolve(parse([]), {"MESHPLANE_TEST_PORT": "70000"})
    with pytest.raises(SettingsError, match=r"--port='x'"):
        TABLE.resolve(parse(["--port", "x"]), {})


def test_server_tls_needs_both_halves(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    values = TABLE.resolve(parse(["--tls-cert", str(cert), "--tls-key", str(key)]), {})
    tls = server_tls_setting(values)
    assert tls is not None and (tls.cert_path, tls.key_path) == (cert, key)
    assert server_tls_setting({}) is None
    with pytest.raises(SettingsError, match="go together"):
        server_tls_setting(TABLE.resolve(parse(["--tls-cert", str(cert)]), {}))
    with pytest.raises(SettingsError, match="needs --tls-cert"):
        server_tls_setting(TABLE.resolve(parse(["--tls-client-ca", str(cert)]), {}))
