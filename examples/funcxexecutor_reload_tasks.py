"""Reloading tasks: rebuild the futures of a task group in a new process.

The first run submits five tasks, prints its task group id, waits until the
daemon accepted all five, then SIGKILLs itself to simulate a lost session.
The second run, given that id, reloads the futures with ``reload_tasks()``
and prints the five results. The daemon kept them meanwhile.

Run with a daemon serving (``fxgate serve``):

    python examples/funcxexecutor_reload_tasks.py
    python examples/funcxexecutor_reload_tasks.py <TASK_GROUP_ID>
"""

# execute initially as:
# $ python funcxexecutor_reload_tasks.py
#  ... this Task Group ID: <TG_UUID_STR>
#  ...
# Then run with the Task Group ID as an argument:
# $ python funcxexecutor_reload_tasks.py <TG_UUID_STR>

import os, signal, sys, time, typing as t  # noqa: E401, I001
from client import FuncXExecutor  # fxgate: was `from funcx import FuncXExecutor`
from client import FuncXFuture  # fxgate: was `from funcx.sdk.executor import FuncXFuture`

task_group_id = sys.argv[1] if len(sys.argv) > 1 else None


def task_kernel(num):
    return f"your funcx logic result, from task: {num}"


ep_id = "local"  # fxgate: was "<YOUR_ENDPOINT_UUID>"
with FuncXExecutor(endpoint_id=ep_id) as fxe:
    futures: t.Iterable[FuncXFuture]
    if task_group_id:
        print(f"Reloading tasks from Task Group ID: {task_group_id}")
        fxe.task_group_id = task_group_id
        futures = fxe.reload_tasks()

    else:
        # Save the task_group_id somewhere.  Perhaps in a file, or less
        # robustly "as mere text" on your console:
        print(
            "New session; creating funcX tasks; if this script dies, rehydrate"
            f" futures with this Task Group ID: {fxe.task_group_id}"
        )
        num_tasks = 5
        futures = [fxe.submit(task_kernel, i + 1) for i in range(num_tasks)]

        # Ensure all tasks have been sent upstream ...
        while fxe.task_count_submitted < num_tasks:
            time.sleep(1)
            print(f"Tasks submitted upstream: {fxe.task_count_submitted}")

        # ... before script death for [silly reason; did you lose power!?]
        bname = sys.argv[0]
        if sys.argv[0] != sys.orig_argv[0]:
            bname = f"{sys.orig_argv[0]} {bname}"

        print("Simulating unexpected process death!  Now reload the session")
        print("by rerunning this script with the task_group_id:\n")
        print(f"  {bname} {fxe.task_group_id}\n")
        os.kill(os.getpid(), signal.SIGKILL)
        exit(1)  # In case KILL takes split-second to process

# Get results:
results, exceptions = [], []
for f in futures:
    try:
        results.append(f.result(timeout=10))
    except Exception as exc:
        exceptions.append(exc)
print("Results:\n ", "\n  ".join(results))
