"""Backends: where functions run (compute) and where shared state lives (state).

The API modules reach Lithops and Redis only through the narrow protocols
defined here; ``compute.py`` is the only module importing lithops and
``state.py`` the only one importing redis (a test checks both).
"""
