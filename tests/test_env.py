"""tnb.real_telnyx_env: the notebooks' switch between the sandbox and real Telnyx."""

import pytest

import telnyx_nb as tnb


def test_without_an_api_key_it_is_the_sandbox(monkeypatch):
    monkeypatch.delenv("TELNYX_API_KEY", raising=False)
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    assert tnb.real_telnyx_env("PUBLIC_URL") is None


def test_with_a_key_every_missing_setting_is_named_and_no_value_printed(monkeypatch):
    monkeypatch.setenv("TELNYX_API_KEY", "KEY-SECRET-123")
    monkeypatch.setenv("PUBLIC_URL", "")
    monkeypatch.delenv("TO_NUMBER", raising=False)
    monkeypatch.setenv("TELNYX_PUBLIC_KEY", "pk")
    with pytest.raises(tnb.TelnyxNbError) as caught:
        tnb.real_telnyx_env("TELNYX_PUBLIC_KEY", "PUBLIC_URL", "TO_NUMBER")
    message = str(caught.value)
    assert "PUBLIC_URL: the https URL of a tunnel" in message and "TO_NUMBER: the number to call" in message
    assert "TELNYX_PUBLIC_KEY" not in message and "KEY-SECRET-123" not in message and "unset TELNYX_API_KEY" in message


def test_with_everything_set_it_returns_the_settings_and_the_receiver_port(monkeypatch):
    monkeypatch.setenv("TELNYX_API_KEY", "k")
    monkeypatch.setenv("PUBLIC_URL", "https://example.test")
    monkeypatch.delenv("RECEIVER_PORT", raising=False)
    assert tnb.real_telnyx_env("PUBLIC_URL") == {"TELNYX_API_KEY": "k", "PUBLIC_URL": "https://example.test",
                                                 "RECEIVER_PORT": "8765"}


def test_a_key_from_a_detached_sandbox_is_named_as_such(monkeypatch):
    monkeypatch.setenv("TELNYX_API_KEY", "KEY_SANDBOX_x")
    monkeypatch.setenv("TELNYX_SANDBOX_PID", "123")
    monkeypatch.delenv("PUBLIC_URL", raising=False)
    with pytest.raises(tnb.TelnyxNbError, match="telnyx-nb sandbox --detach"):
        tnb.real_telnyx_env("PUBLIC_URL")
