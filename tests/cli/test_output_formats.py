"""Every listing in every format (-o table|wide|json|yaml|name, --no-headers) against a
coordinator routing to a fake adapter, compared with the exact expected text; tables cut to a
terminal's width only on a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from coordinator.client.credentials import TOKEN_ENV
from coordinator.client.output import fit_to_width
from tests.coordinator.identities import ADMIN
from tests.coordinator.routing_harness import (
    Client,
    RunningFake,
    coordinator,
    fakes,
    make_settings,
    static,
)
from tests.meshplane_command import meshplane


class Setup:
    def __init__(self, client: Client, fake: RunningFake) -> None:
        self.client = client
        self.fake = fake


@pytest.fixture
async def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Setup]:
    # Commands, in this process and in child processes, authenticate as the test admin.
    monkeypatch.setenv(TOKEN_ENV, ADMIN.token)
    async with (
        fakes(("toy", "a")) as (fake,),
        coordinator(make_settings(tmp_path, adapters=static(fake))) as client,
    ):
        await client.wait_serving(fake.address)
        yield Setup(client, fake)


async def _out(setup: Setup, *argv: str) -> str:
    code, out, err = await meshplane(*argv, "--coordinator", setup.client.coordinator.address)
    assert code == 0, err
    return out


async def test_adapters_in_every_format(setup: Setup) -> None:
    address = setup.fake.address
    pad = " " * (len(address) - len("ADDRESS"))
    assert await _out(setup, "adapters") == (
        f"MESH  ADDRESS{pad}  STATE    VERSION  LAST ERROR\ntoy   {address}  SERVING  1.0.0+a\n"
    )
    wide = await _out(setup, "adapters", "-o", "wide")
    assert wide.splitlines()[0].split() == [
        "MESH", "ADDRESS", "STATE", "VERSION", "EVENT", "STREAM", "LAST", "EVENT", "LAST", "ERROR"
    ]  # fmt: skip
    assert "EVENT STREAM" in wide and "stream-a" in wide
    assert await _out(setup, "adapters", "--no-headers") == (f"toy  {address}  SERVING  1.0.0+a\n")
    assert await _out(setup, "adapters", "-o", "name") == f"adapter/toy/{address}\n"
    document = json.loads(await _out(setup, "adapters", "-o", "json"))
    assert document["adapters"][0]["mesh"] == "toy"
    assert yaml.safe_load(await _out(setup, "adapters", "-o", "yaml")) == document


async def test_ops_versions_and_history(setup: Setup) -> None:
    assert await _out(setup, "ops") == (
        "MESH  OPERATION  CATEGORY  DESCRIPTION\ntoy   install    INSTALL   install toy\n"
    )
    assert await _out(setup, "ops", "-o", "wide") == (
        "MESH  OPERATION  CATEGORY  DELETE  PARAMETERS  DESCRIPTION\n"
        "toy   install    INSTALL   no                  install toy\n"
    )
    assert await _out(setup, "ops", "-o", "name") == "operation/toy/install\n"
    assert await _out(setup, "versions", "toy") == (
        "VERSION          APP VERSION  PRERELEASE\n1.2.3 (default)\n"
    )
    assert await _out(setup, "versions", "toy", "-o", "name") == "version/toy/1.2.3\n"

    await _out(setup, "apply", "toy", "install", "--operation-id", "op-1")
    table = (await _out(setup, "history")).splitlines()
    assert table[0].split() == ["CREATED", "ID", "MESH", "OPERATION", "STATE", "USER", "ERROR"]
    created = table[1].split()[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", created)  # RFC 3339, UTC
    assert table[1].split()[1:5] == ["op-1", "toy", "install", "PENDING"]
    assert "ENDED" in (await _out(setup, "history", "-o", "wide")).splitlines()[0]
    assert await _out(setup, "history", "-o", "name") == "operation/op-1\n"
    document = yaml.safe_load(await _out(setup, "history", "-o", "yaml"))
    assert [o["operation"]["operation_id"] for o in document["operations"]] == ["op-1"]


async def test_events_have_a_header_and_every_format(setup: Setup) -> None:
    lines = (await _out(setup, "events", "--idle", "500ms")).splitlines()
    assert lines[0].split() == ["CURSOR", "TIME", "MESH", "SEVERITY", "OPERATION", "MESSAGE"]
    assert len(lines) == 4 and "toy" in lines[1].split() and lines[3].endswith("a event 3")
    no_header = await _out(setup, "events", "--idle", "500ms", "--no-headers")
    assert no_header.splitlines() == lines[1:]
    names = await _out(setup, "events", "--idle", "500ms", "-o", "name")
    assert names.splitlines() == ["event/1", "event/2", "event/3"]
    documents = list(
        yaml.safe_load_all(await _out(setup, "events", "--idle", "500ms", "-o", "yaml"))
    )
    assert [d["cursor"] for d in documents] == ["1", "2", "3"]


def test_tables_fit_the_terminal_by_cutting_the_widest_column() -> None:
    table = [["NAME", "DESCRIPTION"], ["a", "x" * 100]]
    fitted = fit_to_width(table, 40)
    assert max(len("  ".join(row)) for row in fitted) <= 40
    assert fitted[1][1].endswith("…") and fitted[1][0] == "a"
    assert fit_to_width(table, 200) == table


async def test_on_a_terminal_a_table_fits_its_width(setup: Setup) -> None:
    master, slave = os.openpty()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshplane_cli.main",
            "adapters",
            "--coordinator",
            setup.client.coordinator.address,
            stdout=slave,
            stderr=slave,
            env={**os.environ, "COLUMNS": "45"},
        )
    finally:
        os.close(slave)
    try:
        assert await asyncio.wait_for(process.wait(), 60) == 0
        written = os.read(master, 65536).decode()
    finally:
        os.close(master)
    lines = [line for line in written.replace("\r\n", "\n").split("\n") if line]
    assert len(lines) == 2 and all(len(line) <= 45 for line in lines), lines
    assert "…" in lines[1]
