"""The published figures every reproduction compares with (AWS Lambda + Redis).

Arjona, Finol and García-López, "Transparent serverless execution of Python
multiprocessing applications" (FGCS 2023), and the master thesis behind it.  Only
numbers the publication states are here; where it gives a ratio against a VM but no
worker count, the worker count is ``None`` and the notebooks draw the figure as a
reference line "at the paper's scale" instead of placing it on our axis.
"""

from __future__ import annotations

import dataclasses

#: Table 4.1, seconds per phase of one invocation.
OVERHEADS_COLD = {"serialize": 0.004, "invoke": 1.719, "setup": 0.05, "join": 0.63, "total": 2.407}
OVERHEADS_WARM = {"serialize": 0.004, "invoke": 0.258, "setup": 0.05, "join": 0.63, "total": 0.939}

#: Fig 4.2: a map of this many functions, each sleeping this long (s).
SLEEP_MAP_FUNCTIONS, SLEEP_MAP_SLEEP_S = 1024, 5.0

#: Table 4.2 and Fig 4.3: 1-byte Pipe round trip (ms) on Lambda + Redis and between EC2 VMs,
#: and Pipe throughput with 1 MB messages (MB/s).
PIPE_RTT_MS, PIPE_RTT_VM_MS, PIPE_MB_S = 1.0, 0.5, 90.0

#: Monte Carlo pi: points, and the speed of Lambda over a VM with as many vCPUs (20-25% faster).
MONTECARLO_POINTS = 3.2e9
MONTECARLO_VS_VM = (1.20, 1.25)

#: Object storage as a disk: aggregate GB/s with about a thousand functions.
STORAGE_READ_GBS, STORAGE_WRITE_GBS, STORAGE_FUNCTIONS = 80.0, 65.0, 1000

#: Table 4.3: sorting 5M elements with 64 processes through pipes, serverless and on a VM (s).
SORT_ELEMENTS, SORT_PROCESSES = 5_000_000, 64
SORT_PIPES_S, SORT_LOCAL_S = 17.3, 14.3

#: Applications: ES/POET speed-up over one core on up to 1000 functions and on the largest VM.
ES_WORKERS, ES_SPEEDUP_SERVERLESS, ES_SPEEDUP_VM = 1000, 53.0, 40.0
#: pandarallel sentiment: serverless time / VM time (7% slower).
SENTIMENT_TIME_VS_VM = 1.07
#: GridSearchCV: serverless speed-up beyond the VM.
GRIDSEARCH_BEYOND_VM = 3.6
#: PPO master/worker: serverless time / VM time (11% faster).
PPO_TIME_VS_VM = 0.89


@dataclasses.dataclass(frozen=True)
class PaperSpeedup:
    """A published speed-up over one worker; *workers* is None when no count was published."""

    label: str
    speedup: float
    workers: int | None


@dataclasses.dataclass(frozen=True)
class PaperScaling:
    """What the publication says about one application's scaling.

    *vs_vm* is (low, high) of VM time / serverless time (above 1: the functions were
    faster), at the paper's own scale (*vs_vm_workers*, None when not published).
    """

    speedups: tuple[PaperSpeedup, ...]
    vs_vm: tuple[float, float]
    vs_vm_workers: int | None
    summary: str


#: Per application notebook: the paper's curve, drawn beside our scaling curve.
SCALING: dict[str, PaperScaling] = {
    "montecarlo_pi": PaperScaling(
        (), MONTECARLO_VS_VM, None, "Lambda 20-25% faster than a VM with as many vCPUs"
    ),
    "shared_sort": PaperScaling(
        (),
        (SORT_LOCAL_S / SORT_PIPES_S,) * 2,
        SORT_PROCESSES,
        f"pipes {SORT_PIPES_S} s on Lambda vs {SORT_LOCAL_S} s on a VM, {SORT_PROCESSES} processes",
    ),
    "evolution": PaperScaling(
        (
            PaperSpeedup("paper: serverless", ES_SPEEDUP_SERVERLESS, ES_WORKERS),
            PaperSpeedup("paper: largest VM", ES_SPEEDUP_VM, None),
        ),
        (ES_SPEEDUP_SERVERLESS / ES_SPEEDUP_VM,) * 2,
        None,
        f"{ES_SPEEDUP_SERVERLESS:.0f}x on {ES_WORKERS} functions vs {ES_SPEEDUP_VM:.0f}x on the largest VM",
    ),
    "sentiment": PaperScaling((), (1 / SENTIMENT_TIME_VS_VM,) * 2, None, "pandarallel 7% slower than a VM"),
    "gridsearch": PaperScaling((), (GRIDSEARCH_BEYOND_VM,) * 2, None, "3.6x beyond a VM"),
    "rl_pipes": PaperScaling((), (1 / PPO_TIME_VS_VM,) * 2, None, "PPO 11% faster than a VM"),
}
