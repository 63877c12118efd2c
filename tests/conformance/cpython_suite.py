"""CPython's ``test._test_multiprocessing`` classes, importable by name.

This module is imported *after* the implementation under test has been put in
place (``faasmp.patch()``, the ``lithops.multiprocessing`` substitution, or
nothing for the stdlib), because the suite's mixins bind
``multiprocessing.Process``, ``Pool``, ``Queue``... when their classes are
created.  It is imported under the top-level name ``cpython_suite`` (its
directory is on ``PYTHONPATH``) so that workers can import the test classes
by reference, as ``test_multiprocessing_spawn`` children do, instead of
receiving them by value (which would drag class attributes such as the
``dangling`` thread sets along).

Both flavours are installed: ``WithProcesses*`` and ``WithManager*`` classes.
"""

from __future__ import annotations

import test._test_multiprocessing as _suite

_suite.install_tests_in_module_dict(globals(), "fork", only_type="processes")
_suite.install_tests_in_module_dict(globals(), "fork", only_type="manager")
