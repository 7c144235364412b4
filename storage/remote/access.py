"""Reaching a remote: its fsspec filesystem with every wait bounded, and what a failure tells the user.

An S3 request waits at most ``timeout`` seconds (``remotes.NAME.timeout``, default
``REMOTE_TIMEOUT``) for the next bytes of a reply, and at most 5 of them to connect; botocore's
standard retry mode tries it ``1 + retries`` times (``remotes.NAME.retries``, default
``REMOTE_RETRIES``), with jittered backoff, throttling and 5xx answers included. s3fs's own retry
loop runs once: it would multiply botocore's tries (5 × 4 × 60 s was the old worst case, a
quarter of an hour). So a silent endpoint fails in about ``(1 + retries) × timeout``: 45 s at
the defaults. A request body is bounded by ``multipart``'s watch (the client has no write
timeout); a server that stops taking bytes for ``timeout`` seconds fails the upload.

The connection pool holds a connection for every request mlv may have in flight, so none
waits for a free one while the watch counts.

A named AWS profile that is not defined on this machine is a configuration error found
before any request (exit 2), not a reachability problem.
"""

from __future__ import annotations

import sys
from pathlib import Path

import fsspec
from mlv.storage.workspace.config import REMOTE_RETRIES, REMOTE_TIMEOUT, RemoteConfig, local_path
from mlv.storage.errors import ConfigError, MlvError, UsageError
from mlv.storage.remote.multipart import Stalled

CONNECT_TIMEOUT = 5  # seconds: a TCP connect either happens in this or not at all (capped by `timeout`)


class RemoteError(MlvError):
    """A remote could not be reached, refused access, or holds something unusable (exit 1)."""


def limits(config: RemoteConfig) -> tuple[float, int]:
    """``(timeout, retries)`` of a remote: its own settings, else the defaults.

    >>> limits(RemoteConfig("o", "s3://b", timeout=2)), limits(RemoteConfig("o", "s3://b", retries=0))
    ((2, 2), (15, 0))
    """
    return (config.timeout or REMOTE_TIMEOUT, REMOTE_RETRIES if config.retries is None else config.retries)


def filesystem(config: RemoteConfig, repo: Path, *, jobs: int) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and root path of a remote; for S3 with the timeouts and retries above."""
    if (path := local_path(config, repo)) is not None:
        return fsspec.filesystem("file"), str(path)
    options: dict = {"skip_instance_cache": True}
    if config.protocol in ("s3", "s3a"):
        check_profile(config)
        timeout, retries = limits(config)
        options["config_kwargs"] = {
            "connect_timeout": min(timeout, CONNECT_TIMEOUT), "read_timeout": timeout,
            "retries": {"total_max_attempts": 1 + retries, "mode": "standard"},
            # every request in flight has its connection: jobs at once, each multipart upload a window of parts
            "max_pool_connections": max(10, 2 * jobs + 2),
        }
        if config.endpoint_url:
            options["endpoint_url"] = config.endpoint_url
        if config.region:
            options["client_kwargs"] = {"region_name": config.region}
        if config.profile:
            options["profile"] = config.profile
    try:
        fs, root = fsspec.core.url_to_fs(config.url, **options)
    except (ImportError, ValueError) as exc:
        raise UsageError(
            f"remote '{config.name}': cannot open {config.url!r} ({exc}); for {config.protocol}:// URLs install "
            "the fsspec implementation (s3fs, gcsfs, adlfs, sshfs…)"
        ) from None
    if config.protocol in ("s3", "s3a"):
        fs.retries = 1  # s3fs's loop around botocore's: one pass, or the tries multiply
    return fs, root


def check_profile(config: RemoteConfig) -> None:
    """A remote's AWS profile must be defined on this machine (``ConfigError`` naming where profiles live)."""
    if not config.profile:
        return
    import botocore.session

    session = botocore.session.Session()
    if config.profile not in session.available_profiles:
        raise _no_profile(config, config.profile, session)


def _no_profile(config: RemoteConfig, profile: str, session=None) -> ConfigError:
    if session is None:
        import botocore.session

        session = botocore.session.Session()
    files = " and ".join(str(session.get_config_variable(v)) for v in ("config_file", "credentials_file"))
    named = (f"'remotes.{config.name}.profile' in .mlv/config.yaml" if config.profile == profile
             else "the AWS_PROFILE environment variable")
    return ConfigError(
        f"remote '{config.name}': the AWS profile '{profile}' (from {named}) is not defined on this machine; "
        f"profiles are read from {files} (AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE move them). "
        f"Define it (`aws configure --profile {profile}`) or name a profile that exists; nothing was sent"
    )


def transport_errors() -> tuple[type[BaseException], ...]:
    """What reaching a remote may raise: OS errors (s3fs translates S3 errors to them), timeouts,
    and the AWS and HTTP client errors, where those libraries are loaded."""
    errors: list[type[BaseException]] = [OSError, TimeoutError, ValueError]
    if (botocore := sys.modules.get("botocore.exceptions")) is not None:
        errors += [botocore.BotoCoreError, botocore.ClientError]
    if (aiohttp := sys.modules.get("aiohttp")) is not None:
        errors.append(aiohttp.ClientError)
    if (fs_errors := sys.modules.get("fsspec.exceptions")) is not None:
        errors.append(fs_errors.FSTimeoutError)
    return tuple(errors)


def failure(config: RemoteConfig, where: str, doing: str, exc: BaseException) -> tuple[type[MlvError], str]:
    """The error class and one-line message (not yet scrubbed of secrets) for a failed remote call."""
    botocore = sys.modules.get("botocore.exceptions")
    if botocore is not None and isinstance(exc, botocore.ProfileNotFound):
        error = _no_profile(config, str(exc.kwargs.get("profile", "")))
        return type(error), str(error)
    return RemoteError, f"{where}: {doing} failed: {_describe(exc)}; {_hint(config, exc)}"


def _describe(exc: BaseException) -> str:
    text = " ".join((str(exc) or type(exc).__name__).split())  # one line, whatever the library wrote
    return text if len(text) < 400 else text[:400] + "…"


def _hint(config: RemoteConfig, exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, PermissionError) or "Credential" in name or "AccessDenied" in str(exc):
        return ("check the credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in the environment, or an AWS "
                "profile (`mlv remote add … --profile P`); mlv never stores them")
    if isinstance(exc, FileNotFoundError):
        return "check the URL: the bucket or folder must exist (mlv does not create buckets)"
    if isinstance(exc, (TimeoutError, Stalled)) or "Timeout" in name:
        timeout, retries = limits(config)
        return (f"the server did not answer in time ({timeout:g} s per try, {1 + retries} tries); check that it is "
                f"up and reachable, or give it longer with 'remotes.{config.name}.timeout' (and 'retries') in "
                ".mlv/config.yaml; nothing local was changed")
    return "check the URL and endpoint, and that the server is reachable; nothing local was changed"
