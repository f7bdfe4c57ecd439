"""``python -m mindyolox.tools <verb> ...`` = ``mindyolox-tools <verb> ...``."""
from . import run

run()
