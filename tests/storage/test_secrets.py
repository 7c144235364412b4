"""Masking secret values in streams that arrive in chunks of any size (property test)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from mlv.storage import secrets
from mlv.storage.secrets import Masker

SECRETS = ["abcd", "abcd1234", "zz-TOKEN-zz", "1234ab"]
PIECES = st.sampled_from([b"x", b"\n", b"abc", b"d12", b"34", b"abcd1234", b"zz-TOKEN-zz", b"1234ab", b"ab", b"\xff"])


@given(pieces=st.lists(PIECES, max_size=40), cuts=st.lists(st.integers(1, 9), min_size=1, max_size=40))
def test_a_stream_is_masked_as_the_whole_text_would_be(pieces, cuts):
    text = b"".join(pieces)
    masker, out, i = Masker(SECRETS), b"", 0
    for n in cuts * (len(text) // max(1, sum(cuts)) + 1):
        if i >= len(text):
            break
        out += masker.feed(text[i : i + n])
        i += n
    out += masker.feed(text[i:]) + masker.flush()
    pattern = b"|".join(re.escape(s.encode()) for s in sorted(SECRETS, key=len, reverse=True))
    assert out == re.sub(pattern, b"***", text)


def test_which_names_hold_secrets():
    assert secrets.is_secret("AWS_SESSION_TOKEN") and secrets.is_secret("aws_secret_access_key")
    assert secrets.is_secret("HF_TOKEN") and secrets.is_secret("OPENAI_API_KEY") and secrets.is_secret("PGPASSWORD")
    assert not secrets.is_secret("AWS_REGION") and not secrets.is_secret("AWS_ENDPOINT_URL_S3")
    assert not secrets.is_secret("PATH") and not secrets.is_secret("KEYBOARD")


def test_short_values_are_not_masked():
    env = {"A_TOKEN": "on", "B_TOKEN": "longer-value"}
    assert secrets.values(environ=env) == ["longer-value"]


def test_doctests_of_the_paths_rule_secrets_and_temp_names():
    import doctest

    import mlv.storage.atomic
    import mlv.storage.paths

    for module in (mlv.storage.paths, mlv.storage.secrets, mlv.storage.atomic):
        assert doctest.testmod(module).failed == 0, module.__name__
