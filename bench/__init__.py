"""The comparison benchmark of fxgate, the Globus Compute SDK and the raw broker (issue 5).

A package so the helper processes it starts (`python -m bench.publisher`,
`python -m bench.worker`, ...) and the scenarios share code; entry point:
`python bench/compare.py`.
"""
