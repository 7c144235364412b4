"""Remotes that stop answering, and a profile that is not there: every wait is bounded and every
failure is one message. Real CLI (in-process and as a subprocess), real sockets: a server that
accepts and never answers, a proxy to moto that freezes mid-upload.

A "clone" is a `git clone` of the repo: pointers, `mlv.lock` and `.mlv/config.yaml`, no store.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import S3_ENV, S3_ENV_REMOVED
from helpers import commit_all, git, make_tree, run_mlv, snapshot

SMALL = {f"data/f{i:02d}.txt": f"row {i}\n" * (i + 1) for i in range(20)}


def clone(src: Path, name: str) -> Path:
    dst = src.parent / name
    git(src.parent, "clone", "-q", str(src), str(dst))
    return dst


# -- servers that stop answering -----------------------------------------------------------------
class Silent(str):
    """``http://127.0.0.1:<port>`` of a server that accepts connections and never answers; ``held``: them."""

    held: list[socket.socket]


@pytest.fixture
def silent(monkeypatch) -> Iterator[Silent]:
    for name, value in S3_ENV.items():  # fake credentials and no AWS setup of the machine's: as for moto
        monkeypatch.setenv(name, value)
    for name in S3_ENV_REMOVED:
        monkeypatch.delenv(name, raising=False)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    url = Silent(f"http://127.0.0.1:{server.getsockname()[1]}")
    url.held = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            url.held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield url
    finally:
        server.close()
        for conn in url.held:
            conn.close()


def silent_remote(repo: Path, cli, endpoint: str, *settings: str) -> None:
    cli("remote", "add", "dead", "s3://bucket/x", "--endpoint-url", endpoint, *settings)


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: remote 'dead'"), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_a_silent_endpoint_fails_a_push_in_under_a_minute_at_the_defaults(git_repo, cli, silent):
    make_tree(git_repo, SMALL)
    cli("add", "data")
    silent_remote(git_repo, cli, silent)
    before = snapshot(git_repo)
    started = time.monotonic()
    result = run_mlv(git_repo, "push", timeout=120)
    took = time.monotonic() - started
    assert_one_line_error(result, "did not answer in time", "15 s per try, 3 tries", "'remotes.dead.timeout'")
    assert took < 60, f"took {took:.0f} s"
    assert snapshot(git_repo) == before


@pytest.mark.parametrize("command", [["fetch"], ["pull"], ["fsck", "--remote", "dead"]])
def test_a_silent_endpoint_fails_fetch_pull_and_fsck_within_the_configured_time(git_repo, cli, silent,
                                                                                monkeypatch, command):
    make_tree(git_repo, SMALL)
    cli("add", "data")
    silent_remote(git_repo, cli, silent, "--timeout", "1", "--retries", "1")
    commit_all(git_repo, "data")
    other = clone(git_repo, "other")  # pointers only: everything must come from the remote
    before = snapshot(other)
    started = time.monotonic()
    result = run_mlv(other, *command, timeout=60)
    took = time.monotonic() - started
    assert_one_line_error(result, "did not answer in time", "1 s per try, 2 tries")
    assert took < 15, f"took {took:.0f} s"
    after = snapshot(other)
    assert after.pop(".mlv/lock", b"") == b"" and after == before  # (the repo lock's file may now exist)


class FreezingProxy:
    """A TCP proxy to ``upstream`` that passes ``budget`` bytes of requests, then stops reading and
    answering, as a server whose process was stopped mid-upload does (its TCP window closes)."""

    def __init__(self, upstream: str, budget: int) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self.upstream = (host, int(port))
        self.budget = budget
        self.frozen = threading.Event()
        self.lock = threading.Lock()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, request: bool) -> None:
        try:
            while not self.frozen.is_set():
                data = source.recv(65536)
                if not data:
                    return
                if request:
                    with self.lock:
                        self.budget -= len(data)
                        if self.budget < 0:
                            self.frozen.set()
                if self.frozen.is_set():
                    break
                sink.sendall(data)
        except OSError:
            return
        self.frozen.wait()  # frozen: read nothing more, answer nothing more

    def close(self) -> None:
        for s in self.sockets:
            s.close()


def test_a_server_that_freezes_mid_upload_fails_the_push_in_bounded_time(git_repo, cli, s3_endpoint, s3_bucket):
    import boto3

    (git_repo / "huge.bin").write_bytes(os.urandom(48 * 1024 * 1024))  # multipart: 8 MiB parts
    [added] = cli.json("add", "huge.bin")
    proxy = FreezingProxy(s3_endpoint, budget=20 * 1024 * 1024)
    try:
        cli("remote", "add", "dead", f"s3://{s3_bucket}/store", "--endpoint-url", proxy.url,
            "--timeout", "2", "--retries", "1")
        started = time.monotonic()
        result = run_mlv(git_repo, "push", "-j", "2", timeout=120)
        took = time.monotonic() - started
    finally:
        proxy.close()
    assert proxy.frozen.is_set()
    assert_one_line_error(result, "uploading", "did not answer in time")
    assert "stopped answering mid-upload" in result.stderr or "Read timeout" in result.stderr
    assert took < 40, f"took {took:.0f} s"
    hexdigest = added["digest"].partition(":")[2]
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
        Bucket=s3_bucket).get("Contents", [])]
    assert f"store/{hexdigest[:2]}/{hexdigest[2:]}" not in keys  # an upload appears whole or not at all


# -- a profile that is not there -----------------------------------------------------------------
def test_a_missing_profile_is_a_configuration_error_and_nothing_is_sent(repo, cli, silent, monkeypatch, tmp_path):
    config = make_tree(tmp_path / "aws", {"config": "[profile other]\nregion = eu-west-1\n"}) / "config"
    credentials = make_tree(tmp_path / "aws", {"credentials": "[other]\n"}) / "credentials"
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    make_tree(repo, {"a.txt": "a\n"})
    cli("add", "a.txt")
    cli("remote", "add", "dead", "s3://bucket/x", "--endpoint-url", silent, "--profile", "nope")
    for command in (["push"], ["fetch"], ["fsck", "--remote", "dead"]):
        result = cli(*command, code=2)
        message = result.stderr.strip()
        assert len(message.splitlines()) == 1, message
        assert "AWS profile 'nope'" in message and "is not defined on this machine" in message
        assert str(config) in message and str(credentials) in message and "nothing was sent" in message
        assert "reachable" not in message
    assert silent.held == []  # nothing was attempted
