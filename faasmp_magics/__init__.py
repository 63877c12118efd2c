"""IPython extension for faasmp: ``%load_ext faasmp_magics``.

Registers :class:`~faasmp_magics.magics.FaasMagics`:

* ``%faas_pool N [--backend NAME] [--redis URL] [--idle-timeout S] [--no-dashboard]``
  starts or resizes a warm pool of N workers; ``%faas_pool`` shows its status,
  ``%faas_pool --stop`` stops it.
* ``%%faas [--workers N] [--no-dashboard] [--stats]`` runs the cell's ordinary
  ``multiprocessing`` code on faasmp, with a live dashboard under the cell.

The magics use only faasmp's public API; the dashboard draws from the
``faasmp.stats`` event stream (:mod:`faasmp_magics.dashboard`).
"""

from __future__ import annotations

from typing import Any

from .magics import FaasMagics

__all__ = ["FaasMagics", "last_records", "load_ipython_extension", "unload_ipython_extension"]


def load_ipython_extension(ipython: Any) -> None:
    """Called by ``%load_ext faasmp_magics``."""
    magics = FaasMagics(shell=ipython)
    ipython.register_magics(magics)
    magics.install()
    magics.prewarm()


def unload_ipython_extension(ipython: Any) -> None:
    """Called by ``%unload_ext faasmp_magics``: stops dashboards, unregisters the magics."""
    manager = ipython.magics_manager
    magics = manager.registry.pop(FaasMagics.__name__, None)
    if magics is None:
        return
    magics.uninstall()
    for kind, names in magics.magics.items():
        for name in names:
            manager.magics[kind].pop(name, None)


def last_records() -> list[Any]:
    """Task records (``faasmp.stats.TaskRecord``) of every job of the last ``%%faas`` cell."""
    from IPython import get_ipython  # noqa: PLC0415

    shell = get_ipython()
    magics = shell.magics_manager.registry.get(FaasMagics.__name__) if shell is not None else None
    return list(magics.last_records) if magics is not None else []
