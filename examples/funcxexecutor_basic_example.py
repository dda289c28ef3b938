"""The basic FuncXExecutor example of the funcX guide: submit one task, print its result.

Shows the mechanics of the executor: ``submit`` returns a future at once,
``result()`` blocks until the task ran, and the ``with`` statement shuts the
executor down. Prints ``14``.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_basic_example.py
"""

from client import FuncXExecutor  # fxgate: was `from funcx import FuncXExecutor`


def double(x):
    return x * 2


# fxgate: was the public tutorial endpoint's UUID; "local" is the daemon's worker pool
tutorial_endpoint_id = "local"
with FuncXExecutor(endpoint_id=tutorial_endpoint_id) as fxe:
    fut = fxe.submit(double, 7)

    print(fut.result())
