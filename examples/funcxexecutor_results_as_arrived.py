"""Receiving results out of order, with ``concurrent.futures.as_completed``.

First prints ten quick results in submission order (``Results: [...]``),
then ten slow ones (each sleeps a random part of ``x`` seconds, x = 10..19)
as they arrive (``Received: ...``), in whatever order they finish. Takes
up to a minute or so, depending on the number of local workers.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_results_as_arrived.py
"""

import concurrent.futures

from client import FuncXExecutor  # fxgate: missing in the guide (NameError)


def double(x):
    return f"{x} -> {x * 2}"


def slow_double(x):
    import random, time  # noqa: E401, I001

    time.sleep(x * random.random())
    return f"{x} -> {x * 2}"


endpoint_id = "local"  # fxgate: the guide uses endpoint_id without defining it

with FuncXExecutor(endpoint_id=endpoint_id) as fxe:
    futs = [fxe.submit(double, i) for i in range(10)]

    # The futures were appended to the `futs` list in order, so one could
    # wait for each result in turn to get an ordered set:
    print("Results:", [f.result() for f in futs])

    # But often acting on the results *as they arrive* is more desirable
    # as results are NOT guaranteed to arrive in the order they were
    # submitted.
    #
    # NOTA BENE: handling results "as they arrive" must happen before the
    # executor is shutdown.  Since this executor was used in a `with`
    # statement, then to stream results, we must *stay* within the `with`
    # statement.  Otherwise, at the unindent, `.shutdown()` will be
    # implicitly invoked (with default arguments) and the script will not
    # continue until *all* of the futures complete.
    # fxgate: was `fx.submit` (NameError); the executor is `fxe`
    futs = [fxe.submit(slow_double, i) for i in range(10, 20)]
    for f in concurrent.futures.as_completed(futs):
        print("Received:", f.result())
