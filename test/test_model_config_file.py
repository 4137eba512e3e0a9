"""Model config files that cannot be used are refused in one line naming the file
(issue 9 item 5): empty, not YAML, not a mapping, a section given as a scalar."""
from __future__ import annotations

from pathlib import Path

import pytest

from dir_ros.model.config import DEFAULT_CONFIG, load_model_config, resolve_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, words", [
    ("", "is empty"),
    ("# only a comment\n", "is empty"),
    ("- 1\n- 2\n", "must be a mapping of config keys, got a list"),
    ("just text\n", "must be a mapping of config keys, got a str"),
    ("input_size: [\n", "is not valid YAML"),
    ("a: b: c\n", "is not valid YAML"),
    ("gcn: 5\n", "model config key 'gcn' must be a mapping, got int 5"),
    ("model:\n  transformer: on\n", "'transformer' must be a mapping"),
])
def test_unusable_file_one_line(tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_model_config(path)
    message = str(info.value)
    assert words in message and "\n" not in message and str(path) in message, message


def test_binary_file_one_line(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(ValueError, match="not a UTF-8 text file"):
        load_model_config(path)


def test_shipped_configs_and_defaults_still_load() -> None:
    """The shipped files load; None / {} still mean the release defaults (API callers)."""
    for path in sorted((ROOT / "config" / "model").glob("*.yaml")):
        assert load_model_config(path)["input_size"] % 32 == 0
    assert resolve_config(None) == DEFAULT_CONFIG
    assert resolve_config({}) == DEFAULT_CONFIG
