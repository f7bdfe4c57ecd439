"""The command-line programs: ``train``, ``evaluate`` (test.py), ``predict``, ``export``.

Each module has ``main(argv=None)`` (returns the exit code; raises ``MindYOLOXError`` on bad
input) and ``run()`` (the console entry point: ``mindyolox-train``, ``mindyolox-test``,
``mindyolox-predict``, ``mindyolox-export``); ``train.py``, ``test.py``, ``predict.py`` and
``deploy/export.py`` in a clone call the same ``run()``.
"""
