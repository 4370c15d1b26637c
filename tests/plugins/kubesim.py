"""Fixtures that run kubesim for a test (or a module) and hand out clients bound to it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from kubernetes import client, config

from kubesim.harness import RunningSim, running_kubesim
from kubesim.server import SimConfig

FAST = SimConfig(ready_delay=0.05, bookmark_seconds=0.2)


@pytest.fixture
def kubesim() -> Iterator[RunningSim]:
    """A fresh simulated cluster for one test (port 0, in a background thread)."""
    with running_kubesim(FAST) as sim:
        yield sim


@pytest.fixture
def tls_kubesim() -> Iterator[RunningSim]:
    """A fresh simulated cluster serving HTTPS (kubectl sends bearer tokens over HTTPS only)."""
    with running_kubesim(replace(FAST, tls=True)) as sim:
        yield sim


@pytest.fixture(scope="module")
def kubesim_module() -> Iterator[RunningSim]:
    """One simulated cluster shared by a test module."""
    with running_kubesim(FAST) as sim:
        yield sim


def _api_client(sim: RunningSim) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(sim.kubeconfig))


@pytest.fixture
def api_client(kubesim: RunningSim) -> Iterator[client.ApiClient]:
    with _api_client(kubesim) as api:
        yield api


@pytest.fixture(scope="module")
def module_api_client(kubesim_module: RunningSim) -> Iterator[client.ApiClient]:
    with _api_client(kubesim_module) as api:
        yield api
