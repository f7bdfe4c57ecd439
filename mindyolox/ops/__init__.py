"""Compiled operators below the models: the CPU kernels (:mod:`.cpu_kernels`)."""
