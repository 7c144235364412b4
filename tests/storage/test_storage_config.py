"""`.mlv/config.yaml`: the template loads to the defaults; typos and wrong types are ConfigError."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from mlv.storage.workspace import config as configs
from mlv.storage.workspace import configedit
from mlv.storage.workspace.config import DEFAULT_GRACE, Config, RemoteConfig
from mlv.storage.errors import ConfigError, UsageError


def load_text(tmp_path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return configs.load(path)


def test_missing_file_means_defaults(tmp_path):
    assert configs.load(tmp_path / "nope.yaml") == Config()


def test_template_loads_to_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    configedit.write_template(path)
    assert configs.load(path) == Config()
    assert Config().grace == DEFAULT_GRACE == 3600


def test_settings_are_read(tmp_path):
    config = load_text(
        tmp_path,
        "cache: {dir: objects, link: hardlink, verify: false}\n"
        "gc: {grace: 0}\n"
        "remotes: {origin: {url: 's3://bucket/x'}}\n"
        "core: {remote: origin}\n",
    )
    assert config == Config("objects", "hardlink", False, 0, {"origin": RemoteConfig("origin", "s3://bucket/x")}, "origin")


@pytest.mark.parametrize("text", ["", "cache:\n", "cache: {}\ngc: {}\nremotes: {}\n"])
def test_empty_sections_mean_defaults(tmp_path, text):
    assert load_text(tmp_path, text) == Config()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("cache: [unclosed\n", "not valid YAML", id="bad-yaml"),
        pytest.param("- cache\n", "must be a mapping", id="a-list"),
        pytest.param("caches: {}\n", "unknown section 'caches'", id="unknown-section"),
        pytest.param("cache: {linkk: copy}\n", "unknown key 'cache.linkk'", id="unknown-key"),
        pytest.param("gc: {grace_period: 5}\n", "unknown key 'gc.grace_period'", id="unknown-gc-key"),
        pytest.param("cache: copy\n", "'cache' must be a mapping", id="section-not-mapping"),
        pytest.param("cache: {link: teleport}\n", "'cache.link'", id="bad-link"),
        pytest.param("cache: {verify: 'yes please'}\n", "'cache.verify'", id="bad-verify"),
        pytest.param("gc: {grace: -1}\n", "'gc.grace'", id="negative-grace"),
        pytest.param("gc: {grace: 1.5}\n", "'gc.grace'", id="float-grace"),
        pytest.param("gc: {grace: true}\n", "'gc.grace'", id="bool-grace"),
        pytest.param("gc: {grace: 1h}\n", "'gc.grace'", id="string-grace"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, fragment):
    assert_config_error(tmp_path, text, fragment)


def assert_config_error(tmp_path, text: str, fragment: str) -> None:
    """Loading ``text`` fails with exit 2, naming the file and saying ``fragment``."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
        configs.load(path)
    assert str(path) in str(info.value)
    assert info.value.exit_code == 2


@pytest.mark.parametrize("text", ["remotes: 5\n", "remotes: [origin]\n"])
def test_remotes_must_be_a_mapping(tmp_path, text):
    """A malformed `remotes:` is a ConfigError naming the file, not a TypeError/ValueError traceback."""
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="remotes") as info:
        configs.load(path)
    assert str(path) in str(info.value)


# -- remotes --------------------------------------------------------------------------


def test_remotes_are_read_with_their_s3_settings(tmp_path):
    config = load_text(
        tmp_path,
        "remotes:\n"
        "  origin: {url: 's3://bucket/p', endpoint_url: 'http://127.0.0.1:5000', region: us-east-1, profile: dev}\n"
        "  backup: {url: ../backup}\n"
        "core: {remote: backup}\n",
    )
    assert config.remotes == {
        "origin": RemoteConfig("origin", "s3://bucket/p", "http://127.0.0.1:5000", "us-east-1", "dev"),
        "backup": RemoteConfig("backup", "../backup"),
    }
    assert config.default_remote == "backup"
    assert [r.protocol for r in config.remotes.values()] == ["s3", "file"]


