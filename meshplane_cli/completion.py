"""`meshplane completion bash|zsh|fish`: a shell completion script made from the parser itself.

Every command module registers its flags with argparse, so the script is generated from the
assembled parser (commands, their subcommands, flags and fixed choices) and can never list a
flag that does not exist. Install as kubectl's is installed:
``source <(meshplane completion bash)``, or write it to the shell's completion folder.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["SHELLS", "register", "script"]

SHELLS = ("bash", "zsh", "fish")


@dataclass(frozen=True, kw_only=True)
class _Command:
    name: str
    help: str
    flags: tuple[str, ...]
    subcommands: tuple[str, ...]
    choices: tuple[str, ...]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `completion` to `meshplane`."""
    parser = subparsers.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh or fish)",
        description="Print a completion script: `source <(meshplane completion bash)`.",
    )
    parser.add_argument("shell", choices=SHELLS)
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    print(script(args.shell), end="")
    return 0


def _full_parser() -> argparse.ArgumentParser:
    from meshplane_cli import commands

    parser = argparse.ArgumentParser(prog="meshplane")
    commands.register_all(parser.add_subparsers(dest="command"))
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _helps(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def _commands() -> Iterator[_Command]:
    root = _full_parser()
    helps = _helps(root)
    for name, parser in sorted(_subparsers(root).items()):
        flags: list[str] = []
        choices: list[str] = []
        for action in parser._actions:
            flags.extend(s for s in action.option_strings if s.startswith("--"))
            if (
                not action.option_strings
                and action.choices
                and not isinstance(action, argparse._SubParsersAction)
            ):
                choices.extend(str(c) for c in action.choices)
        children = _subparsers(parser)
        for child in children.values():
            for action in child._actions:
                flags.extend(s for s in action.option_strings if s.startswith("--"))
        yield _Command(
            name=name,
            help=helps.get(name, ""),
            flags=tuple(dict.fromkeys(flags)),
            subcommands=tuple(sorted(children)),
            choices=tuple(choices),
        )


def script(shell: str) -> str:
    """The completion script for ``shell`` (one of `SHELLS`)."""
    commands = list(_commands())
    if shell == "fish":
        return _fish(commands)
    bash = _bash(commands)
    if shell == "zsh":
        return "autoload -U +X bashcompinit && bashcompinit\n" + bash
    return bash


def _bash(commands: list[_Command]) -> str:
    names = " ".join(c.name for c in commands)
    cases = []
    for command in commands:
        words = " ".join((*command.subcommands, *command.choices, *command.flags))
        cases.append(f"    {command.name}) words={shlex.quote(words)} ;;")
    body = "\n".join(cases)
    return f"""# meshplane completion for bash: source <(meshplane completion bash)
_meshplane() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" cmd="" words="" i
  for ((i = 1; i < COMP_CWORD; i++)); do
    case "${{COMP_WORDS[i]}}" in
      -*) ;;
      *) cmd="${{COMP_WORDS[i]}}"; break ;;
    esac
  done
  case "$cmd" in
    "") words={shlex.quote(names)} ;;
{body}
  esac
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}}
complete -o default -F _meshplane meshplane
"""


def _fish(commands: list[_Command]) -> str:
    lines = ["# meshplane completion for fish: meshplane completion fish | source"]
    lines.append("complete -c meshplane -f")
    for command in commands:
        lines.append(
            f"complete -c meshplane -n __fish_use_subcommand -a {command.name}"
            f" -d {shlex.quote(command.help)}"
        )
        seen = f"__fish_seen_subcommand_from {command.name}"
        for word in (*command.subcommands, *command.choices):
            lines.append(f"complete -c meshplane -n {shlex.quote(seen)} -a {shlex.quote(word)}")
        for flag in command.flags:
            lines.append(f"complete -c meshplane -n {shlex.quote(seen)} -l {flag[2:]}")
    return "\n".join(lines) + "\n"
