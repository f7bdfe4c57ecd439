"""The official side's fine-tuning Exp of ``python -m bench.check_job --weights FILE``: the
anchor launcher's demo Exp, loading FILE the way official ``tools/train.py -c`` does
(``yolox.utils.load_ckpt``: tensors of another shape keep their initial values).

Run by the anchor venv only (it imports torch and the official ``yolox``), never by the project.
:func:`bench.check_job.finetune_exp` copies this file into the job's work folder with the two
constants below set (the weights file, the folder of the launcher's Exp module).
"""
import sys

WEIGHTS = None  # set by bench.check_job.finetune_exp
EXP_DIR = None  # set by bench.check_job.finetune_exp

sys.path.insert(0, EXP_DIR)  # the official launcher loads this file by path; its Exp sits beside it

import torch  # noqa: E402
from yolox.utils import load_ckpt  # noqa: E402
from yolox_nano_demo_exp import Exp as DemoExp  # noqa: E402


class Exp(DemoExp):
    def get_model(self, sublinear=False):
        model = super().get_model(sublinear)
        if not getattr(self, "_finetune_loaded", False):
            load_ckpt(model, torch.load(WEIGHTS, map_location="cpu")["model"])
            self._finetune_loaded = True
        return model
