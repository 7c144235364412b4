"""Fixtures shared by the whole suite: the `mlv` CLI driven in-process, and fresh repos.

``cli(...)`` runs ``mlv.cli.main:app`` through ``typer.testing.CliRunner`` in the current
directory and checks the exit code. Whatever the code, an exception other than the
CLI's own exit is a bug (users must see one message, never a traceback), so it fails
the test with its traceback.

``s3_endpoint`` is a real S3-compatible server (moto in server mode, one per session, on
127.0.0.1): boto3 and s3fs talk HTTP to it exactly as to AWS, from this process or from
a subprocess, which inherits the fake credentials set in ``os.environ``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import S3_ENV, S3_ENV_REMOVED, Cli, git_init


@pytest.fixture
def cli() -> Cli:
    return Cli()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> Path:
    """A plain directory (no git) with ``mlv init`` done; the cwd for the test."""
    root = tmp_path / "repo"
    root.mkdir()
    monkeypatch.chdir(root)
    cli("init", "--no-scm")
    return root


@pytest.fixture
def git_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cli: Cli) -> Path:
    """A git repo with ``mlv init`` done; the cwd for the test."""
    root = tmp_path / "repo"
    root.mkdir()
    git_init(root)
    monkeypatch.chdir(root)
    cli("init")
    return root


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """``http://127.0.0.1:<port>`` of a moto S3 server started once per session (stopped at the end)."""
    from moto.server import ThreadedMotoServer  # imported here: only S3 tests need moto

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    with pytest.MonkeyPatch.context() as mp:
        for name, value in S3_ENV.items():
            mp.setenv(name, value)
        for name in S3_ENV_REMOVED:
            mp.delenv(name, raising=False)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)  # port 0: a free one, no race
        server.start()
        try:
            host, port = server.get_host_and_port()
            yield f"http://{host}:{port}"
        finally:
            server.stop()


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """The name of a new, empty bucket on ``s3_endpoint`` (unique, so tests never share one)."""
    import boto3

    name = f"mlv-test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name