@pytest.mark.parametrize(
    ("url", "protocol"),
    [("s3://b/p", "s3"), ("s3a://b", "s3a"), ("gs://b", "gs"), ("memory://x", "memory"), ("file:///x", "file"),
     ("/abs/dir", "file"), ("rel/dir", "file"), ("simplecache::s3://b", "simplecache")],
)
def test_protocol_matches_fsspec(url, protocol):
    from fsspec.utils import get_protocol

    assert RemoteConfig("o", url).protocol == protocol == get_protocol(url)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("remotes: {'bad name': {url: /x}}\n", "remote name 'bad name'", id="name-space"),
        pytest.param("remotes: {-x: {url: /x}}\n", "remote name '-x'", id="name-dash-first"),
        pytest.param("remotes: {7: {url: /x}}\n", "remote name '7'", id="name-not-string"),
        pytest.param("remotes: {origin: 's3://b'}\n", "'remotes.origin' must be a mapping", id="not-mapping"),
        pytest.param("remotes: {origin: {}}\n", "'remotes.origin.url' is missing", id="no-url"),
        pytest.param("remotes: {origin: {url: ''}}\n", "'remotes.origin.url' must be a non-empty string", id="empty-url"),
        pytest.param("remotes: {origin: {url: 5}}\n", "'remotes.origin.url' must be a non-empty string", id="int-url"),
        pytest.param("remotes: {origin: {url: 's3://b', region: 5}}\n", "'remotes.origin.region'", id="int-region"),
        pytest.param("remotes: {origin: {url: 's3://b', endpoint: 'http://h'}}\n",
                     "unknown key 'remotes.origin.endpoint'; valid: endpoint_url, profile, region, retries, timeout, url. "
                     "Did you mean 'endpoint_url'?", id="unknown-key"),
        pytest.param("remotes: {origin: {url: /x, endpoint_url: 'http://h'}}\n",
                     "'remotes.origin.endpoint_url' applies only to s3:// remotes", id="endpoint-on-file"),
        pytest.param("remotes: {origin: {url: 'gs://b', region: eu}}\n",
                     "'remotes.origin.region' applies only to s3:// remotes", id="region-on-gs"),
        pytest.param("remotes: {origin: {url: 's3://b', endpoint_url: 'localhost:9000'}}\n",
                     "'remotes.origin.endpoint_url' is 'localhost:9000'; it must start with http://", id="bare-endpoint"),
        pytest.param("remotes: {origin: {url: 's3://b'}}\ncore: {remote: orign}\n",
                     "'core.remote' is 'orign', which is not a defined remote; defined: origin. Did you mean 'origin'?",
                     id="unknown-default"),
        pytest.param("core: {remote: origin}\n", "'core.remote' is 'origin', but no remotes are defined",
                     id="default-without-remotes"),
        pytest.param("cache: {lnk: copy}\n", "Did you mean 'link'?", id="suggests-section-key"),
    ],
)
def test_bad_remotes_name_the_file_and_key(tmp_path, text, fragment):
    assert_config_error(tmp_path, text, fragment)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("s3://AKIAXXXX:hunter2secret@bucket/p", "s3://AKIAXXXX:***@bucket/p"),
        ("https://acct.blob.core.windows.net/c?sv=2022&sig=hunter2secret", "?sv=2022&sig=***"),
        ("s3://bucket/p?token=hunter2secret", "s3://bucket/p?token=***"),
        ("gs://bucket?password=hunter2secret#frag", "gs://bucket?password=***#frag"),
        ("simplecache::s3://bucket/p?aws_secret_access_key=hunter2secret", "aws_secret_access_key=***"),
        ("http://u:hunter2secret@host:8080/p", "http://u:***@host:8080/p"),
    ],
)
def test_credentials_in_a_url_are_refused_without_echoing_them(tmp_path, url, shown):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"remotes": {"origin": {"url": url}}}))
    with pytest.raises(ConfigError, match="carries credentials") as info:
        configs.load(path)
    message = str(info.value)
    assert "hunter2secret" not in message
    assert shown in message and "environment" in message and "AWS profile" in message


def test_credentials_in_an_endpoint_url_are_refused(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("remotes: {origin: {url: 's3://b', endpoint_url: 'http://me:hunter2secret@h:9000'}}\n")
    with pytest.raises(ConfigError, match=re.escape("'remotes.origin.endpoint_url' carries credentials")) as info:
        configs.load(path)
    assert "hunter2secret" not in str(info.value)


def test_a_credential_key_is_refused_as_such_without_echoing_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("remotes: {origin: {url: 's3://b', aws_secret_access_key: hunter2secret}}\n")
    with pytest.raises(ConfigError, match="looks like a credential") as info:
        configs.load(path)
    assert "hunter2secret" not in str(info.value)


@pytest.mark.parametrize("url", ["s3://bucket/p@2024:01", "ssh://git@host/x", "/data/user:pw@dir", "s3://b/p?versionId=3"])
def test_urls_without_credentials_are_accepted(tmp_path, url):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"remotes": {"o": {"url": url}}}))
    assert configs.load(path).remotes["o"].url == url


# -- writers --------------------------------------------------------------------------


