"""Handling exceptions: a task that raises, and a try block around ``result()``.

The sequence generator raises ValueError after 100 steps, and 1234567890
needs more, so ``result()`` re-raises it in the client. Prints
``Oh no!  The task raised an exception: Sequence not terminated in 100 steps``.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_handle_result_exceptions.py
"""

from client import FuncXExecutor  # fxgate: was `from funcx import FuncXExecutor`


def generate_collatz_sequence(N: int, sequence_limit=100):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    if N != 1:
        raise ValueError(f"Sequence not terminated in {sequence_limit} steps")
    return seq


ep_id = "local"  # fxgate: the guide uses ep_id without defining it

with FuncXExecutor(endpoint_id=ep_id) as fxe:
    future = fxe.submit(generate_collatz_sequence, 1234567890)

try:
    print(future.result())
except Exception as exc:
    # fxgate: the guide's f-string lacked its closing quote (a SyntaxError)
    print(f"Oh no!  The task raised an exception: {exc}")
