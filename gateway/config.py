"""One settings object for the daemon: defaults < config file < environment < flags.

Every setting has an environment name, ``FXGATE_<KEY>`` at the top level and
``FXGATE_<SECTION>_<KEY>`` in a section, so a systemd unit or a container can
configure everything without a file. Unknown keys and wrong types are refused
at start with a message that names them.

Where each value came from is kept (`load_explained`), so `fxgate config` can
show an operator why the daemon uses what it uses; secrets are masked there
(`SECRETS`, and the password of a database URL).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fxgate_contract.address import CLIENT_ONLY_ENV, default_state_dir, resolve_address, unix_path
from gateway.errors import ConfigError

DEFAULT_GLOBUS_BASE_URL = "https://compute.api.globus.org"


@dataclass
class GlobusSettings:
    """How to reach the Globus Compute web service and its result broker."""

    base_url: str = DEFAULT_GLOBUS_BASE_URL
    token: str = ""
    token_file: str = ""
    client_id: str = ""
    client_secret: str = ""
    auth_url: str = ""  # Globus Auth token endpoint; empty: the production one
    batch_size: int = 500
    batch_interval_ms: int = 20
    # Falls back to HTTP polling when the broker is unreachable this long.
    broker_fallback_s: float = 60.0
    poll_interval_s: float = 5.0
    # Unacknowledged results per group queue. Several commits' worth (a commit
    # takes about 1,000), so the broker keeps sending while a batch commits;
    # at 1,000 the stream stalled for every commit.
    prefetch: int = 4000
    http_timeout_s: float = 30.0
    http_attempts: int = 5

    @property
    def configured(self) -> bool:
        """The Globus upstream runs when credentials are configured."""
        return bool(self.token or self.token_file or self.client_id)


# The engines a cluster endpoint may run (globus_compute_endpoint.engines); MPI tasks need
# the second. The other keys are the engine's own, checked by the engine child at start.
CLUSTER_ENGINES = ("GlobusComputeEngine", "GlobusMPIEngine")
# A cluster's name is also its upstream's name in the store (16 characters at most there).
CLUSTER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")
RESERVED_NAMES = ("local", "globus")
DEFAULT_QUEUE_AT_ENGINE = 256


@dataclass(frozen=True)
class ClusterSettings:
    """One named cluster endpoint: Globus Compute's engine with a Parsl provider.

    `engine` is the table an endpoint's config.yaml has under ``engine:`` (its
    type, its keys, ``provider`` with ``launcher``), ready for the engine child.
    """

    name: str
    engine: dict[str, Any]
    endpoint_id: str = ""  # empty: a UUID made once and kept in the store
    # Tasks handed to the engine beyond what its workers run: they wait at its
    # interchange, where they can no longer be cancelled. 0: one task per worker,
    # each sent as the last one ends: trivial tasks on 2 workers ran at 84/s that
    # way, 177/s with 256 here.
    queue_at_engine: int = DEFAULT_QUEUE_AT_ENGINE


@dataclass
class Settings:
    """Everything the daemon reads at start."""

    state_dir: Path = field(default_factory=default_state_dir)
    address: str = ""
    # Serving TCP (address host:port) needs TLS and a token; a unix socket needs neither.
    tls_cert_file: str = ""
    tls_key_file: str = ""
    auth_token: str = ""
    auth_token_file: str = ""
    db: str = ""
    # How long a write waits for a database lock before it counts as unavailable.
    db_busy_timeout_ms: int = 5000
    local_workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    max_payload_bytes: int = 10 * 1000 * 1000
    retention_days: float = 14.0
    # The most calls served at once (each watching client keeps one open);
    # further calls are refused with RESOURCE_EXHAUSTED and clients retry.
    max_calls: int = 4096
    log_level: str = "INFO"
    # Prometheus metrics over HTTP on this port (gateway/metrics_http.py); 0: off.
    metrics_port: int = 0
    # Where the metrics port listens: this machine only, unless set otherwise.
    metrics_host: str = "127.0.0.1"
    # "text": one human line per event; "json": one JSON object per line (journald, shippers).
    log_format: str = "text"
    # Environment of local workers beyond a fixed few (PATH, HOME, ...): entries
    # NAME pass the daemon's value on, NAME=value set one. Never FXGATE_* or GLOBUS_*.
    worker_env: list[str] = field(default_factory=list)
    globus: GlobusSettings = field(default_factory=GlobusSettings)
    # [cluster.<name>] tables of the config file (no environment form).
    cluster: dict[str, ClusterSettings] = field(default_factory=dict)

    @property
    def socket_path(self) -> Path | None:
        """The unix socket path the daemon listens on, if it listens on one."""
        return unix_path(self.resolved_address)

    @property
    def resolved_address(self) -> str:
        return resolve_address(self.address or f"unix://{self.state_dir / 'gateway.sock'}")

    @property
    def resolved_db(self) -> str:
        return self.db or f"sqlite:///{self.state_dir / 'gateway.db'}"


def _coerce(name: str, value: Any, target: Any) -> Any:
    """Turn a file or environment value into the type of the default."""
    kind = type(target)
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if kind is Path:
            return Path(str(value)).expanduser()
        if kind is list:  # of str: a TOML array, or words in the environment
            if isinstance(value, str):
                return value.split()
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(value)
            return list(value)
        if kind in (int, float) and isinstance(value, bool):
            raise ValueError(value)
        return kind(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"setting {name!r} must be of type {kind.__name__}, got {value!r}"
        ) from None


# Settings that were renamed: a config written for an older daemon is told the new name.
RENAMED = {"grpc_threads": "max_calls"}


def _unknown(name: str) -> ConfigError:
    if name in RENAMED:
        return ConfigError(f"setting {name!r} is now {RENAMED[name]!r}")
    return ConfigError(f"unknown setting {name!r}")


# Where a setting's value came from, by dotted name ("log_level", "globus.token").
Origins = dict[str, str]
LOG_FORMATS = ("text", "json")
# Settings whose values are never shown or logged; a database URL shows without its password.
SECRETS = frozenset({"auth_token", "globus.token", "globus.client_secret"})


def _apply(
    obj: Any,
    values: Mapping[str, Any],
    prefix: str,
    origins: Origins,
    source: Callable[[str], str],
) -> None:
    fields = {f.name: f for f in dataclasses.fields(obj)}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if key not in fields:
            raise _unknown(name)
        if name == "cluster":
            obj.cluster = clusters(value)
            continue
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {name!r} must be a table")
            _apply(current, value, f"{name}.", origins, source)
        else:
            setattr(obj, key, _coerce(name, value, current))
            origins[name] = source(name)


def env_name(name: str) -> str:
    """The environment variable of a dotted setting name: globus.token -> FXGATE_GLOBUS_TOKEN."""
    return "FXGATE_" + name.replace(".", "_").upper()


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    """Collect FXGATE_* variables into the nested shape of the config file."""
    out: dict[str, Any] = {}
    sections = {
        f.name for f in dataclasses.fields(Settings) if f.name == "globus"
    }  # the only section today
    for var, value in env.items():
        if not var.startswith("FXGATE_") or var in CLIENT_ONLY_ENV:
            continue
        key = var.removeprefix("FXGATE_").lower()
        section, _, rest = key.partition("_")
        if section in sections and rest:
            out.setdefault(section, {})[rest] = value
        elif section == "cluster":
            raise ConfigError(f"{var}: cluster endpoints are configured in the config file only")
        elif key in {f.name for f in dataclasses.fields(Settings)} or key in RENAMED:
            out[key] = value  # a renamed key is refused by name in _apply
        else:
            raise ConfigError(f"unknown environment setting {var}")
    return out


def load(
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from every source in order of precedence."""
    return load_explained(config_file, env, flags)[0]


