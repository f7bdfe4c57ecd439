"""The process a run lives in: MindSpore device context, distributed setup, compile cache,
run-folder lock, signals, output folders."""
