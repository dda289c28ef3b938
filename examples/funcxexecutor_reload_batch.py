"""Reloading a batch submitted earlier, and receiving its results as they arrive.

Takes the task group id that funcxclient_submit_batch.py printed, rebuilds
the futures of its ten tasks with ``reload_tasks()`` and prints
``Received: All done!`` as each finishes (at once for those already done).

Run with a daemon serving (``fxgate serve``), after funcxclient_submit_batch.py:

    python examples/funcxexecutor_reload_batch.py <TASK_GROUP_ID>
"""

import concurrent.futures  # fxgate: missing in the guide (NameError)
import sys  # fxgate: for the task group id on the command line

from client import FuncXExecutor  # fxgate: was `from funcx import FuncXExecutor`

ep_id = "local"  # fxgate: was "<endpoint_id>"
# fxgate: was the placeholder "Saved task group id from 'yesterday'"; now argv[1]
tg_id = sys.argv[1]
# fxgate: was `FuncxExecutor` (NameError: the class is FuncXExecutor)
with FuncXExecutor(endpoint_id=ep_id, task_group_id=tg_id) as fxe:
    futures = fxe.reload_tasks()  # fxgate: the guide had `reload_tasks())` (SyntaxError)
    # fxgate: was `as_completed(futs)` (NameError: the list is `futures`)
    for f in concurrent.futures.as_completed(futures):
        print("Received:", f.result())
