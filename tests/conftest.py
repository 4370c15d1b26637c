"""Shared pytest fixtures: each lives in a plugin module under tests/plugins/, listed here."""

pytest_plugins: list[str] = [
    "tests.plugins.static_http",
    "tests.plugins.postgres",
    "tests.plugins.grpc_servers",
    "tests.plugins.kubesim",
    "tests.plugins.realkube",
    "tests.plugins.task_guard",
    "tests.plugins.client_config",
    "tests.plugins.plain_tracebacks",
]
