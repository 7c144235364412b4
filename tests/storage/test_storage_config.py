"""`.mlv/config.yaml`: the template loads to the defaults; typos and wrong types are ConfigError."""

from __future__ import annotations

import re

import pytest
from mlv.storage import config as configs
from mlv.storage.config import DEFAULT_GRACE, Config
from mlv.storage.errors import ConfigError


def load_text(tmp_path, text: str) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return configs.load(path)


def test_missing_file_means_defaults(tmp_path):
    assert configs.load(tmp_path / "nope.yaml") == Config()


def test_template_loads_to_the_defaults(tmp_path):
    path = tmp_path / "config.yaml"
    configs.write_template(path)
    assert configs.load(path) == Config()
    assert Config().grace == DEFAULT_GRACE == 3600


def test_settings_are_read(tmp_path):
    config = load_text(
        tmp_path,
        "cache: {dir: /elsewhere, link: hardlink, verify: false}\n"
        "gc: {grace: 0}\n"
        "remotes: {origin: {url: 's3://bucket/x'}}\n"
        "core: {remote: origin}\n",
    )
    assert config == Config("/elsewhere", "hardlink", False, 0, {"origin": {"url": "s3://bucket/x"}}, "origin")


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
