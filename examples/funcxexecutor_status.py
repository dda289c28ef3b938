"""Checking the status of a result without blocking: ``future.done()``.

The guide gives only a fragment (it starts with ``...``); this file makes it
whole with the executor and the sequence generator of the Collatz example.
Prints one line, ``Status:  False`` in practice: the future is checked right
after ``submit``, before the task can have run. The ``with`` statement then
waits for the task before the script exits.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_status.py
"""

# fxgate: the guide's fragment has no imports, function, endpoint id or
# executor; these lines up to `with` come from funcxexecutor_collatz.py.
from client import FuncXExecutor


def generate_collatz_sequence(N: int, sequence_limit=10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    return seq


ep_id = "local"

with FuncXExecutor(endpoint_id=ep_id) as fxe:
    future = fxe.submit(generate_collatz_sequence, 1234567890)

    # Use the .done() method to check the status of the function without
    # blocking; this will return a Bool indicating whether the result is ready
    print("Status: ", future.done())
