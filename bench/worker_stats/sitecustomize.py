"""Per-worker accounting for bench/filters.py --ansible (on PYTHONPATH only
for the benchmark's own ansible-playbook runs, when BENCH_WORKER_STATS names
a file): for every task and host, the forked worker's CPU time, the time it
spent in the garbage collector's full (generation 2) collections, and its
minor page faults (copy-on-write of the pages it writes), one JSON line each.
"""
import os
import sys

if os.environ.get("BENCH_WORKER_STATS") and any(a.endswith("ansible-playbook") for a in sys.argv[:1]):
    import gc
    import importlib.abc
    import importlib.machinery
    import json
    import resource
    import time

    def _install(worker):
        orig = worker.WorkerProcess._run

        def _run(self):
            full_gc = [0.0, 0]
            started = [0.0]

            def on_gc(phase, info):
                if info["generation"] != 2:
                    return
                if phase == "start":
                    started[0] = time.perf_counter()
                else:
                    full_gc[0] += time.perf_counter() - started[0]
                    full_gc[1] += 1
            gc.callbacks.append(on_gc)
            cpu0 = time.process_time()
            flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            try:
                return orig(self)
            finally:
                rec = {"task": self._task.get_name(), "cpu_s": time.process_time() - cpu0,
                       "full_gc_s": full_gc[0], "full_gcs": full_gc[1],
                       "minor_faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0}
                with open(os.environ["BENCH_WORKER_STATS"], "a") as f:
                    f.write(json.dumps(rec) + "\n")
        worker.WorkerProcess._run = _run

    class _Hook(importlib.abc.MetaPathFinder):
        """Patch ansible's worker module as it is first imported."""
        def find_spec(self, name, path, target=None):
            if name != "ansible.executor.process.worker":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            exec_module = spec.loader.exec_module

            def patched(module):
                exec_module(module)
                _install(module)
            spec.loader.exec_module = patched
            return spec
    sys.meta_path.insert(0, _Hook())