def load_explained(
    config_file: Path | None = None,
    env: Mapping[str, str] = os.environ,
    flags: Mapping[str, Any] | None = None,
) -> tuple[Settings, Origins]:
    """The settings, and where each value that is not a default came from."""
    settings, origins = Settings(), Origins()
    env_values = _from_env(env)
    flag_values = {k: v for k, v in (flags or {}).items() if v is not None}
    # The state dir decides where the default config file is: resolve it first.
    for source in (env_values, flag_values):
        if "state_dir" in source:
            settings.state_dir = _coerce("state_dir", source["state_dir"], settings.state_dir)
    path = config_file or settings.state_dir / "config.toml"
    try:
        text = path.read_text()
    except FileNotFoundError:
        if config_file is not None:
            raise ConfigError(f"config file {path} does not exist") from None
        text = ""  # the default file is optional
    except (OSError, UnicodeDecodeError) as exc:  # e.g. a state dir this user may not enter
        raise ConfigError(f"cannot read config file {path}: {exc}") from None
    try:
        file_values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    _apply(settings, file_values, "", origins, lambda _: f"config file {path}")
    _apply(settings, env_values, "", origins, lambda n: f"environment {env_name(n)}")
    _apply(settings, flag_values, "", origins, lambda n: f"command line --{n.replace('_', '-')}")
    _check(settings)
    return settings, origins


