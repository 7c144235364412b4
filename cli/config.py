"""`mlv config [--local] [--unset] KEY [VALUE]`: read or write one setting (``mlv.storage.workspace.configedit``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from mlv.cli.main import command, out, workspace


@command("config")
def config(
    key: Annotated[str, typer.Argument(help="A setting: cache.dir, cache.link, cache.verify, gc.grace, core.remote, "
                                            "core.mask, or remotes.NAME.KEY (url, endpoint_url, region, profile, "
                                            "timeout, retries).")],
    value: Annotated[Optional[str], typer.Argument(help="The value to write; leave it out to print the current one.")] = None,
    local: Annotated[bool, typer.Option("--local", help="This machine only: .mlv/config.local.yaml (git-ignored), "
                                                        "which overrides .mlv/config.yaml key by key.")] = False,
    unset: Annotated[bool, typer.Option("--unset", help="Remove KEY from the file.")] = False,
) -> None:
    """Print a setting, or write it to .mlv/config.yaml (committed) or, with --local, .mlv/config.local.yaml."""
    from mlv.storage.errors import UsageError
    from mlv.storage.workspace import configedit

    dot = workspace().dot
    if unset and value is not None:
        raise UsageError(f"--unset removes '{key}'; give no VALUE with it")
    if value is None and not unset:
        out.print(configedit.render(configedit.get(dot, key, local=local)))
        return
    path = configedit.set_value(dot, key, value, local=local)
    out.print(f"{'unset' if unset else 'set'} {key}{'' if unset else ' = ' + value} in .mlv/{path.name}")
