"""`mlv remote`: add, list, remove and pick the default of the remotes in ``.mlv/config.yaml``.

Thin as the others: validation and writing live in ``mlv.storage.workspace.config`` (the same checks
the loader makes), so a remote that `mlv remote add` accepts always loads again.
Nothing heavy is imported: no fsspec until a command actually transfers bytes.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from mlv.cli.main import app, command, emit_json, group, out, workspace

remote_app = group()
app.add_typer(remote_app, name="remote", help="Manage remotes: where `mlv push` sends data and `mlv pull` gets it.")

Name = Annotated[str, typer.Argument(help="The remote's name, e.g. origin.")]


@command("add", group=remote_app)
def add(
    name: Name,
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix, any fsspec URL, or a local directory.")],
    default: Annotated[bool, typer.Option("--default", help="Make it the default remote.")] = False,
    endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible server, e.g. http://127.0.0.1:9000.")] = None,
    region: Annotated[str | None, typer.Option(help="The bucket's region (s3 only).")] = None,
    profile: Annotated[str | None, typer.Option(help="AWS profile whose credentials to use (s3 only).")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds a request may wait to connect or to hear more "
                                                          "from the server (s3 only; default 15).")] = None,
    retries: Annotated[int | None, typer.Option(help="Tries after the first for a request that failed or timed "
                                                        "out (s3 only; default 2).")] = None,
) -> None:
    """Add a remote (the first one becomes the default). Credentials never go in the URL."""
    from mlv.storage.workspace import config as configs, configedit

    ws = workspace()
    timeout = int(timeout) if timeout is not None and timeout.is_integer() else timeout  # 30, not 30.0, in the file
    remote = configs.RemoteConfig(name, _from_root(ws.root, url), endpoint_url, region, profile,
                                  timeout=timeout, retries=retries)
    made_default = configedit.add_remote(ws.dot / "config.yaml", remote, default=default)
    out.print(f"added remote '{name}' → {remote.url}" + (" (default)" if made_default else ""))


def _from_root(root: Path, url: str) -> str:
    """A relative local path typed in a subdirectory (plain or ``file://``), rewritten relative to the
    repo root, as the config reads it."""
    scheme, sep, path = url.partition("://") if "://" in url else ("", "", url)
    if scheme not in ("", "file", "local") or "::" in url or path.startswith(("/", "~")) \
            or Path.cwd().resolve() == root:
        return url
    return scheme + sep + os.path.relpath(Path.cwd() / path, root)


@command("list", group=remote_app)
def list_(json_: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """List the remotes; `*` marks the default."""
    config = workspace().config
    rows = [{"name": r.name, "url": r.url, "default": r.name == config.default_remote, "endpoint_url": r.endpoint_url,
             "region": r.region, "profile": r.profile, "timeout": r.timeout, "retries": r.retries}
            for r in config.remotes.values()]
    if json_:
        emit_json(rows)
        return
    if not rows:
        out.print("no remotes; add one with `mlv remote add NAME URL`")
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        extra = ", ".join(f"{key.replace('_', ' ')} {r[key]}" for key in ("endpoint_url", "region", "profile", "timeout",
                                                                           "retries") if r[key] is not None)
        out.print(f"{'*' if r['default'] else ' '} {r['name']:<{width}}  {r['url']}" + (f"  ({extra})" if extra else ""))


@command("remove", group=remote_app)
def remove(name: Name) -> None:
    """Forget a remote (its data stays where it is)."""
    from mlv.storage.workspace import configedit

    ws = workspace()
    was_default = ws.config.default_remote == name
    default = configedit.remove_remote(ws.dot / "config.yaml", name)
    out.print(f"removed remote '{name}'")
    if was_default and default:
        out.print(f"default remote is now '{default}'")
    elif was_default and len(ws.config.remotes) > 1:
        out.print("no default remote now; pick one with `mlv remote default NAME`")


@command("default", group=remote_app)
def default(name: Name) -> None:
    """Make NAME the default remote (used by push, fetch and pull without -r)."""
    from mlv.storage.workspace import configedit

    configedit.set_default_remote(workspace().dot / "config.yaml", name)
    out.print(f"default remote is now '{name}'")
