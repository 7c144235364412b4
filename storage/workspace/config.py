"""``.mlv/config.yaml``: committed settings (cache, gc, remotes), never credentials; and
``.mlv/config.local.yaml``: git-ignored, this machine's overrides, laid over it key by key.

Unknown keys and wrong types are ``ConfigError`` (exit 2) naming the file and the key,
so a typo never silently falls back to a default. A remote URL carrying a password or
a secret query parameter is refused without echoing the secret: credentials come from
the environment or AWS profiles, because this file is committed to git.

This module reads and checks both files; ``configedit`` writes them. Importing this module
must stay cheap: ``mlv status`` loads it, so no fsspec (and
ruamel.yaml only when writing).
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from mlv.storage import paths, yamlfile
from mlv.storage.errors import ConfigError, UsageError

FILE = "config.yaml"  # committed
LOCAL_FILE = "config.local.yaml"  # git-ignored: this machine's overrides (a personal remote, a profile)
LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")
DEFAULT_GRACE = 3600

TEMPLATE = """\
# mlv settings; committed to git. Credentials never go here (use the environment or AWS profiles).
cache:
  dir: cache        # object store: a folder inside .mlv/, relative to it
  link: auto        # how checkout materializes files: auto (reflink, else copy) | reflink | hardlink | symlink | copy
  verify: true      # re-hash objects while checking them out; damaged data is never written
gc:
  grace: 3600       # seconds an unreferenced object is kept before `mlv gc` may remove it
remotes: {}
"""

REMOTE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
REMOTE_KEYS = ("url", "endpoint_url", "region", "profile", "timeout", "retries")
_REMOTE_TEXT_KEYS = ("url", "endpoint_url", "region", "profile")
REMOTE_TIMEOUT = 15  # seconds a request may wait to connect, or for the next bytes of a reply (s3fs's own default)
REMOTE_RETRIES = 2  # tries after the first: a silent endpoint fails in (1 + retries) x timeout, under a minute
S3_PROTOCOLS = ("s3", "s3a")
LOCAL_PROTOCOLS = ("file", "local")


@dataclass(frozen=True, slots=True)
class RemoteConfig:
    """One ``remotes.NAME`` entry: where pushed objects go, plus S3 connection settings."""

    name: str
    url: str  # any fsspec URL, or a local path (relative: to the repo root)
    endpoint_url: str | None = None  # s3 only, e.g. MinIO or moto
    region: str | None = None  # s3 only
    profile: str | None = None  # s3 only: an AWS profile name; the credentials stay in ~/.aws
    timeout: float | None = None  # s3 only: seconds a request may wait to connect or to hear more (REMOTE_TIMEOUT)
    retries: int | None = None  # s3 only: tries after the first (REMOTE_RETRIES)

    @property
    def protocol(self) -> str:
        """The fsspec protocol of ``url``, as ``fsspec.utils.get_protocol`` reads it.

        >>> RemoteConfig("o", "s3://bucket/x").protocol, RemoteConfig("o", "../store").protocol
        ('s3', 'file')
        """
        parts = re.split(r"(::|://)", self.url, maxsplit=1)
        return parts[0] if len(parts) > 1 else "file"

    def to_dict(self) -> dict[str, str | float | int]:
        """The settings as written under ``remotes.NAME``: only the keys that are set."""
        return {k: v for k in REMOTE_KEYS if (v := getattr(self, k)) is not None}


@dataclass(frozen=True, slots=True)
class Config:
    cache_dir: str = "cache"
    link: str = "auto"
    verify: bool = True
    grace: int = DEFAULT_GRACE
    remotes: dict[str, RemoteConfig] = field(default_factory=dict)
    default_remote: str | None = None
    mask: tuple[str, ...] = ()  # more environment variables (fnmatch patterns) whose values are masked


_SECTIONS = {"cache": {"dir", "link", "verify"}, "gc": {"grace"}, "remotes": None, "core": {"remote", "mask"}}


def _fail(path: Path | None, message: str) -> ConfigError:
    return ConfigError(f"{path}: {message}", path=str(path)) if path is not None else ConfigError(message)


def _unknown(path: Path | None, key: str, valid: list[str]) -> ConfigError:
    near = difflib.get_close_matches(key.rpartition(".")[2], valid, n=1)
    hint = f" Did you mean '{near[0]}'?" if near else ""
    return _fail(path, f"unknown key '{key}'; valid: {', '.join(sorted(valid))}.{hint}")


def load(path: Path) -> Config:
    """The settings in ``path`` (defaults if it does not exist); ``ConfigError`` if malformed."""
    try:
        text = yamlfile.read_text(path, source=str(path), limit=yamlfile.CONFIG_BYTES)
    except FileNotFoundError:
        return Config()
    return parse_text(text, path)


def load_repo(dot: Path) -> Config:
    """A repo's settings: ``.mlv/config.yaml``, overridden key by key by the git-ignored ``config.local.yaml``.

    Each file is checked on its own first (so an error names the file that holds it), then the
    combination (a ``core.remote`` in one file may name a remote defined in the other).
    """
    shared = read_data(dot / FILE)
    local = read_data(dot / LOCAL_FILE)
    config = Config() if shared is None else build(shared, dot / FILE)
    return config if local is None else build(merge(shared or {}, local), dot / LOCAL_FILE)


def read_data(path: Path) -> dict | None:
    """The raw mapping in a config file, its sections and keys checked (None if there is no file)."""
    try:
        text = yamlfile.read_text(path, source=str(path), limit=yamlfile.CONFIG_BYTES)
    except FileNotFoundError:
        return None
    return _data(text, path)


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys laid on top, mappings merged key by key.

    >>> merge({"cache": {"link": "copy", "verify": True}, "remotes": {"a": {"url": "x"}}},
    ...       {"cache": {"link": "symlink"}, "remotes": {"b": {"url": "y"}}})
    {'cache': {'link': 'symlink', 'verify': True}, 'remotes': {'a': {'url': 'x'}, 'b': {'url': 'y'}}}
    """
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_text(text: str, path: Path) -> Config:
    return build(_data(text, path), path)


