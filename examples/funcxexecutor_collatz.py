"""Multiple function invocations: the Collatz sequences of 1 to 100, one task each.

Shows submitting many tasks in a loop and collecting the futures in
submission order. Prints a line before waiting, a summary line, then the 100
sequences (each ending in 1) in order.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_collatz.py
"""

from client import FuncXExecutor  # fxgate: was `from funcx import FuncXExecutor`


def generate_collatz_sequence(N: int, sequence_limit=10_000):
    seq = [N]
    while N != 1 and len(seq) < sequence_limit:
        if N % 2:
            N = 3 * N + 1
        else:
            N //= 2  # okay because guaranteed integer result
        seq.append(N)
    return seq


ep_id = "local"  # fxgate: was "<your_endpoint_id>"

generate_from = 1
generate_through = 100
futs, results, disproof_candidates = [], [], []
with FuncXExecutor(endpoint_id=ep_id) as fxe:
    for n in range(generate_from, generate_through + 1):
        futs.append(fxe.submit(generate_collatz_sequence, n))
    print("Tasks all submitted; waiting for results")

# The futures were appended to the `futs` list in order, so one could wait
# for each result in turn to get a submission-ordered set of results:
for f in futs:
    r = f.result()
    results.append(r)
    if r[-1] != 1:
        # of course, given the conjecture, we don't expect this branch
        disproof_candidates.append(r[0])

print(f"All sequences generated (from {generate_from} to {generate_through})")
for res in results:
    print(res)

if disproof_candidates:
    print("Possible conjecture disproving integers:", disproof_candidates)