def _check(settings: Settings) -> None:
    """Values of the right type that still make no sense."""
    if settings.local_workers < 1:
        raise ConfigError("setting 'local_workers' must be at least 1")
    if settings.max_calls < 1:
        raise ConfigError("setting 'max_calls' must be at least 1")
    if settings.max_payload_bytes < 1:
        raise ConfigError("setting 'max_payload_bytes' must be positive")
    if not 0 <= settings.metrics_port <= 65535:
        raise ConfigError("setting 'metrics_port' must be a port number (1-65535), or 0 for off")
    settings.log_format = settings.log_format.lower()
    if settings.log_format not in LOG_FORMATS:
        raise ConfigError(f"setting 'log_format' must be one of {', '.join(LOG_FORMATS)}")
    for entry in settings.worker_env:
        _check_worker_env(entry)


def _check_worker_env(entry: str) -> None:
    """The daemon's own settings and credentials never reach task code, even when named."""
    name = entry.partition("=")[0]
    if not name.isidentifier() or not name.isascii():
        raise ConfigError(f"setting 'worker_env': {entry!r} is not NAME or NAME=value")
    if name.upper().startswith(("FXGATE_", "GLOBUS_")):
        raise ConfigError(
            f"setting 'worker_env': {name} is refused: FXGATE_* and GLOBUS_* variables "
            "hold the daemon's settings and credentials"
        )


def clusters(tables: Any) -> dict[str, ClusterSettings]:
    """The [cluster.<name>] tables, checked as far as the daemon can without the engine.

    The engine's own keys (the provider's, the launcher's) are checked by the
    engine child at start (gateway/upstreams/cluster/engine_child.py --check).
    """
    if not isinstance(tables, Mapping):
        raise ConfigError("setting 'cluster' must be a table of [cluster.<name>] tables")
    out: dict[str, ClusterSettings] = {}
    ids: dict[str, str] = {}
    for name, table in tables.items():
        where = f"cluster.{name}"
        if not CLUSTER_NAME.fullmatch(name) or name in RESERVED_NAMES:
            raise ConfigError(
                f"[{where}]: a cluster's name is a letter and up to 15 letters, digits, "
                f"'-' or '_', and not {' or '.join(RESERVED_NAMES)}"
            )
        if not isinstance(table, Mapping):
            raise ConfigError(f"setting {where!r} must be a table")
        cluster = _cluster(name, dict(table))
        if cluster.endpoint_id in ids:
            raise ConfigError(
                f"setting '{where}.endpoint_id': {cluster.endpoint_id} is also the id of "
                f"[cluster.{ids[cluster.endpoint_id]}]"
            )
        if cluster.endpoint_id:
            ids[cluster.endpoint_id] = name
        out[name] = cluster
    return out


def _cluster(name: str, table: dict[str, Any]) -> ClusterSettings:
    where = f"cluster.{name}"
    endpoint_id = table.pop("endpoint_id", "")
    if endpoint_id:
        try:
            endpoint_id = str(uuid.UUID(str(endpoint_id)))
        except ValueError:
            raise ConfigError(f"setting '{where}.endpoint_id' must be a UUID") from None
    queue = table.pop("queue_at_engine", DEFAULT_QUEUE_AT_ENGINE)
    if not isinstance(queue, int) or isinstance(queue, bool) or queue < 0:
        raise ConfigError(f"setting '{where}.queue_at_engine' must be an int >= 0")
    engine = table.pop("engine", None)
    if "type" in table:  # config.yaml's engine.type is this table's `engine`
        raise ConfigError(f"setting '{where}.type': name the engine with `engine = \"...\"`")
    if engine not in CLUSTER_ENGINES:
        raise ConfigError(f"setting '{where}.engine' must be one of {', '.join(CLUSTER_ENGINES)}")
    provider = table.get("provider")
    _typed_table(provider, f"{where}.provider", "SlurmProvider")
    assert isinstance(provider, Mapping)
    if "launcher" in provider:
        _typed_table(provider["launcher"], f"{where}.provider.launcher", "SrunLauncher")
    retries = table.get("max_retries_on_system_failure", 0)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise ConfigError(f"setting '{where}.max_retries_on_system_failure' must be an int >= 0")
    try:
        json.dumps(table)
    except TypeError as exc:  # a TOML date or time: no engine key takes one
        raise ConfigError(f"[{where}]: {exc}") from None
    return ClusterSettings(name, {"type": engine, **table}, endpoint_id, queue)


def _typed_table(value: Any, where: str, example: str) -> None:
    """A provider or launcher table: config.yaml's shape, a `type` naming the class."""
    if not isinstance(value, Mapping):
        raise ConfigError(f'setting {where!r} must be a table (e.g. type = "{example}")')
    if not isinstance(value.get("type"), str):
        raise ConfigError(f"setting '{where}.type' must name a class, e.g. \"{example}\"")
