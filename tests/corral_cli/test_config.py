"""Where the manager URL and token come from: flag or environment, then the config file, then defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral_cli.config import DEFAULT_URL, ConfigError, Settings, resolve


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_defaults_without_a_config_file(tmp_path: Path) -> None:
    assert resolve(None, None, tmp_path / "absent.toml") == Settings(DEFAULT_URL, None)


def test_config_file_fills_what_flags_leave_out(tmp_path: Path) -> None:
    config = write(tmp_path / "c.toml", 'url = "http://fleet:9000/"\ntoken = "from-file"\n')
    assert resolve(None, None, config) == Settings("http://fleet:9000", "from-file")
    assert resolve("http://flag:1", None, config) == Settings("http://flag:1", "from-file")
    assert resolve(None, "from-flag", config) == Settings("http://fleet:9000", "from-flag")


def test_default_path_follows_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "corral").mkdir()
    write(tmp_path / "corral" / "config.toml", 'url = "http://xdg:1"\n')
    assert resolve(None, None).url == "http://xdg:1"


@pytest.mark.parametrize("text", ["url = ", "url = 5\n", 'token = ["x"]\n'])
def test_bad_config_files_are_reported(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        resolve(None, None, write(tmp_path / "c.toml", text))


def test_url_must_be_http(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="http://"):
        resolve("fleet:8080", None, tmp_path / "absent.toml")


def test_repr_never_shows_the_token() -> None:
    assert "s3cret" not in repr(Settings("http://x", "s3cret"))
