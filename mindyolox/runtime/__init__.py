"""The process a run lives in: MindSpore device context, distributed setup, compile cache, the
heap after a compile, run-folder lock, signals, output folders."""
