"""Task options stored once per distinct set, and one shared object per set in memory.

A million tasks submitted with the same user_endpoint_config must not store
(or hold) it a million times: the ``task_options`` table keeps each distinct
set under a content hash, tasks name that key, and :class:`SharedOptions`
hands out one TaskOptions object per key, at Submit and when
Store.unfinished reads tasks back after a restart.
"""

from __future__ import annotations

import hashlib

from gateway.store.records import NO_OPTIONS, TaskOptions

# Distinct option sets remembered; past this the memo starts over (objects
# already handed out stay valid: sharing is a saving, not a rule).
MAX_SHARED = 4096


def options_key(options: TaskOptions) -> str:
    """The content key of an option set: "" for none, else a SHA-256 of its three texts."""
    if options == NO_OPTIONS:
        return ""
    digest = hashlib.sha256()
    for text in (options.user_endpoint_config, options.resource_specification):
        digest.update(f"{len(text)}:".encode())
        digest.update(text.encode())
    digest.update(options.user_runtime.encode())
    return digest.hexdigest()


class SharedOptions:
    """One TaskOptions object per content key.

    Called from any thread (the gRPC pool, the upstreams' reads): a dict's get,
    setdefault and clear are each atomic under the GIL, and a lost race only
    costs one extra object.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, TaskOptions] = {}

    def share(self, key: str, options: TaskOptions) -> TaskOptions:
        """The object already held for key, or options, now held for it."""
        if not key:
            return NO_OPTIONS
        found = self._by_key.get(key)
        if found is None:
            if len(self._by_key) >= MAX_SHARED:
                self._by_key.clear()
            found = self._by_key.setdefault(key, options)
        return found

    def get(self, key: str) -> TaskOptions | None:
        """The object held for key, if any."""
        return NO_OPTIONS if not key else self._by_key.get(key)
