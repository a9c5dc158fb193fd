"""Where the CLI finds its registry: flags, environment, or a named context.

Precedence, highest first (as kubectl users expect): `--registry` / `--token-file`
flags, then `MESHFED_REGISTRY` / `MESHFED_TOKEN` (the token itself) /
`MESHFED_TOKEN_FILE`, then the context named by `--context` or the file's
`current-context` in `$XDG_CONFIG_HOME/meshfed/config.yaml` (default
`~/.config/meshfed/config.yaml`), then `http://127.0.0.1:9470` with the token of
a local `meshfed serve` (`<data-dir>/admin.token`) when that file exists.

`meshfed config set-context|use-context|get-contexts|current-context` edit and
show the file. The file holds token *paths*, never tokens.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from federation.cli import args as types
from federation.cli.output import FORMATS, render

DEFAULT_REGISTRY = "http://127.0.0.1:9470"  # `meshfed serve` default (docs/api.md)


class ConfigError(Exception):
    """The config file or a context in it is unusable: an operation failure (exit 1)."""


class UsageError(ConfigError):
    """A bad value in the environment (`MESHFED_REGISTRY`): bad usage, exit 2, as the
    flag's bad value is."""


def config_path() -> Path:
    if env := os.environ.get("MESHFED_CONFIG"):
        return Path(env)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "meshfed" / "config.yaml"


def load_config(path: Path | None = None) -> dict[str, Any]:
    path = path or config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {"contexts": [], "current-context": None}
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("contexts", []), list):
        raise ConfigError(f"{path}: expected a mapping with a 'contexts' list")
    data.setdefault("contexts", [])
    data.setdefault("current-context", None)
    return data


def save_config(data: dict[str, Any], path: Path | None = None) -> Path:
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def _find(data: dict[str, Any], name: str) -> dict[str, Any] | None:
    for ctx in data["contexts"]:
        if isinstance(ctx, dict) and ctx.get("name") == name:
            return ctx
    return None


@dataclass(frozen=True)
class Target:
    """The registry a command talks to and the token it sends."""

    registry: str
    token: str | None
    source: str  # where the settings came from, for error messages


def _read_token(path: str, what: str) -> str:
    try:
        token = Path(path).expanduser().read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read token file {path} ({what}): {exc.strerror}") from None
    if not token:
        raise ConfigError(f"token file {path} ({what}) is empty")
    return token


def _local_admin_token() -> str | None:
    from federation.cli.store_cmd import default_data_dir

    path = default_data_dir() / "admin.token"
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def resolve(ns: argparse.Namespace) -> Target:
    """The target of this invocation (see the module docstring for precedence)."""
    registry: str | None = getattr(ns, "registry", None)
    token_file: str | None = getattr(ns, "token_file", None)
    context_name: str | None = getattr(ns, "context", None) or os.environ.get("MESHFED_CONTEXT")
    source = "flags"
    ctx: dict[str, Any] | None = None
    if context_name or not (registry and token_file):
        data = load_config()
        name = context_name or data.get("current-context")
        if name:
            ctx = _find(data, name)
            if ctx is None:
                raise ConfigError(f'context "{name}" is not in {config_path()}')
            source = f'context "{name}"'
    if not registry and (env_registry := os.environ.get("MESHFED_REGISTRY")):
        try:
            registry = types.registry_url(env_registry)
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"MESHFED_REGISTRY: {exc}") from None
    if not registry and ctx and ctx.get("registry"):
        registry = types.normalize_registry(str(ctx["registry"]))
    token: str | None = None
    if token_file:
        token = _read_token(token_file, "--token-file")
    elif env_token := os.environ.get("MESHFED_TOKEN"):
        token = env_token.strip()
    elif env_file := os.environ.get("MESHFED_TOKEN_FILE"):
        token = _read_token(env_file, "MESHFED_TOKEN_FILE")
    elif ctx and ctx.get("token-file"):
        token = _read_token(str(ctx["token-file"]), source)
    elif not registry or registry.rstrip("/") == DEFAULT_REGISTRY:
        token = _local_admin_token()
    return Target((registry or DEFAULT_REGISTRY).rstrip("/"), token, source)


