"""``.mlv/config.yaml``: committed settings (cache, gc, remotes), never credentials.

Unknown keys and wrong types are ``ConfigError`` (exit 2) naming the key, so a typo
never silently falls back to a default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlv.storage import atomic
from mlv.storage.errors import ConfigError

LINK_MODES = ("auto", "reflink", "hardlink", "symlink", "copy")
DEFAULT_GRACE = 3600

TEMPLATE = """\
# mlv settings; committed to git. Credentials never go here (use the environment or AWS profiles).
cache:
  dir: cache        # object store, relative to .mlv/ (or an absolute path)
  link: auto        # how checkout materializes files: auto (reflink, else copy) | reflink | hardlink | symlink | copy
  verify: true      # re-hash objects while checking them out; damaged data is never written
gc:
  grace: 3600       # seconds an unreferenced object is kept before `mlv gc` may remove it
remotes: {}
"""


@dataclass(frozen=True, slots=True)
class Config:
    cache_dir: str = "cache"
    link: str = "auto"
    verify: bool = True
    grace: int = DEFAULT_GRACE
    remotes: dict = field(default_factory=dict)
    default_remote: str | None = None


_SECTIONS = {"cache": {"dir", "link", "verify"}, "gc": {"grace"}, "remotes": None, "core": {"remote"}}


def load(path: Path) -> Config:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return Config()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})", path=str(path)) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of sections ({', '.join(_SECTIONS)})", path=str(path))
    for section, value in data.items():
        if section not in _SECTIONS:
            raise ConfigError(f"{path}: unknown section '{section}'; valid: {', '.join(_SECTIONS)}", path=str(path))
        keys = _SECTIONS[section]
        if keys is not None and value is not None:
            if not isinstance(value, dict):
                raise ConfigError(f"{path}: '{section}' must be a mapping", path=str(path))
            for key in value:
                if key not in keys:
                    raise ConfigError(
                        f"{path}: unknown key '{section}.{key}'; valid: {', '.join(sorted(keys))}", path=str(path)
                    )
    if not isinstance(data.get("remotes") or {}, dict):
        raise ConfigError(f"{path}: 'remotes' must be a mapping of name -> settings", path=str(path))
    cache = data.get("cache") or {}
    gc = data.get("gc") or {}
    config = Config(
        cache_dir=str(cache.get("dir", "cache")),
        link=cache.get("link", "auto"),
        verify=cache.get("verify", True),
        grace=gc.get("grace", DEFAULT_GRACE),
        remotes=dict(data.get("remotes") or {}),
        default_remote=(data.get("core") or {}).get("remote"),
    )
    if config.link not in LINK_MODES:
        raise ConfigError(f"{path}: 'cache.link' is {config.link!r}; choose one of {', '.join(LINK_MODES)}")
    if not isinstance(config.verify, bool):
        raise ConfigError(f"{path}: 'cache.verify' must be true or false, got {config.verify!r}")
    if not isinstance(config.grace, int) or isinstance(config.grace, bool) or config.grace < 0:
        raise ConfigError(f"{path}: 'gc.grace' must be a non-negative number of seconds, got {config.grace!r}")
    return config


def write_template(path: Path) -> None:
    atomic.write_text(path, TEMPLATE)
