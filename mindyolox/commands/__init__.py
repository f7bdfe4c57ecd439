"""Every command-line program of mindyolox, and the only place with ``argparse``.

| program | module | installed | in a clone |
| --- | --- | --- | --- |
| train | :mod:`.train` | ``mindyolox-train`` | ``python train.py`` |
| evaluate | :mod:`.evaluate` | ``mindyolox-test`` | ``python test.py`` |
| predict | :mod:`.predict` | ``mindyolox-predict`` | ``python predict.py`` |
| export | :mod:`.export` | ``mindyolox-export`` | ``python deploy/export.py`` |
| infer (an exported model) | :mod:`.infer` | ``mindyolox-infer`` | ``python deploy/infer.py`` |
| quantize (INT8 ONNX) | :mod:`.quantize` | -- | ``python deploy/quantize.py`` |
| tools (verb dispatcher) | :mod:`.tools` | ``mindyolox-tools <verb>`` | ``python tools/<verb>.py`` |
| demo data | :mod:`.demo` | ``mindyolox-tools demo-data`` | ``python -m mindyolox.commands.demo`` |

Each module has ``main(argv=None)`` (returns the exit code; raises ``MindYOLOXError`` on bad
input) and ``run()`` (the console entry point: ``run_cli(main)`` prints a user error as one
``error: ...`` line and exits 2). The launchers of the clone and the console scripts call
the same ``run()``; the work itself is done by library functions of the rooms below
(training, evaluation, predict, deploy, data), which take no command-line arguments. The
argument plumbing the programs share (``key=value`` overrides, ``--img-size``, the options of
``predict`` and ``infer``) is :mod:`._args`.
"""
