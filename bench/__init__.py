"""The benchmarks of mindyolox (not part of the installed package): run each as a module from
the repository root, ``python -m bench.<name>`` (docs/benchmarks.md). Every script measures
through :mod:`bench.harness`; the acceptance checks are ``bench/check_*.py``."""
