"""Writing ``.mlv/config.yaml`` and ``config.local.yaml``: one setting (`mlv config KEY [VALUE]`),
and the remotes (`mlv remote add|remove|default`). The files' format and their checks belong
to ``config``; every write here is checked by those same rules before the file is replaced.

A key is dotted: ``cache.link``, ``gc.grace``, ``core.remote``, ``core.mask`` or
``remotes.NAME.url`` (and the other remote settings). The files' format and their checks
belong to ``config``; this module only finds, edits and re-checks one key:

- an unknown key is a ``UsageError`` (exit 2) naming it, with the nearest valid one;
- a new value is written into a copy of the file's text (ruamel.yaml's round trip keeps the
  comments and layout), and that copy is checked — alone, and laid under or over the other
  file — with the same rules as every load, before the file is replaced atomically. A bad
  value is a ``ConfigError`` naming the key, and the file is left as it was;
- writing ``config.local.yaml`` makes sure ``.mlv/.gitignore`` (in a git repo) ignores it, so
  a personal remote or profile is never committed, and it survives any ``git checkout``.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import fields, replace
from pathlib import Path

import yaml
from mlv.storage import atomic
from mlv.storage.errors import MlvError, UsageError
from mlv.storage.workspace import config as configs

#: Keys whose command-line value is read as YAML (a bool, a number, a list); all others are text.
_TYPED = {"cache.verify", "gc.grace", "core.mask", "timeout", "retries"}
_DEFAULTS = {"cache.dir": "cache", "cache.link": "auto", "cache.verify": True, "gc.grace": configs.DEFAULT_GRACE}
_IGNORE_LINE = f"/{configs.LOCAL_FILE}"

assert {f.name for f in fields(configs.Config)} >= {"cache_dir", "link", "verify", "grace"}  # _DEFAULTS mirrors them


class NotSet(MlvError):
    """The key is valid but has no value in the file asked about (exit 1, as `git config`)."""


def split(key: str) -> tuple[str, ...]:
    """The parts of a dotted key, checked against the config's sections and keys.

    >>> split("cache.link"), split("remotes.origin.url")
    (('cache', 'link'), ('remotes', 'origin', 'url'))
    """
    parts = tuple(key.split("."))
    section = parts[0]
    if section not in configs._SECTIONS:
        near = difflib.get_close_matches(section, list(configs._SECTIONS), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise UsageError(f"unknown key '{key}': there is no section '{section}'; sections: "
                         f"{', '.join(configs._SECTIONS)} (e.g. cache.link, gc.grace, core.remote, remotes.NAME.url).{hint}")
    if section == "remotes":
        if len(parts) != 3 or not configs.REMOTE_NAME.fullmatch(parts[1]):
            raise UsageError(f"'{key}' is not a remote setting; write remotes.NAME.KEY, e.g. remotes.origin.url "
                             f"(KEY one of {', '.join(configs.REMOTE_KEYS)})")
        if parts[2] not in configs.REMOTE_KEYS:
            raise configs._unknown(None, key, list(configs.REMOTE_KEYS))
        return parts
    valid = sorted(configs._SECTIONS[section])
    if len(parts) != 2 or parts[1] not in valid:
        raise configs._unknown(None, key, [f"{section}.{k}" for k in valid] if len(parts) != 2 else valid)
    return parts


def get(dot: Path, key: str, *, local: bool = False) -> object:
    """The value of ``key``: as the repo sees it (the local file over the shared one, then the default), or with
    ``local`` as ``config.local.yaml`` holds it. ``NotSet`` if it has none."""
    parts = split(key)
    configs.load_repo(dot)  # a malformed file is reported as such, not as a missing key
    shared, mine = configs.read_data(dot / configs.FILE), configs.read_data(dot / configs.LOCAL_FILE)
    data = (mine or {}) if local else configs.merge(shared or {}, mine or {})
    node: object = data
    for part in parts:
        node = node.get(part) if isinstance(node, dict) else None
    if node is not None:
        return node
    if not local and key in _DEFAULTS:
        return _DEFAULTS[key]
    where = f".mlv/{configs.LOCAL_FILE}" if local else f".mlv/{configs.FILE} or .mlv/{configs.LOCAL_FILE}"
    raise NotSet(f"'{key}' is not set in {where}; set it with `mlv config {'--local ' if local else ''}{key} VALUE`")


def set_value(dot: Path, key: str, value: str | None, *, local: bool = False) -> Path:
    """Write ``key: value`` (``value`` None: remove the key) into the shared or the local file; returns the file."""
    parts = split(key)
    path = dot / (configs.LOCAL_FILE if local else configs.FILE)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = "" if local else configs.TEMPLATE
    configs.load_repo(dot)  # both files are sound before either is edited
    new_text = _edited(text, parts, None if value is None else _typed(key, parts, value), path)
    candidate = configs._data(new_text, path)
    if local:  # on its own it may name a remote the shared file defines: checked as the repo will read it
        configs.build(configs.merge(configs.read_data(dot / configs.FILE) or {}, candidate), path)
        _ignore_local(dot)
    else:  # committed: it must stand on its own for a teammate, and still combine with this machine's file
        configs.build(candidate, path)
        configs.build(configs.merge(candidate, configs.read_data(dot / configs.LOCAL_FILE) or {}), dot / configs.LOCAL_FILE)
    atomic.write_text(path, new_text)
    return path


def _typed(key: str, parts: tuple[str, ...], value: str) -> object:
    if key not in _TYPED and not (parts[0] == "remotes" and parts[-1] in _TYPED):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise UsageError(f"'{key}': {value!r} is not a value (write e.g. true, 3600 or [DB_URL, '*_DSN'])") from None


def _edited(text: str, parts: tuple[str, ...], value: object, path: Path) -> str:
    """``text`` with the key at ``parts`` set to ``value`` (None: removed, with mappings it leaves empty)."""
    from ruamel.yaml import YAML

    editor = YAML()  # round-trip mode: comments, key order and styles survive
    editor.preserve_quotes = True
    editor.indent(mapping=2, sequence=4, offset=2)
    configs._data(text, path)  # a file that does not parse is reported by the config's own checks
    doc = editor.load(text) if text.strip() else None
    if doc is None:
        doc = editor.load("{}\n")
        doc.fa.set_block_style()
    chain = [doc]
    for part in parts[:-1]:
        node = chain[-1].get(part)
        if not isinstance(node, dict):
            if value is None:
                raise NotSet(f"'{'.'.join(parts)}' is not set in {path}; nothing to unset")
            chain[-1][part] = node = {}
        chain.append(node)
    if value is None:
        if parts[-1] not in chain[-1]:
            raise NotSet(f"'{'.'.join(parts)}' is not set in {path}; nothing to unset")
        del chain[-1][parts[-1]]
        for parent, part in zip(reversed(chain[:-1]), reversed(parts[:-1])):
            if parent[part]:
                break
            del parent[part]
    else:
        chain[-1][parts[-1]] = value
    out = io.StringIO()
    editor.dump(doc, out)
    return "" if out.getvalue().strip() in ("{}", "") else out.getvalue()


def _ignore_local(dot: Path) -> None:
    """Add ``config.local.yaml`` to ``.mlv/.gitignore`` where the repo has one without it (made before it was)."""
    ignore = dot / ".gitignore"
    try:
        lines = ignore.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return  # not in git: nothing to keep out of it
    if _IGNORE_LINE not in lines:
        atomic.write_text(ignore, "\n".join([*lines, _IGNORE_LINE]) + "\n")


def render(value: object) -> str:
    """A value as the user would write it in the file.

    >>> render(True), render(3600), render(["A", "*_DSN"]), render("s3://b/x")
    ('true', '3600', "[A, '*_DSN']", 's3://b/x')
    """
    if isinstance(value, str):
        return value
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


# -- remotes (`mlv remote`) ---------------------------------------------------------------


def add_remote(path: Path, remote: configs.RemoteConfig, *, default: bool) -> bool:
    """Add ``remote`` to ``path`` (a repo's ``.mlv/config.yaml``); returns whether it became the default.

    The first remote always becomes the default. A local remote may not overlap the
    repo's ``.mlv/`` or its cache (inside them, or holding them): pushing would write
    into the store it copies from.
    """
    remote = configs.parse_remote(remote.name, remote.to_dict())
    config = configs.load(path)
    if remote.name in config.remotes:
        raise UsageError(f"remote '{remote.name}' already exists ({config.remotes[remote.name].url}); "
                         f"run `mlv remote remove {remote.name}` first to replace it")
    _refuse_inside_repo_store(path, config, remote)
    default = default or not config.remotes
    _write(path, replace(config, remotes={**config.remotes, remote.name: remote},
                         default_remote=remote.name if default else config.default_remote))
    return default


def _refuse_inside_repo_store(path: Path, config: configs.Config, remote: configs.RemoteConfig) -> None:
    where = configs.local_path(remote, path.parent.parent)
    if where is None:
        return
    where = where.resolve()
    for guarded in (path.parent.resolve(), (path.parent / config.cache_dir).resolve()):
        if where == guarded or guarded in where.parents or where in guarded.parents:
            raise UsageError(f"remote '{remote.name}' ({remote.url}) overlaps '{guarded}', which mlv manages "
                             "itself; put the remote in a folder outside the repo's .mlv/ directory and cache")


def remove_remote(path: Path, name: str) -> str | None:
    """Remove the remote ``name``; returns the default remote afterwards.

    Removing the default clears it, unless exactly one remote remains: that one
    becomes the default.
    """
    config = configs.load(path)
    configs.known(config, name)
    remotes = {n: r for n, r in config.remotes.items() if n != name}
    default = config.default_remote
    if default == name:
        default = next(iter(remotes)) if len(remotes) == 1 else None
    _write(path, replace(config, remotes=remotes, default_remote=default))
    return default


def set_default_remote(path: Path, name: str) -> None:
    """Make ``name`` (which must be configured) the default remote."""
    config = configs.load(path)
    configs.known(config, name)
    _write(path, replace(config, default_remote=name))


def _write(path: Path, config: configs.Config) -> None:
    """Write ``config``'s remotes and default into ``path``, editing the file in place (ruamel.yaml's round
    trip): every other section, the comments and the layout stay as they were."""
    import io

    from ruamel.yaml import YAML

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = configs.TEMPLATE
    editor = YAML()  # round-trip mode: comments, key order and styles survive
    editor.preserve_quotes = True
    editor.indent(mapping=2, sequence=4, offset=2)
    doc = editor.load(text)
    if doc is None:
        doc = editor.load("{}\n")
    remotes = {name: remote.to_dict() for name, remote in config.remotes.items()}
    if doc.get("remotes") != remotes:
        doc["remotes"] = remotes  # a plain mapping: written in block style
    core = doc.get("core")
    if config.default_remote is not None:
        if core is None:
            doc["core"] = core = {}
        core["remote"] = config.default_remote
    elif core is not None and "remote" in core:
        del core["remote"]
        if not core:
            del doc["core"]
    out = io.StringIO()
    editor.dump(doc, out)
    new_text = out.getvalue()
    written = configs.parse_text(new_text, path)
    if written != config:  # a bug in the writer, never a user error
        raise RuntimeError(f"writing {path} would load as {written!r}, not {config!r}")
    atomic.write_text(path, new_text)


def write_template(path: Path) -> None:
    atomic.write_text(path, configs.TEMPLATE)
