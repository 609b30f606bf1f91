"""The alerts' settings: --alert-url (repeated, or from the config file, or CORRAL_ALERT_URLS) and the secret file."""

from __future__ import annotations

from pathlib import Path

import pytest

from manager_api.launcher.arguments import UsageError, build_parser, checked_alerts, effective_config, parse_args
from manager_api.services.alerts.delivery import parse_urls
from manager_api.services.webhooks import backoff, shown, sign


def test_urls_come_from_flags_then_the_file_then_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CORRAL_ALERT_URLS", raising=False)
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    parser = build_parser()
    assert checked_alerts(parse_args(parser, [])) == ([], None)
    flags = ["--alert-url", "http://a/x", "--alert-url", "https://b:8443/y", "--alert-secret-file", str(secret)]
    assert checked_alerts(parse_args(build_parser(), flags)) == (["http://a/x", "https://b:8443/y"], str(secret))
    config = tmp_path / "manager.yaml"
    config.write_text(f"alert-url: [http://from-file/hook]\nalert-secret-file: {secret}\n")
    assert checked_alerts(parse_args(build_parser(), ["--config", str(config)]))[0] == ["http://from-file/hook"]
    monkeypatch.setenv("CORRAL_ALERT_URLS", "http://e1/h, http://e2/h http://e3/h")
    args = parse_args(build_parser(), ["--alert-secret-file", str(secret)])
    assert checked_alerts(args)[0] == ["http://e1/h", "http://e2/h", "http://e3/h"]


def test_bad_alert_settings_are_usage_errors(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CORRAL_ALERT_URLS", raising=False)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    for flags, message in [
        (["--alert-url", "ftp://a/x"], "must be http:// or https://"),
        (["--alert-url", "http://a/x"], "needs --alert-secret-file"),
        (["--alert-url", "http://a/x", "--alert-secret-file", str(tmp_path / "missing")], "cannot read"),
        (["--alert-url", "http://a/x", "--alert-secret-file", str(empty)], "is empty"),
    ]:
        with pytest.raises(UsageError, match=message):
            checked_alerts(parse_args(build_parser(), flags))


def test_print_config_hides_a_password_in_an_alert_url() -> None:
    parser = build_parser()
    printed = effective_config(parser, parse_args(parser, ["--alert-url", "https://u:pw@hooks.example/t0ken"]))
    assert "pw" not in printed and "https://u:***@hooks.example/t0ken" in printed


def test_signing_backoff_and_what_logs_show() -> None:
    # The value GitHub documents for its own webhooks' example (secret "It's a Secret to Everybody").
    assert sign(b"It's a Secret to Everybody", b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    assert [backoff(n) for n in (1, 2, 3, 9, 10, 30)] == [1, 2, 4, 256, 300, 300]
    assert shown("https://u:pw@hooks.example:8443/services/T0KEN?x=1") == "https://hooks.example:8443"
    assert parse_urls(" a ,b\nc ") == ["a", "b", "c"] and parse_urls(None) == []
