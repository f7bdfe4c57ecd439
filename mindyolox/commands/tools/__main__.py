"""``python -m mindyolox.commands.tools <verb> ...`` = ``mindyolox-tools <verb> ...``."""
from . import run

run()
