"""``mlv show`` for people: a run record as a readable summary, a tree of its inputs and outputs,
its params, and the captured output at the end (``--json`` prints the record itself instead).

Times are ISO 8601 in the local zone with its offset, durations in seconds, digests
shortened to 8 hex digits as git shortens commits (``mlv trace`` and ``--json`` have them whole).
"""

from __future__ import annotations

import datetime as dt
import json

from mlv.cli.main import out

STATUS_STYLE = {"succeeded": "green", "failed": "bold red", "reused": "blue"}


def short(digest: str | None) -> str:
    """``xxh3-128:9e1f04c2…`` → ``9e1f04c2``.

    >>> short("xxh3-128:9e1f04c2d3b4a5f60718293a4b5c6d7e"), short(None)
    ('9e1f04c2', '-')
    """
    return digest.partition(":")[2][:8] if digest else "-"


def when(timestamp: float | None) -> str:
    """A Unix time as ISO 8601 in the local zone, to the second."""
    if not timestamp:
        return "-"
    return dt.datetime.fromtimestamp(timestamp).astimezone().isoformat(timespec="seconds")


def size(n: int | None) -> str:
    """Bytes for people.

    >>> size(3), size(1536), size(5 * 1024 ** 3)
    ('3 B', '1.5 KiB', '5.0 GiB')
    """
    if n is None:
        return "-"
    value, unit = float(n), "B"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            break
        value /= 1024
    return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"


def render(record: dict, *, output: str, source: str | None) -> None:
    """Print ``record`` (a run record's fields) for a person; ``source``: the run whose output this is, if another."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text
    from rich.tree import Tree

    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:  # a pipe or a file: long lines stay whole, for grep (a terminal wraps them)
        console = Console(highlight=False, soft_wrap=True, width=4096)
    status = record.get("status") or "-"
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column()
    state = Text(status, style=STATUS_STYLE.get(status, ""))
    if record.get("exit_code") is not None:
        state.append(f" (exit {record['exit_code']})")
    if record.get("reused_from"):
        state.append(f" — outputs restored from run {record['reused_from']}, nothing ran")
    started, ended = record.get("started"), record.get("ended")
    git = record.get("git") or {}
    interpreter = (record.get("environment") or {}).get("interpreter") or {}
    rows = [
        ("run", record.get("run_id")), ("stage", record.get("stage")), ("status", state),
        ("started", when(started)), ("ended", when(ended)),
        ("duration", f"{ended - started:.2f} s" if started and ended else "-"),
        ("host", record.get("host")), ("worker", record.get("worker")), ("gpu", record.get("gpu")),
        ("fingerprint", short(record.get("fingerprint"))),
        ("git", f"{(git.get('commit') or '')[:10]}{' (dirty)' if git.get('dirty') else ''}" if git.get("commit") else None),
        ("python", " ".join(str(v) for v in (interpreter.get("version"), interpreter.get("path")) if v) or None),
    ]
    for name, value in rows:
        if value:
            facts.add_row(name, value if isinstance(value, Text) else Text(str(value)))
    definition = record.get("definition") or {}
    for line in _what_ran(definition):
        facts.add_row("ran", Text(line))

    tree = Tree(Text("inputs and outputs", style="bold"))
    deps = tree.add(Text(f"deps ({len(record.get('deps') or {})})"))
    producers = record.get("producers") or {}
    for path, digest in sorted((record.get("deps") or {}).items()):
        deps.add(Text(f"{path}  {short(digest)}{_came_from(producers.get(path))}"))
    outs = tree.add(Text(f"outs ({len(record.get('outs') or {})})"))
    for path, o in sorted((record.get("outs") or {}).items()):
        files = f", {o['nfiles']} files" if o.get("nfiles") is not None else ""
        outs.add(Text(f"{path}  {short(o.get('digest'))}  {size(o.get('size'))}{files}"))
    params = record.get("params") or {}
    if params:
        branch = tree.add(Text(f"params ({len(params)})"))
        for key, value in sorted(params.items()):
            branch.add(Text(f"{key} = {json.dumps(value, default=str)}"))
    with console.capture() as captured:
        console.print(facts)
        console.print(tree)
    out.print("\n".join(line.rstrip() for line in captured.get().rstrip("\n").splitlines()))  # no grid padding
    out.print("--- output" + (f" of run {source} (restored from the run cache; nothing ran)" if source else "") + " ---")
    out.print(output.rstrip() if output.strip() else "(no output)")


def _what_ran(definition: dict) -> list[str]:
    if definition.get("cmd"):
        return [f"$ {c}" for c in definition["cmd"]]
    if definition.get("call"):
        return [f"call {definition['call']}"]
    if definition.get("kind"):
        return [f"kind {definition['kind']}"]
    return []


def _came_from(producer: dict | None) -> str:
    if not producer:
        return ""
    if producer.get("run"):
        return f"  ← run {producer['run']}"
    if producer.get("added"):
        return f"  ← {producer['added']}"
    return ""
