"""`meshplane completion`: scripts generated from the parser, exercised in a real bash."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MESHPLANE = Path(sys.executable).parent / "meshplane"


def _complete(*words: str) -> list[str]:
    """What bash offers after ``meshplane WORDS...`` (the last word is being typed)."""
    script = subprocess.run(
        [MESHPLANE, "completion", "bash"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    line = " ".join(["meshplane", *words])
    program = (
        f"{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words)}; _meshplane\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "-c", program], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completes_commands_flags_and_choices() -> None:
    assert _complete("ap") == ["apply"]
    assert {"get", "wait", "cancel", "completion", "perf"} <= set(_complete(""))
    assert "--timeout" in _complete("wait", "--ti")
    assert _complete("completion", "") == ["bash", "zsh", "fish", "--help"]
    assert {"run", "results", "compare"} <= set(_complete("perf", ""))


def test_zsh_and_fish_scripts_name_every_command() -> None:
    zsh = subprocess.run(
        [MESHPLANE, "completion", "zsh"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert zsh.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    fish = subprocess.run(
        [MESHPLANE, "completion", "fish"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    for command in ("apply", "wait", "cancel", "events"):
        assert f"-n __fish_use_subcommand -a {command} " in fish
    assert "-n '__fish_seen_subcommand_from wait' -l timeout" in fish
    if shutil.which("fish"):
        checked = subprocess.run(
            ["fish", "--no-execute"], check=False, input=fish, text=True, timeout=60
        )
        assert checked.returncode == 0


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_scripts_parse_in_their_shell(shell: str) -> None:
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    script = subprocess.run(
        [MESHPLANE, "completion", shell], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    checked = subprocess.run([shell, "-n"], check=False, input=script, text=True, timeout=60)
    assert checked.returncode == 0
