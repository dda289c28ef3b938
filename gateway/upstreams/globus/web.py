"""A client of the Globus Compute web service (HTTP/JSON with requests).

Only the routes the daemon needs: register a function, submit a v3 batch,
fetch the AMQP result credentials, read task status (the fallback when
the broker cannot be reached), and the lookups an SDK script makes through
its Client (endpoint status, metadata and list; a function's record), whose
JSON is handed back unchanged. Transient failures (connection errors, 429,
5xx) are retried with backoff that honours Retry-After; a 4xx is final and
carries the service's own message.
"""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from fxgate_contract.errors import SerializationError
from fxgate_contract.framing import unpack_buffers
from fxgate_contract.runtime import SDK_VERSION
from gateway import __version__
from gateway.config import GlobusSettings
from gateway.errors import ConfigError, UpstreamError
from gateway.store.records import NO_OPTIONS, FunctionRecord, TaskOptions

log = logging.getLogger(__name__)

AUTH_TOKEN_URL = "https://auth.globus.org/v2/oauth2/token"
COMPUTE_SCOPE = "https://auth.globus.org/scopes/facd7ccc-c5f4-42aa-916b-a0e270e2c2a9/all"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class SubmitResult:
    task_group_id: str
    tasks: dict[str, list[str]]  # function id -> task ids, in the order submitted


class GlobusAccessToken:
    """The Globus access token the web service wants: given, read from a file, or got
    with the client-credentials grant (not the daemon's own gRPC token: gateway/auth.py)."""

    def __init__(self, settings: GlobusSettings, session: requests.Session) -> None:
        self._s = settings
        self._session = session
        self._token = ""
        self._expires = 0.0
        self._lock = threading.Lock()
        if not (settings.token or settings.token_file or settings.client_id):
            raise ConfigError(
                "the Globus upstream needs a token: set FXGATE_GLOBUS_TOKEN, "
                "FXGATE_GLOBUS_TOKEN_FILE, or FXGATE_GLOBUS_CLIENT_ID and _CLIENT_SECRET"
            )

    def header(self) -> str:
        if self._s.token:
            return f"Bearer {self._s.token}"
        if self._s.token_file:
            return f"Bearer {Path(self._s.token_file).read_text().strip()}"
        with self._lock:
            if time.time() > self._expires - 60:
                self._refresh()
            return f"Bearer {self._token}"

    def invalidate(self) -> None:
        with self._lock:
            self._expires = 0.0

    def _refresh(self) -> None:
        response = self._session.post(
            self._s.auth_url or AUTH_TOKEN_URL,
            data={"grant_type": "client_credentials", "scope": COMPUTE_SCOPE},
            auth=(self._s.client_id, self._s.client_secret),
            timeout=self._s.http_timeout_s,
        )
        if response.status_code != 200:
            raise UpstreamError(
                f"Globus Auth refused the client credentials: HTTP {response.status_code} "
                f"{response.text[:200]}",
                retryable=response.status_code in RETRY_STATUSES,
            )
        body = response.json()
        self._token = body["access_token"]
        self._expires = time.time() + float(body.get("expires_in", 3600))


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason
    if isinstance(body, dict):
        for key in ("message", "reason", "detail", "error"):
            if body.get(key):
                code = body.get("code")
                return f"{code}: {body[key]}" if code else str(body[key])
    return str(body)[:500]


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, UpstreamError) and exc.retryable


def _wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, or the service's Retry-After when it gave one."""
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, UpstreamError) and exc.retry_after is not None:
        return exc.retry_after
    return float(wait_exponential_jitter(initial=0.25, max=10)(state))


