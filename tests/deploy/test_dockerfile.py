"""What can be checked of the image without a container engine: stages, user, entrypoint, and
that every command the chart runs is one the `meshplane` console script has."""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field

import pytest
import yaml

from meshplane_cli.main import build_parser
from tests.deploy.chart import CHART, DOCKERFILE, container, meshes_with_rbac, of_kind, render
from tests.fixtures_paths import PROJECT_ROOT

BUILD_TOOLS = ("gcc", "g++", "cc", "clang", "make", "build-essential", "cmake", "rustc", "cargo")


@dataclass
class Stage:
    """One FROM … section of the Dockerfile: its base, name and instructions."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def of(self, keyword: str) -> list[str]:
        return [args for word, args in self.instructions if word == keyword]


def _stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with line continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            base = words[0]
            for name, value in args.items():
                base = base.replace(f"${{{name}}}", value)
            alias = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=base, name=alias))
        elif not stages:
            if keyword == "ARG" and "=" in rest:
                name, _, value = rest.partition("=")
                args[name.strip()] = value.strip()
        else:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return _stages(DOCKERFILE.read_text(encoding="utf-8"))[1]


def test_multi_stage_on_slim_python(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.fullmatch(r"python:3\.11-slim(-[a-z]+)?", stage.base), stage.base
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    # The builder installs the wheel with the pinned constraints into a venv…
    build = " ".join(builder.of("RUN"))
    assert "pip wheel" in build and "venv" in build
    assert "--constraint constraints.txt" in build
    # …and the final stage copies that venv and nothing else from it.
    copies = final.of("COPY")
    assert copies == ["--from=builder /opt/meshplane /opt/meshplane"]


def test_final_stage_has_no_build_tools_and_runs_as_non_root(stages: list[Stage]) -> None:
    final = stages[-1]
    runs = " ".join(final.of("RUN"))
    for tool in BUILD_TOOLS:
        assert not re.search(rf"(^|[\s=]){re.escape(tool)}($|\s)", runs), tool
    assert "apt-get install" not in runs and "pip install" not in runs
    (user,) = final.of("USER")
    uid = user.split(":")[0]
    assert uid == "10001"
    assert "useradd" in runs and "--uid 10001" in runs


def test_entrypoint_is_the_console_script(stages: list[Stage]) -> None:
    (entrypoint,) = stages[-1].of("ENTRYPOINT")
    assert entrypoint == '["meshplane"]'
    scripts = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["meshplane"] == "meshplane_cli.main:main"
    env = " ".join(stages[-1].of("ENV"))
    assert "PATH=/opt/meshplane/bin:" in env


def test_the_image_context_holds_every_package(stages: list[Stage]) -> None:
    copied = {shlex.split(args)[0] for args in stages[0].of("COPY")}
    packages = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
    for pattern in packages:
        assert pattern.rstrip("*") in copied, pattern
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    for name in copied:
        if name.endswith((".toml", ".txt", ".md")):
            assert f"!{name}" in ignore
        else:
            assert f"!{name}/**" in ignore


async def test_every_command_the_chart_runs_exists() -> None:
    values = {"adapters": {mesh: {"enabled": True} for mesh in meshes_with_rbac()}}
    objects = (await render(values)).objects
    parser = build_parser()
    commands = {tuple(container(d)["args"]) for d in of_kind(objects, "Deployment")}
    assert ("coordinator",) in commands
    assert {args[0] for args in commands} == {"adapter", "coordinator"}
    for args in commands:
        try:
            parsed = parser.parse_args(list(args))
        except SystemExit as exc:  # argparse's answer to an unknown command or bad arguments
            raise AssertionError(f"`meshplane {' '.join(args)}` does not parse") from exc
        assert parsed.command == args[0]


def test_chart_app_version_is_the_project_version() -> None:
    """The image tag defaults to the chart's appVersion: it must name this project's release."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == project
