"""CPython's own multiprocessing tests run against faasmp (opt-in: ``pytest -m conformance``)."""
