"""`mlv remote add|list|remove|default`: what lands in .mlv/config.yaml, and what is refused.

Every refused command exits 2 with one message and leaves the config byte for byte as it was.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mlv.storage.workspace import config as configs

HEADER = configs.TEMPLATE.splitlines()[0]


def config_file(repo: Path) -> Path:
    return repo / ".mlv" / "config.yaml"


def refused(cli, repo: Path, *args: str, fragment: str):
    """Run ``mlv *args``, expect exit 2 with ``fragment`` in the message, and the config untouched."""
    before = config_file(repo).read_bytes()
    result = cli(*args, code=2)
    assert fragment in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert config_file(repo).read_bytes() == before
    return result


def test_first_remote_becomes_the_default_and_default_switches(repo, cli):
    assert cli("remote", "add", "origin", "s3://bucket/prefix").stdout == "added remote 'origin' → s3://bucket/prefix (default)\n"
    assert cli("remote", "add", "backup", "/srv/backup").stdout == "added remote 'backup' → /srv/backup\n"
    assert configs.load(config_file(repo)).default_remote == "origin"
    assert "(default)" in cli("remote", "add", "team", "gs://team/x", "--default").stdout
    assert [r["name"] for r in cli.json("remote", "list") if r["default"]] == ["team"]
    assert cli("remote", "default", "backup").stdout == "default remote is now 'backup'\n"
    assert configs.load(config_file(repo)).default_remote == "backup"


def test_list_json_shape_and_human_output(repo, cli):
    assert cli.json("remote", "list") == []
    assert "no remotes" in cli("remote", "list").stdout
    cli("remote", "add", "origin", "s3://b/p", "--endpoint-url", "http://127.0.0.1:5000", "--region", "us-east-1",
        "--profile", "dev")
    cli("remote", "add", "backup", "../backup")
    assert cli.json("remote", "list") == [
        {"name": "origin", "url": "s3://b/p", "default": True, "endpoint_url": "http://127.0.0.1:5000",
         "region": "us-east-1", "profile": "dev", "timeout": None, "retries": None},
        {"name": "backup", "url": "../backup", "default": False, "endpoint_url": None, "region": None, "profile": None,
         "timeout": None, "retries": None},
    ]
    lines = cli("remote", "list").stdout.splitlines()
    assert lines[0].startswith("* origin") and "s3://b/p" in lines[0] and "profile dev" in lines[0]
    assert lines[1].startswith("  backup") and "../backup" in lines[1]


def test_remove_of_the_default(repo, cli):
    for name in ("a", "b", "c"):
        cli("remote", "add", name, f"s3://bucket/{name}")
    result = cli("remote", "remove", "a")
    assert "removed remote 'a'" in result.stdout and "mlv remote default NAME" in result.stdout
    assert configs.load(config_file(repo)).default_remote is None
    cli("remote", "default", "b")
    assert "default remote is now 'c'" in cli("remote", "remove", "b").stdout  # the one left becomes the default
    assert configs.load(config_file(repo)).default_remote == "c"
    cli("remote", "remove", "c")
    assert configs.load(config_file(repo)) == configs.Config()
    assert cli.json("remote", "list") == []


def test_writes_keep_the_header_and_other_sections(repo, cli):
    path = config_file(repo)
    path.write_text(path.read_text().replace("grace: 3600", "grace: 60"))
    cli("remote", "add", "origin", "s3://b/p", "--region", "eu-west-1")
    cli("remote", "add", "backup", "/srv/backup", "--default")
    cli("remote", "remove", "origin")
    text = path.read_text()
    assert text.startswith(HEADER + "\n")
    assert "link: auto        # how checkout" in text
    config = configs.load(path)
    assert (config.grace, config.link, config.cache_dir) == (60, "auto", "cache")
    assert config.remotes == {"backup": configs.RemoteConfig("backup", "/srv/backup")}
    assert yaml.safe_load(text)["remotes"] == {"backup": {"url": "/srv/backup"}}  # no null keys written
    cli("status")  # the repo still works with the rewritten config


def test_a_relative_path_typed_in_a_subdirectory_is_stored_relative_to_the_root(repo, cli, monkeypatch):
    (repo / "sub").mkdir()
    monkeypatch.chdir(repo / "sub")
    assert "→ ../store" in cli("remote", "add", "local", "../../store").stdout
    assert configs.local_path(configs.load(config_file(repo)).remotes["local"], repo) == repo.parent / "store"


def test_duplicate_name(repo, cli):
    cli("remote", "add", "origin", "s3://b/p")
    refused(cli, repo, "remote", "add", "origin", "s3://other", fragment="`mlv remote remove origin` first")


@pytest.mark.parametrize("name", ["bad name", "-dash", "a/b", ".hidden"])
def test_bad_name(repo, cli, name):
    refused(cli, repo, "remote", "add", "--", name, "s3://b/p", fragment="is not valid")


def test_unknown_names_for_remove_and_default(repo, cli):
    refused(cli, repo, "remote", "remove", "origin", fragment="no remotes are configured")
    cli("remote", "add", "origin", "s3://b/p")
    refused(cli, repo, "remote", "remove", "orgin", fragment="configured remotes: origin. Did you mean 'origin'?")
    refused(cli, repo, "remote", "default", "nope", fragment="no remote named 'nope'")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKIAEXAMPLE:wJalrXUtnFEMIK7MDENG@bucket/p", "s3://AKIAEXAMPLE:***@bucket/p"),
        ("s3://bucket/p?secret=wJalrXUtnFEMIK7MDENG", "s3://bucket/p?secret=***"),
        ("https://acct.blob.core.windows.net/c?sp=r&sig=wJalrXUtnFEMIK7MDENG", "sp=r&sig=***"),
    ],
)
def test_credentials_in_the_url_are_refused_and_not_echoed(repo, cli, url, shown):
    result = refused(cli, repo, "remote", "add", "origin", url, fragment="carries credentials")
    assert shown in result.stderr and "environment" in result.stderr and "AWS profile" in result.stderr
    assert "wJalrXUtnFEMIK7MDENG" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("option", "url"),
    [("--endpoint-url", "file:///srv/remote"), ("--region", "/srv/remote"), ("--profile", "gs://bucket"),
     ("--timeout", "/srv/remote"), ("--retries", "../remote")],
)
def test_s3_settings_on_a_non_s3_remote_are_refused(repo, cli, option, url):
    value = {"--endpoint-url": "http://127.0.0.1:9000", "--timeout": "5", "--retries": "1"}.get(option, "x")
    refused(cli, repo, "remote", "add", "origin", url, option, value, fragment="applies only to s3:// remotes")


def test_timeout_and_retries_are_written_listed_and_read_back(repo, cli):
    cli("remote", "add", "origin", "s3://b/p", "--timeout", "30", "--retries", "0")
    cli("remote", "add", "slow", "s3://b/q", "--timeout", "2.5")
    text = config_file(repo).read_text()
    assert "timeout: 30\n" in text and "retries: 0\n" in text and "timeout: 2.5\n" in text
    rows = {r["name"]: (r["timeout"], r["retries"]) for r in cli.json("remote", "list")}
    assert rows == {"origin": (30, 0), "slow": (2.5, None)}
    assert "timeout 30, retries 0" in cli("remote", "list").stdout


@pytest.mark.parametrize(
    ("setting", "fragment"),
    [("timeout: -1", "'remotes.origin.timeout' must be a number of seconds"),
     ("timeout: soon", "'remotes.origin.timeout' must be a number of seconds"),
     ("timeout: 86400", "at most 3600"),
     ("retries: 1.5", "'remotes.origin.retries' must be a whole number"),
     ("retries: true", "'remotes.origin.retries' must be a whole number"),
     ("retries: 99", "from 0 to 10")],
)
def test_bad_timeout_or_retries_in_the_config_name_the_file_and_key(repo, cli, setting, fragment):
    path = config_file(repo)
    path.write_text(path.read_text().replace("remotes: {}", f"remotes:\n  origin:\n    url: s3://b\n    {setting}\n"))
    for args in (("remote", "list"), ("push",), ("fetch",), ("fsck", "--remote", "origin")):
        result = refused(cli, repo, *args, fragment=fragment)
        assert result.stderr.startswith(f"error: {path}: ")


def test_bad_timeout_or_retries_on_the_command_line_are_refused(repo, cli):
    refused(cli, repo, "remote", "add", "origin", "s3://b/p", "--timeout", "0", fragment="over 0")
    refused(cli, repo, "remote", "add", "origin", "s3://b/p", "--retries", "-1", fragment="from 0 to 10")


@pytest.mark.parametrize("url", [".mlv", ".mlv/remote", "./.mlv/cache/x", "ABS/.mlv/remote", "file://ABS/.mlv/x",
                                 ".", "ABS/.."])
def test_a_remote_inside_mlv_or_holding_it_is_refused(repo, cli, url):
    url = url.replace("ABS", str(repo))
    refused(cli, repo, "remote", "add", "origin", url, fragment="which mlv manages itself")


def test_a_local_remote_beside_the_repo_or_in_its_workspace_is_fine(repo, cli):
    cli("remote", "add", "beside", "../store")
    cli("remote", "add", "inside", "remote-store")
    assert [r["url"] for r in cli.json("remote", "list")] == ["../store", "remote-store"]


def test_a_hand_edited_config_with_an_unknown_key(repo, cli):
    path = config_file(repo)
    path.write_text(path.read_text().replace("remotes: {}", "remotes:\n  origin:\n    url: s3://b\n    endpoint: http://h\n"))
    for args in (("remote", "list"), ("remote", "add", "other", "s3://c"), ("status",)):
        result = refused(cli, repo, *args, fragment="unknown key 'remotes.origin.endpoint'")
        assert str(path) in result.stderr and "Did you mean 'endpoint_url'?" in result.stderr


def test_the_s3_fixture_is_a_real_s3_server(s3_endpoint, s3_bucket):
    """Plain boto3 against the session's moto server: what later push/pull tests stand on."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.put_object(Bucket=s3_bucket, Key="dir/hello.txt", Body=b"hello")
    assert client.get_object(Bucket=s3_bucket, Key="dir/hello.txt")["Body"].read() == b"hello"
    assert [o["Key"] for o in client.list_objects_v2(Bucket=s3_bucket)["Contents"]] == ["dir/hello.txt"]