def _data(text: str, path: Path) -> dict:
    try:
        data = yamlfile.load(text, source=str(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise _fail(path, f"must be a mapping of sections ({', '.join(_SECTIONS)})")
    for section, value in data.items():
        if section not in _SECTIONS:
            near = difflib.get_close_matches(str(section), list(_SECTIONS), n=1)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise _fail(path, f"unknown section '{section}'; valid: {', '.join(_SECTIONS)}.{hint}")
        keys = _SECTIONS[section]
        if keys is not None and value is not None:
            if not isinstance(value, dict):
                raise _fail(path, f"'{section}' must be a mapping")
            for key in value:
                if key not in keys:
                    raise _unknown(path, f"{section}.{key}", sorted(keys))
    if not isinstance(data.get("remotes") or {}, dict):
        raise _fail(path, "'remotes' must be a mapping of name -> settings")
    return data


def build(data: dict, path: Path | None) -> Config:
    """The ``Config`` of a checked mapping; ``ConfigError`` naming ``path`` and the key for a bad value."""
    cache = data.get("cache") or {}
    gc = data.get("gc") or {}
    remotes = {str(name): parse_remote(name, settings, path=path) for name, settings in (data.get("remotes") or {}).items()}
    config = Config(
        cache_dir=str(cache.get("dir", "cache")),
        link=cache.get("link", "auto"),
        verify=cache.get("verify", True),
        grace=gc.get("grace", DEFAULT_GRACE),
        remotes=remotes,
        default_remote=(data.get("core") or {}).get("remote"),
        mask=_mask(path, (data.get("core") or {}).get("mask")),
    )
    _check_cache_dir(config.cache_dir, path)
    if config.link not in LINK_MODES:
        raise _fail(path, f"'cache.link' is {config.link!r}; choose one of {', '.join(LINK_MODES)}")
    if not isinstance(config.verify, bool):
        raise _fail(path, f"'cache.verify' must be true or false, got {config.verify!r}")
    if not isinstance(config.grace, int) or isinstance(config.grace, bool) or config.grace < 0:
        raise _fail(path, f"'gc.grace' must be a non-negative number of seconds, got {config.grace!r}")
    _check_default(config, path)
    return config


def _mask(path: Path | None, value: object) -> tuple[str, ...]:
    """``core.mask``: names (or fnmatch patterns) of environment variables whose values are secrets."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9_*?\[\]!-]+", v)
                                              for v in value):
        raise _fail(path, f"'core.mask' must be a list of environment variable names or patterns, e.g. "
                          f"[DB_URL, '*_DSN']; got {value!r}")
    return tuple(value)


_DOT_NAMES = frozenset({"runs", "tmp", "state.db", "lock", "run.lock", "config.yaml", "config.local.yaml", ".gitignore"})


def _check_cache_dir(value: str, path: Path | None) -> None:
    """``cache.dir`` is committed, so it obeys the paths rule: a folder inside ``.mlv/`` (where git
    ignores it), never a path that leads out of the repo or onto mlv's other files there."""
    why = paths.problem(value, written=False)
    if why is None and value.split("/")[0] in _DOT_NAMES:
        why = f"is mlv's own '.mlv/{value.split('/')[0]}'"
    if why is not None:
        raise _fail(path, f"'cache.dir' {value!r} {why}; it must name a folder inside .mlv/ (default: cache), "
                          "relative to .mlv/. Nothing was changed")


def _check_default(config: Config, path: Path | None) -> None:
    name = config.default_remote
    if name is None:
        return
    if not isinstance(name, str) or name not in config.remotes:
        if not config.remotes:
            raise _fail(path, f"'core.remote' is {name!r}, but no remotes are defined; "
                              "add one with `mlv remote add NAME URL`, or delete 'core.remote'")
        near = difflib.get_close_matches(str(name), list(config.remotes), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise _fail(path, f"'core.remote' is {name!r}, which is not a defined remote; "
                          f"defined: {', '.join(config.remotes)}.{hint}")


# -- one remote -----------------------------------------------------------------------

_SECRET_WORD = re.compile(r"secret|token|passw|credential|signature|apikey|accountkey", re.IGNORECASE)
_SECRET_PART = re.compile(r"(?:^|[_.-])(?:key|sig|pwd|sas)(?:$|[_.-])", re.IGNORECASE)


def _is_secret_name(name: str) -> bool:
    """Whether a query parameter or settings key names a credential.

    >>> [_is_secret_name(n) for n in ("key", "aws_secret_access_key", "X-Amz-Signature", "sig", "region", "keyspace")]
    [True, True, True, True, False, False]
    """
    return bool(_SECRET_WORD.search(name) or _SECRET_PART.search(name))


def masked(url: str) -> str | None:
    """``url`` with its credentials replaced by ``***``, or None if it carries none.

    >>> masked("s3://AKIA:abc@bucket/x")
    's3://AKIA:***@bucket/x'
    >>> masked("https://acct.blob.core.windows.net/c?sv=2022&sig=abc")
    'https://acct.blob.core.windows.net/c?sv=2022&sig=***'
    >>> masked("s3://bucket/x@2024:01"), masked("ssh://git@host/x"), masked("/plain/user:pw@path")
    (None, None, None)
    """
    found = False
    segments = url.split("::")
    for i, segment in enumerate(segments):
        scheme, sep, rest = segment.partition("://")
        if not sep:
            continue
        cut = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
        authority, tail = rest[:cut], rest[cut:]
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo and userinfo.partition(":")[2]:
            found = True
            authority = f"{userinfo.partition(':')[0]}:***@{host}"
        path, q, query = tail.partition("?")
        if q:
            query, hashmark, fragment = query.partition("#")
            params = []
            for param in query.split("&"):
                name, eq, value = param.partition("=")
                if eq and value and _is_secret_name(name):
                    found = True
                    param = f"{name}=***"
                params.append(param)
            tail = f"{path}?{'&'.join(params)}{hashmark}{fragment}"
        segments[i] = f"{scheme}://{authority}{tail}"
    return "::".join(segments) if found else None


def _credentials_error(path: Path | None, key: str, shown: str) -> ConfigError:
    return _fail(path, f"'{key}' carries credentials ({shown}). Credentials never go into the config, which is "
                       "committed to git: mlv takes them from the environment (AWS_ACCESS_KEY_ID, "
                       "AWS_SECRET_ACCESS_KEY, ...) or an AWS profile (`profile:` / `--profile`). "
                       "Remove them from the URL.")


def parse_remote(name: object, settings: object, *, path: Path | None = None) -> RemoteConfig:
    """Validate one ``remotes.NAME`` entry (from the file, or from `mlv remote add`).

    Raises ``ConfigError`` (exit 2) naming ``path`` (when given) and the key, and
    never echoing a secret found in a URL.
    """
    if not isinstance(name, str) or not REMOTE_NAME.fullmatch(name):
        under = " under 'remotes'" if path is not None else ""
        raise _fail(path, f"remote name {str(name)!r}{under} is not valid: use letters, digits, "
                          "'_', '.' and '-', starting with a letter or digit (e.g. origin, team-s3)")
    where = f"remotes.{name}"
    if not isinstance(settings, dict):
        raise _fail(path, f"'{where}' must be a mapping with at least a url, e.g. "
                          f"`{name}: {{url: s3://bucket/prefix}}`")
    for key in settings:
        if not isinstance(key, str) or key not in REMOTE_KEYS:
            if isinstance(key, str) and _is_secret_name(key):
                raise _fail(path, f"'{where}.{key}' looks like a credential; credentials never go into the "
                                  "config, which is committed to git: use the environment "
                                  "(AWS_ACCESS_KEY_ID, ...) or an AWS profile (`profile:`). Remove it.")
            raise _unknown(path, f"{where}.{key}", list(REMOTE_KEYS))
    url = settings.get("url")
    if url is None:
        raise _fail(path, f"'{where}.url' is missing; set it to an fsspec URL such as s3://bucket/prefix, "
                          "or a local directory")
    for key in _REMOTE_TEXT_KEYS:
        value = settings.get(key)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise _fail(path, f"'{where}.{key}' must be a non-empty string, got {value!r}")
        if value is not None and (shown := masked(value)) is not None:
            raise _credentials_error(path, f"{where}.{key}", shown)
    remote = RemoteConfig(name, url, settings.get("endpoint_url"), settings.get("region"), settings.get("profile"),
                          _seconds(settings.get("timeout"), f"{where}.timeout", path),
                          _count(settings.get("retries"), f"{where}.retries", path))
    if remote.protocol not in S3_PROTOCOLS:
        for key in ("endpoint_url", "region", "profile", "timeout", "retries"):
            if getattr(remote, key) is not None:
                raise _fail(path, f"'{where}.{key}' applies only to s3:// remotes, and '{name}' is a "
                                  f"{remote.protocol} remote ({url}); remove it, or use an s3:// URL")
    endpoint = remote.endpoint_url
    if endpoint is not None and not endpoint.startswith(("http://", "https://")):
        raise _fail(path, f"'{where}.endpoint_url' is {endpoint!r}; it must start with http:// or https:// "
                          "(e.g. http://127.0.0.1:9000)")
    return remote


def _seconds(value: object, key: str, path: Path | None) -> float | None:
    """A remote's ``timeout``: a number of seconds, over 0 and at most an hour.

    >>> _seconds(2.5, "t", None), _seconds(None, "t", None)
    (2.5, None)
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 3600:
        raise _fail(path, f"'{key}' must be a number of seconds over 0 and at most 3600 (e.g. 30), got {value!r}")
    return value


def _count(value: object, key: str, path: Path | None) -> int | None:
    """A remote's ``retries``: a whole number from 0 to 10."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
        raise _fail(path, f"'{key}' must be a whole number of retries from 0 to 10 (e.g. 2), got {value!r}")
    return value


def local_path(remote: RemoteConfig, root: Path) -> Path | None:
    """The directory of a local remote (``~`` expanded; relative to ``root`` if relative); None if not local.

    >>> local_path(RemoteConfig("o", "../store"), Path("/repo")), local_path(RemoteConfig("o", "s3://b"), Path("/r"))
    (PosixPath('/store'), None)
    """
    if remote.protocol not in LOCAL_PROTOCOLS:
        return None
    location = Path(remote.url.split("://", 1)[1] if "://" in remote.url else remote.url).expanduser()
    return Path(os.path.normpath(root / location))


def remote_for(config: Config, name: str | None) -> RemoteConfig:
    """The remote called ``name``, or the default one; ``UsageError`` saying how to pick one."""
    if not config.remotes:
        raise UsageError("no remote configured; add one with `mlv remote add NAME URL`")
    if name is None:
        if config.default_remote is None:
            raise UsageError(f"no default remote; pass `-r NAME` (one of: {', '.join(config.remotes)}) "
                             "or set one with `mlv remote default NAME`")
        name = config.default_remote
    return known(config, name)


def known(config: Config, name: str) -> RemoteConfig:
    if name not in config.remotes:
        if not config.remotes:
            raise UsageError(f"no remote named '{name}': no remotes are configured; add one with `mlv remote add NAME URL`")
        near = difflib.get_close_matches(name, list(config.remotes), n=1)
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise UsageError(f"no remote named '{name}'; configured remotes: {', '.join(config.remotes)}.{hint}")
    return config.remotes[name]