class WebService:
    """The routes of the Globus Compute web service that fxgate uses."""

    def __init__(self, settings: GlobusSettings) -> None:
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.session = requests.Session()
        self.session.headers["User-Agent"] = f"fxgate/{__version__}"
        self.tokens = GlobusAccessToken(settings, self.session)
        self._retrying = retry(
            retry=retry_if_exception(_is_retryable),
            wait=_wait,
            stop=stop_after_attempt(settings.http_attempts),
            reraise=True,
        )

    def close(self) -> None:
        """Close the pooled HTTP connections (the upstream's stop)."""
        self.session.close()

    def _request(
        self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None
    ) -> Any:
        return self._retrying(self._once)(method, path, body, params)

    def _once(self, method: str, path: str, body: Any, params: dict[str, str] | None) -> Any:
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                json=body,
                params=params,
                headers={"Authorization": self.tokens.header()},
                timeout=self.settings.http_timeout_s,
            )
        except requests.RequestException as exc:
            raise UpstreamError(f"{method} {path}: {exc}", retryable=True) from None
        if response.status_code == 401:
            self.tokens.invalidate()
        if response.status_code >= 400:
            raise UpstreamError(
                f"{method} {path}: HTTP {response.status_code}: {_message(response)}",
                retryable=response.status_code in RETRY_STATUSES,
                retry_after=_retry_after(response),
            )
        return response.json()

    def register_function(self, function: FunctionRecord) -> str:
        """POST /v3/functions with the body the SDK's FunctionRegistrationData builds.

        meta is the client's (the process that serialized the code); a client
        that sent none gets one describing this daemon, as before.
        """
        code = function.code
        meta = (
            json.loads(function.meta)
            if function.meta
            else {
                "python_version": platform.python_version(),
                "sdk_version": SDK_VERSION,  # a PEP 440 version, as the SDK sends its own
                "serde_identifier": code.split("\n", 2)[1][:2] if "\n" in code else "01",
            }
        )
        source = _source_text(function, meta)
        body: dict[str, Any] = {
            "function_name": function.name,
            "function_code": code if source is None else source,
            "serialized": source is None,
            "meta": meta,
        }
        if function.description:
            body["description"] = function.description
        return str(self._request("POST", "/v3/functions", body)["function_uuid"])

    def submit(
        self,
        endpoint_id: str,
        task_group_id: str | None,
        tasks: dict[str, list[str]],
        result_serializers: list[str],
        options: TaskOptions = NO_OPTIONS,
    ) -> SubmitResult:
        """POST one v3 batch, its body built as the SDK's Batch.prepare builds it.

        The options are the JSON objects the client sent (checked at Submit):
        empty ones are left out, as the SDK leaves them out; user_runtime is
        the client's own (the process that serialized the function).
        """
        body: dict[str, Any] = {"create_queue": True, "tasks": tasks}
        if task_group_id:
            body["task_group_id"] = task_group_id
        for key, text in (
            ("resource_specification", options.resource_specification),
            ("user_endpoint_config", options.user_endpoint_config),
            ("user_runtime", options.user_runtime),
        ):
            value = json.loads(text) if text else None
            if value:
                body[key] = value
        if result_serializers:
            body["result_serializers"] = result_serializers
        reply = self._request("POST", f"/v3/endpoints/{endpoint_id}/submit", body)
        return SubmitResult(
            str(reply["task_group_id"]), {k: list(v) for k, v in reply["tasks"].items()}
        )

    def amqp_url(self) -> tuple[str, str]:
        """(connection_url, queue_prefix); fresh credentials on every call."""
        reply = self._request("GET", "/v2/get_amqp_result_connection_url")
        return str(reply["connection_url"]), str(reply["queue_prefix"])

    def batch_status(self, task_ids: list[str]) -> dict[str, dict[str, Any]]:
        reply = self._request("POST", "/v2/batch_status", {"task_ids": task_ids})
        results = reply.get("results", {})
        return results if isinstance(results, dict) else {}

    def endpoint_status(self, endpoint_id: str) -> Any:
        """GET /v2/endpoints/{id}/status: {"status", "details"}, as the service gives it."""
        return self._request("GET", f"/v2/endpoints/{endpoint_id}/status")

    def endpoint(self, endpoint_id: str) -> Any:
        """GET /v2/endpoints/{id}: the endpoint's metadata, as the service gives it."""
        return self._request("GET", f"/v2/endpoints/{endpoint_id}")

    def endpoints(self, role: str = "") -> Any:
        """GET /v2/endpoints: the endpoints the credentials may see (role: owner, any)."""
        return self._request("GET", "/v2/endpoints", params={"role": role} if role else None)

    def function(self, function_id: str) -> Any:
        """GET /v2/functions/{id}: the function's record, as the service gives it."""
        return self._request("GET", f"/v2/functions/{function_id}")


def _source_text(function: FunctionRecord, meta: dict[str, Any]) -> str | None:
    """The source of a register_source_code registration, else None.

    The SDK sends such a function as its source text (serialized false, and
    metadata without a serde_identifier) and the service packs it with the
    "st" strategy; fxgate's client packs it at once (so the local endpoint can
    run it), and it is unpacked here to be sent as the SDK sends it.
    """
    if "serde_identifier" in meta:
        return None
    try:
        (item,) = unpack_buffers(function.code)
    except (ValueError, SerializationError):
        return None
    prefix = f"st\n{function.name}:"
    return item[len(prefix) :] if item.startswith(prefix) else None
