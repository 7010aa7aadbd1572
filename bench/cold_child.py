"""One cold start: `python -m bench.cold_child MODULE EVENT_JSON OUT_JSON FUNCTION TIMEOUT`.

A fresh interpreter imports the handler module and serves one event, as a new Lambda container
does; the timings, the answer's status and the peak RSS go to OUT_JSON.
"""

import gc
import importlib
import json
import resource
import sys
import time

from devstack.lambda_context import LocalContext


class GcClock:
    """Time spent in the cyclic garbage collector, per generation, while the child runs."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started


def main() -> None:
    gc_clock = GcClock()
    module_name, event_path, out_path, function, timeout = sys.argv[1:6]
    with open(event_path) as fh:
        event = json.load(fh)
    context = LocalContext(function_name=function, timeout_seconds=float(timeout))
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    imported = time.perf_counter()
    error = None
    try:
        answer = module.lambda_handler(event, context)
    except Exception as exc:  # a handler that raises still had its cold start
        answer, error = None, type(exc).__name__
    served = time.perf_counter()
    status = answer.get("statusCode") if isinstance(answer, dict) else None
    outcome = (f"raised {error}" if error else f"HTTP {status}" if status is not None
               else "summary " + json.dumps(answer, default=str)[:80] if isinstance(answer, dict)
               else type(answer).__name__)
    with open(out_path, "w") as fh:
        json.dump({"import_s": imported - started, "first_event_s": served - imported,
                   "total_s": served - started, "outcome": outcome, "maxrss_mb": peak_rss_mb(),
                   "gc_s": gc_clock.seconds},
                  fh)


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the
    parent across fork+exec, so a small child of a big parent would report the parent's."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
