"""The Globus Compute serialization strategy ids, by what they may carry (no dill here).

A serialized item starts with a two-character strategy id and a newline
(spec: docs/globus-compute-wire.md section 4). The daemon checks that a
function's code and a task's payload carry ids of the right kind without
deserializing anything; `serialize` binds each id to its loader and dumper.
"""

from __future__ import annotations

from dataclasses import dataclass

# Every item's header: the two-character id and "\n".
HEADER_LENGTH = 3


@dataclass(frozen=True, slots=True)
class Strategy:
    """One strategy of the SDK's serializer: its class name and id."""

    name: str  # the SDK class name, as used in result_serializers import paths
    identifier: str  # HEADER_LENGTH characters, ending in "\n"
    for_code: bool  # a function's code (True) or data: arguments and results (False)


STRATEGIES = (
    Strategy("DillDataBase64", "00\n", False),
    Strategy("DillCode", "01\n", True),
    Strategy("PickleCode", "02\n", True),
    Strategy("DillCodeTextInspect", "03\n", True),
    Strategy("DillCodeSource", "04\n", True),
    Strategy("CombinedCode", "10\n", True),
    Strategy("JSONData", "11\n", False),
    Strategy("AllCodeStrategies", "12\n", True),
    Strategy("AllDataStrategies", "13\n", False),
    Strategy("PureSourceTextInspect", "st\n", True),
    Strategy("PureSourceDill", "sd\n", True),
)
BY_ID = {s.identifier: s for s in STRATEGIES}
BY_NAME = {s.name: s for s in STRATEGIES}
CODE_IDS = frozenset(s.identifier for s in STRATEGIES if s.for_code)
DATA_IDS = frozenset(s.identifier for s in STRATEGIES if not s.for_code)