def test_writers_round_trip_and_keep_other_sections_and_comments(tmp_path):
    path = tmp_path / ".mlv" / "config.yaml"
    path.parent.mkdir()
    configedit.write_template(path)
    s3 = RemoteConfig("origin", "s3://bucket/p", endpoint_url="http://127.0.0.1:5000", region="us-east-1", profile="dev")
    assert configedit.add_remote(path, s3, default=False) is True
    assert configedit.add_remote(path, RemoteConfig("backup", "../backup"), default=False) is False
    text = path.read_text()
    assert text.startswith(configs.TEMPLATE.splitlines()[0])
    assert "link: auto        # how checkout materializes files" in text  # untouched sections keep comments
    config = configs.load(path)
    assert config.remotes == {"origin": s3, "backup": RemoteConfig("backup", "../backup")}
    assert config.default_remote == "origin"
    assert yaml.safe_load(text)["remotes"]["backup"] == {"url": "../backup"}  # never writes unset keys

    configedit.set_default_remote(path, "backup")
    assert configs.load(path).default_remote == "backup"
    assert configedit.remove_remote(path, "backup") == "origin"  # one remote left: it becomes the default
    config = configs.load(path)
    assert config == Config(remotes={"origin": s3}, default_remote="origin")
    assert configedit.remove_remote(path, "origin") is None
    assert configs.load(path) == Config()
    assert "core" not in yaml.safe_load(path.read_text())


def test_removing_the_default_of_three_clears_it(tmp_path):
    path = tmp_path / ".mlv" / "config.yaml"
    path.parent.mkdir()
    for name in ("a", "b", "c"):
        configedit.add_remote(path, RemoteConfig(name, f"/r/{name}"), default=name == "b")
    assert configs.load(path).default_remote == "b"
    assert configedit.remove_remote(path, "b") is None
    assert configs.load(path).default_remote is None


def test_writers_keep_a_hand_written_file_loadable(tmp_path):
    """Flow style, comments between sections, no trailing newline: re-dumped or spliced, it loads the same."""
    path = tmp_path / ".mlv" / "config.yaml"
    path.parent.mkdir()
    path.write_text("# team settings\n{cache: {link: copy}, remotes: {}}")
    configedit.add_remote(path, RemoteConfig("o", "s3://b"), default=False)
    assert path.read_text().startswith("# team settings\n")
    assert configs.load(path) == Config(link="copy", remotes={"o": RemoteConfig("o", "s3://b")}, default_remote="o")
    path.write_text("gc:\n  grace: 5\n# our remotes\nremotes:\n  o:\n    url: s3://b\ncore:\n  remote: o")
    configedit.add_remote(path, RemoteConfig("p", "gs://c"), default=True)
    assert "# our remotes\n" in path.read_text()
    assert configs.load(path) == Config(grace=5, remotes={"o": RemoteConfig("o", "s3://b"), "p": RemoteConfig("p", "gs://c")},
                                        default_remote="p")


def test_writers_refuse_bad_requests_and_leave_the_file_alone(tmp_path):
    path = tmp_path / ".mlv" / "config.yaml"
    path.parent.mkdir()
    configedit.write_template(path)
    configedit.add_remote(path, RemoteConfig("origin", "s3://b"), default=False)
    before = path.read_bytes()
    with pytest.raises(UsageError, match=re.escape("`mlv remote remove origin` first")):
        configedit.add_remote(path, RemoteConfig("origin", "s3://other"), default=False)
    with pytest.raises(ConfigError, match="remote name"):
        configedit.add_remote(path, RemoteConfig("no/slash", "s3://b"), default=False)
    with pytest.raises(UsageError, match=re.escape("no remote named 'orign'; configured remotes: origin. Did you mean")):
        configedit.remove_remote(path, "orign")
    with pytest.raises(UsageError, match="configured remotes: origin"):
        configedit.set_default_remote(path, "nope")
    for url in (".mlv", ".mlv/cache/x", "file://" + str(tmp_path / ".mlv" / "remote"), ".", str(tmp_path.parent)):
        with pytest.raises(UsageError, match="which mlv manages itself"):
            configedit.add_remote(path, RemoteConfig("local", url), default=False)
    assert path.read_bytes() == before


def test_remote_for_picks_the_named_or_default_remote():
    origin, backup = RemoteConfig("origin", "s3://b"), RemoteConfig("backup", "/x")
    config = Config(remotes={"origin": origin, "backup": backup}, default_remote="origin")
    assert configs.remote_for(config, None) == origin
    assert configs.remote_for(config, "backup") == backup
    with pytest.raises(UsageError, match=re.escape("no remote configured; add one with `mlv remote add NAME URL`")):
        configs.remote_for(Config(), None)
    with pytest.raises(UsageError, match="configured remotes: origin, backup"):
        configs.remote_for(config, "nope")
    with pytest.raises(UsageError, match=re.escape("pass `-r NAME`")):
        configs.remote_for(Config(remotes=config.remotes), None)


def test_local_path_is_relative_to_the_repo_root(tmp_path):
    assert configs.local_path(RemoteConfig("o", "../store"), tmp_path / "repo") == tmp_path / "store"
    assert configs.local_path(RemoteConfig("o", "file:///abs/x"), tmp_path) == Path("/abs/x")
    assert configs.local_path(RemoteConfig("o", "memory://x"), tmp_path) is None
    assert configs.local_path(RemoteConfig("o", "~/store"), tmp_path) == Path.home() / "store"
