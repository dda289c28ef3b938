"""`fxgate config`: each setting's value and the source that won, secrets never shown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import load_explained
from gateway.config_view import MASK, render, rows
from gateway.errors import ConfigError


def test_each_value_names_the_source_that_won(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        'local_workers = 3\nlog_level = "DEBUG"\nmax_calls = 9\n[globus]\nbatch_size = 50\n'
    )
    env = {
        "FXGATE_STATE_DIR": str(tmp_path),
        "FXGATE_LOCAL_WORKERS": "5",
        "FXGATE_GLOBUS_CLIENT_SECRET": "s3cr3t-value",
        "FXGATE_DB": "postgresql+psycopg://fx:pw-9876@db.example/fxgate",
    }
    settings, origins = load_explained(env=env, flags={"log_level": "WARNING", "db": None})
    by_name = {r["name"]: r for r in rows(settings, origins)}
    assert by_name["local_workers"]["source"] == "environment FXGATE_LOCAL_WORKERS"
    assert by_name["log_level"]["source"] == "command line --log-level"
    assert by_name["max_calls"]["source"] == f"config file {config}"
    assert by_name["globus.batch_size"] == {
        "name": "globus.batch_size",
        "value": 50,
        "source": f"config file {config}",
        "env": "FXGATE_GLOBUS_BATCH_SIZE",
    }
    assert by_name["retention_days"]["source"] == "default"
    assert by_name["globus.client_secret"]["value"] == MASK
    assert by_name["globus.token"]["value"] == ""  # unset secrets show as unset
    assert by_name["db"]["value"] == "postgresql+psycopg://fx:***@db.example/fxgate"
    for as_json in (False, True):
        out = render(settings, origins, as_json)
        assert "s3cr3t-value" not in out and "pw-9876" not in out
    assert json.loads(render(settings, origins, True))["effective"]["address"].startswith("unix:")


def test_a_bad_log_format_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="log_format"):
        load_explained(env={"FXGATE_STATE_DIR": str(tmp_path), "FXGATE_LOG_FORMAT": "xml"})
    settings, _ = load_explained(
        env={"FXGATE_STATE_DIR": str(tmp_path), "FXGATE_LOG_FORMAT": "JSON"}
    )
    assert settings.log_format == "json"
