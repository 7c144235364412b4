"""Which values are secrets, and masking them (``***``) out of what mlv prints, logs, stores or pushes.

A stage that echoes ``$AWS_SECRET_ACCESS_KEY`` must not put it in its log, the store, a
remote and every teammate's ``mlv show``. As CI systems do, mlv masks the *values* of
credential-like environment variables wherever captured output goes:

- ``AWS_*``, except the settings that are not credentials (region, profile, config-file
  paths, endpoint URLs, retry and timeout settings);
- names ending in ``_TOKEN`` or ``_KEY`` (or just so), or holding ``SECRET``, ``PASSWORD``, ``PASSWD`` or
  ``CREDENTIAL`` anywhere (any case);
- names matching a pattern listed under ``core.mask`` in ``.mlv/config.yaml`` (``fnmatch``
  patterns such as ``DB_URL`` or ``*_DSN``).

Values shorter than ``MIN_LENGTH`` characters are left alone: masking ``1`` or ``on``
would garble every line and hide nothing.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping

MASK = "***"
MIN_LENGTH = 4
_CREDENTIAL = re.compile(r"(^|_)(TOKEN|KEY)$|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
_AWS_SETTINGS = re.compile(
    r"AWS_(DEFAULT_)?(REGION|PROFILE|OUTPUT)|AWS_(CONFIG|SHARED_CREDENTIALS|CA_BUNDLE|WEB_IDENTITY_TOKEN)_FILE"
    r"|AWS_ENDPOINT_URL.*|AWS_(RETRY_MODE|MAX_ATTEMPTS|SDK_.*|EC2_METADATA_.*|STS_REGIONAL_ENDPOINTS|ROLE_ARN"
    r"|ROLE_SESSION_NAME|PAGER|USE_.*)", re.IGNORECASE)


def is_secret(name: str, patterns: Iterable[str] = ()) -> bool:
    """Whether the environment variable ``name`` holds a credential.

    >>> [is_secret(n) for n in ("AWS_SECRET_ACCESS_KEY", "AWS_REGION", "GITHUB_TOKEN", "DB_PASSWORD", "HOME")]
    [True, False, True, True, False]
    >>> is_secret("DB_URL"), is_secret("DB_URL", ["DB_*"]), is_secret("AWS_SHARED_CREDENTIALS_FILE")
    (False, True, False)
    """
    if any(fnmatch.fnmatchcase(name, p) for p in patterns):
        return True
    if name.upper().startswith("AWS_"):
        return not _AWS_SETTINGS.fullmatch(name)  # AWS_SHARED_CREDENTIALS_FILE is a path, not a credential
    return bool(_CREDENTIAL.search(name))


def values(patterns: Iterable[str] = (), environ: Mapping[str, str] | None = None) -> list[str]:
    """The secret values of ``environ`` (default: this process's), longest first."""
    patterns = tuple(patterns)
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if len(v) >= MIN_LENGTH and is_secret(k, patterns)}
    return sorted(found, key=len, reverse=True)


def scrub(text: str, patterns: Iterable[str] = ()) -> str:
    """``text`` with every secret value of the environment replaced by ``***``."""
    found = values(patterns)
    return re.sub("|".join(map(re.escape, found)), MASK, text) if found else text


class Masker:
    """Masks secret values in a byte stream that arrives in chunks of any size.

    A value may straddle two chunks, so a match is only decided once the bytes after its
    start are all there: what could still begin a secret (a tail of at most ``longest - 1``
    bytes that some secret starts with) is held back until more arrives, or until ``flush``.
    Nothing else is held, so a finished line streams on at once (``engine.liveoutput``).
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        ordered = sorted({s.encode() for s in secrets if s}, key=len, reverse=True)  # longest wins where they overlap
        self.pattern = re.compile(b"|".join(re.escape(s) for s in ordered)) if ordered else None
        self.keep = max((len(s) for s in ordered), default=1) - 1
        self.secrets = ordered
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        if self.pattern is None:
            return chunk
        data = self.pending + chunk
        cut = self._held_from(data)  # a match starting here or later may still grow with the next chunk
        out, done = bytearray(), 0
        for m in self.pattern.finditer(data):
            if m.start() >= cut:
                break
            out += data[done:m.start()] + MASK.encode()
            done = m.end()
        end = max(done, cut)
        out += data[done:end]
        self.pending = data[end:]
        return bytes(out)

    def _held_from(self, data: bytes) -> int:
        """Where the tail that a secret could still begin with starts (``len(data)``: no such tail)."""
        for start in range(max(0, len(data) - self.keep), len(data)):
            tail = data[start:]
            if any(s.startswith(tail) for s in self.secrets):
                return start
        return len(data)

    def flush(self) -> bytes:
        if self.pattern is None:
            return b""
        data, self.pending = self.pending, b""
        return self.pattern.sub(MASK.encode(), data)