def add_global_flags(p: argparse.ArgumentParser, *, root: bool) -> None:
    """The connection flags, accepted before or after the subcommand.

    On subcommands the defaults are SUPPRESS so a value given before the
    subcommand is not overwritten by the subparser's default.
    """
    default: Any = None if root else argparse.SUPPRESS
    g = p.add_argument_group("registry connection")
    g.add_argument(
        "--registry",
        type=types.registry_url,
        default=default,
        metavar="URL",
        help=f"registry API URL (default: $MESHFED_REGISTRY, the context, or {DEFAULT_REGISTRY})",
    )
    g.add_argument(
        "--token-file",
        default=default,
        metavar="FILE",
        help="file holding the API token (default: $MESHFED_TOKEN, the context's token-file)",
    )
    g.add_argument(
        "--context",
        default=default,
        metavar="NAME",
        help="use this context of ~/.config/meshfed/config.yaml",
    )


# -- meshfed config ---------------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser("config", help="manage contexts in ~/.config/meshfed/config.yaml")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    s = actions.add_parser("set-context", help="create or change a context")
    s.add_argument("name", type=types.context_name, metavar="NAME")
    s.add_argument("--registry", type=types.registry_url, metavar="URL")
    s.add_argument("--token-file", metavar="FILE")
    s.add_argument("--use", action="store_true", help="also make it the current context")
    s.set_defaults(handler=_set_context)
    u = actions.add_parser("use-context", help="make a context the current one")
    u.add_argument("name", type=types.context_name, metavar="NAME")
    u.set_defaults(handler=_use_context)
    g = actions.add_parser("get-contexts", help="list contexts")
    g.add_argument("-o", "--output", choices=FORMATS, default="table")
    g.set_defaults(handler=_get_contexts)
    c = actions.add_parser("current-context", help="print the current context")
    c.set_defaults(handler=_current_context)
    d = actions.add_parser("delete-context", help="remove a context")
    d.add_argument("name", type=types.context_name, metavar="NAME")
    d.set_defaults(handler=_delete_context)


def _set_context(ns: argparse.Namespace) -> int:
    data = load_config()
    ctx = _find(data, ns.name)
    created = ctx is None
    if ctx is None:
        if not ns.registry:
            print(f'error: new context "{ns.name}" needs --registry URL', file=sys.stderr)
            return 2
        ctx = {"name": ns.name}
        data["contexts"].append(ctx)
    if ns.registry:
        ctx["registry"] = ns.registry
    if ns.token_file:
        ctx["token-file"] = str(Path(ns.token_file).expanduser().resolve())
    if ns.use or not data.get("current-context"):
        data["current-context"] = ns.name
    path = save_config(data)
    print(f'context "{ns.name}" {"created" if created else "modified"} in {path}')
    return 0


def _use_context(ns: argparse.Namespace) -> int:
    data = load_config()
    if _find(data, ns.name) is None:
        print(f'error: context "{ns.name}" is not in {config_path()}', file=sys.stderr)
        return 1
    data["current-context"] = ns.name
    save_config(data)
    print(f'switched to context "{ns.name}"')
    return 0


def _delete_context(ns: argparse.Namespace) -> int:
    data = load_config()
    if _find(data, ns.name) is None:
        print(f'error: context "{ns.name}" is not in {config_path()}', file=sys.stderr)
        return 1
    data["contexts"] = [c for c in data["contexts"] if c.get("name") != ns.name]
    if data.get("current-context") == ns.name:
        data["current-context"] = None
    save_config(data)
    print(f'context "{ns.name}" deleted')
    return 0


def _get_contexts(ns: argparse.Namespace) -> int:
    data = load_config()
    current = data.get("current-context")
    rows = [
        {
            "current": "*" if c.get("name") == current else "",
            "name": c.get("name"),
            "registry": c.get("registry"),
            "token-file": c.get("token-file"),
        }
        for c in data["contexts"]
    ]
    if ns.output == "table":
        print(render(rows, "table"))
    else:
        print(render({"current-context": current, "contexts": data["contexts"]}, ns.output))
    return 0


def _current_context(ns: argparse.Namespace) -> int:
    current = load_config().get("current-context")
    if not current:
        print("error: no current context", file=sys.stderr)
        return 1
    print(current)
    return 0
