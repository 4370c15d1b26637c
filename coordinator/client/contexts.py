"""Named coordinator contexts for the CLI, as kubectl keeps clusters in a kubeconfig.

A context says where a coordinator is and how to talk to it: address, bearer token file, TLS
files. They live in ``config.yaml`` in the client's config dir (``$MESHPLANE_CONFIG_DIR``, else
``$XDG_CONFIG_HOME/meshplane``, else ``~/.config/meshplane``)::

    current-context: prod
    contexts:
      - name: prod
        coordinator: meshplane.example.com:10100
        token-file: /home/me/.meshplane-prod-token
        tls-ca: /home/me/prod-ca.pem

The context used is ``--context NAME``, else ``$MESHPLANE_CONTEXT``, else ``current-context``.
Its values fill only what the command line and the ``MESHPLANE_*`` variables left unset, so a
flag or variable always wins. `meshplane config` shows, switches and writes contexts. The file
holds paths, never tokens, and is written with mode 0600.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from coordinator.client.credentials import TOKEN_ENV, TOKEN_FILE_ENV, config_dir

__all__ = [
    "CONTEXT_ENV",
    "Context",
    "ContextError",
    "apply_context",
    "config_path",
    "load_contexts",
    "register",
]

CONTEXT_ENV = "MESHPLANE_CONTEXT"
_COORDINATOR_ENV = "MESHPLANE_COORDINATOR"
_MAX_CONFIG_BYTES = 256 * 1024
# context key -> (argparse dest, environment variable that outranks the context, or "")
_FIELDS: dict[str, tuple[str, str]] = {
    "coordinator": ("coordinator", _COORDINATOR_ENV),
    "token-file": ("token_file", TOKEN_FILE_ENV),
    "tls-ca": ("tls_ca", ""),
    "tls-cert": ("tls_cert", ""),
    "tls-key": ("tls_key", ""),
    "tls-server-name": ("tls_server_name", ""),
}
_PATHS = frozenset({"token-file", "tls-ca", "tls-cert", "tls-key"})


class ContextError(ValueError):
    """The config file or the context asked for cannot be used (a usage error)."""


@dataclass(frozen=True, kw_only=True)
class Context:
    """One named context: the values it sets, by context key."""

    name: str
    values: Mapping[str, str]


def config_path(environ: Mapping[str, str] | None = None) -> Path:
    """The client config file."""
    return config_dir(environ) / "config.yaml"


def load_contexts(path: Path) -> tuple[str, list[Context]]:
    """(current-context, contexts) from ``path``; ("", []) when it does not exist."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return "", []
    except OSError as exc:
        raise ContextError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > _MAX_CONFIG_BYTES:
        raise ContextError(f"{path} is larger than {_MAX_CONFIG_BYTES // 1024} KiB")
    try:
        document = yaml.safe_load(raw) or {}
    except yaml.YAMLError as exc:
        raise ContextError(f"{path} is not YAML: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise ContextError(f"{path} must be a mapping with `contexts` and `current-context`")
    contexts = []
    for position, entry in enumerate(document.get("contexts") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ContextError(f"{path}: contexts[{position}] needs a `name`")
        unknown = sorted(set(entry) - {"name", *_FIELDS})
        if unknown:
            raise ContextError(
                f"{path}: context {entry['name']!r} has unknown keys {', '.join(unknown)}; "
                f"known: {', '.join(_FIELDS)}"
            )
        values = {key: str(value) for key, value in entry.items() if key != "name"}
        contexts.append(Context(name=entry["name"], values=values))
    current = document.get("current-context") or ""
    return str(current), contexts


def apply_context(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> None:
    """Fill what flags and environment left unset from the chosen context (if any)."""
    env = os.environ if environ is None else environ
    path = config_path(env)
    current, contexts = load_contexts(path)
    wanted = getattr(args, "context", None) or env.get(CONTEXT_ENV) or current
    if not wanted:
        return
    by_name = {context.name: context for context in contexts}
    if wanted not in by_name:
        known = ", ".join(by_name) or "none"
        raise ContextError(
            f"no context {wanted[:60]!r} in {path} (known: {known}); "
            "add one with `meshplane config set-context`"
        )
    explicit_token = getattr(args, "token", None) or env.get(TOKEN_ENV)
    for key, value in by_name[wanted].values.items():
        dest, outranking_env = _FIELDS[key]
        if getattr(args, dest, None) is not None or (outranking_env and env.get(outranking_env)):
            continue
        if key == "token-file" and explicit_token:
            continue
        setattr(args, dest, Path(value) if key in _PATHS else value)


# -- `meshplane config` ---------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `meshplane config view|get-contexts|use-context|set-context`."""
    config = subparsers.add_parser(
        "config",
        help="show and change the CLI's coordinator contexts",
        description=f"Contexts live in {config_path()} (see `meshplane config view`).",
    )
    commands = config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    commands.required = True
    view = commands.add_parser("view", help="print the config file")
    view.set_defaults(run=_view)
    listed = commands.add_parser("get-contexts", help="list contexts; * marks the current one")
    listed.set_defaults(run=_get_contexts)
    use = commands.add_parser("use-context", help="make a context the current one")
    use.add_argument("name")
    use.set_defaults(run=_use_context)
    setter = commands.add_parser("set-context", help="add or change a context")
    setter.add_argument("name")
    for key in _FIELDS:
        setter.add_argument(f"--{key}", dest=key.replace("-", "_"), default=None)
    setter.set_defaults(run=_set_context)


def _fail(message: str) -> int:
    print(f"meshplane config: {message}", file=sys.stderr)
    return 2


def _document(path: Path) -> dict[str, Any]:
    current, contexts = load_contexts(path)
    return {
        "current-context": current,
        "contexts": [{"name": c.name, **dict(c.values)} for c in contexts],
    }


def _write(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        yaml.safe_dump(document, stream, sort_keys=False)
    temporary.replace(path)


def _view(args: argparse.Namespace) -> int:
    try:
        sys.stdout.write(yaml.safe_dump(_document(config_path()), sort_keys=False))
    except ContextError as exc:
        return _fail(str(exc))
    return 0


def _get_contexts(args: argparse.Namespace) -> int:
    try:
        current, contexts = load_contexts(config_path())
    except ContextError as exc:
        return _fail(str(exc))
    if not contexts:
        print("(none): add one with `meshplane config set-context NAME --coordinator HOST:PORT`")
        return 0
    print("CURRENT  NAME  COORDINATOR")
    for context in contexts:
        mark = "*" if context.name == current else ""
        print(f"{mark:<8} {context.name}  {context.values.get('coordinator', '')}")
    return 0


def _use_context(args: argparse.Namespace) -> int:
    path = config_path()
    try:
        document = _document(path)
    except ContextError as exc:
        return _fail(str(exc))
    names = [context["name"] for context in document["contexts"]]
    if args.name not in names:
        return _fail(f"no context {args.name[:60]!r} (known: {', '.join(names) or 'none'})")
    document["current-context"] = args.name
    _write(path, document)
    print(f"current context: {args.name}")
    return 0


def _set_context(args: argparse.Namespace) -> int:
    path = config_path()
    try:
        document = _document(path)
    except ContextError as exc:
        return _fail(str(exc))
    given = {
        key: getattr(args, key.replace("-", "_"))
        for key in _FIELDS
        if getattr(args, key.replace("-", "_")) is not None
    }
    for key in _PATHS & set(given):
        given[key] = str(Path(given[key]).expanduser().resolve())
    for entry in document["contexts"]:
        if entry["name"] == args.name:
            entry.update(given)
            break
    else:
        document["contexts"].append({"name": args.name, **given})
    if not document["current-context"]:
        document["current-context"] = args.name
    _write(path, document)
    print(f"context {args.name} saved in {path}")
    return 0
