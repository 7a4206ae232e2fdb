"""Reliability harnesses shared by the CI tests and the full-run scripts (``scripts/fuzz_api.py``,
``scripts/soak_test.py``, ``scripts/fault_drills.py``): a service subprocess on tiny models, a load generator
that accounts for every request, the schemathesis fuzz loop and the fault drills. Loopback only, bounded.
"""
