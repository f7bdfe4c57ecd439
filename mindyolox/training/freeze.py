"""``train.freeze``: parts of the model that fine-tuning leaves as they are.

Each entry is a name prefix of the model's cells and parameters (``backbone.backbone.dark2``,
``head.cls_preds``) or one of three part names: ``backbone`` (the CSPDarknet / Darknet-53
feature extractor, ``backbone.backbone``), ``neck`` (the PAFPN / FPN layers around it: the
rest of ``backbone``) and ``head``. A frozen parameter is not trainable: the compiled step
takes no gradient for it (so the backward pass stops where nothing before it trains), it
gets no weight decay and no optimizer state; a frozen BatchNorm layer normalises with its
running statistics in training too (eval mode), so they stay untouched.
"""
from ..errors import ConfigError
from ..models.batchnorm import BatchNorm2d

__all__ = ["freeze", "selector"]

PARTS = ("backbone", "neck", "head")


def selector(name):
    """A predicate on dotted cell / parameter names for one ``train.freeze`` entry."""
    if name == "backbone":
        name = "backbone.backbone"
    if name == "neck":
        return lambda n: n.startswith("backbone.") and not n.startswith("backbone.backbone.")
    prefix = name.rstrip(".")
    return lambda n: n == prefix or n.startswith(prefix + ".")


def freeze(model, names):
    """Freeze the parts ``names`` of ``model`` (module doc); returns ``(tensors, bn_layers)``
    frozen. An entry that matches no parameter is refused (ConfigError naming it)."""
    params = [(n, p) for n, p in model.parameters_and_names()]
    frozen = 0
    for name in names:
        match = selector(str(name))
        hit = [p for n, p in params if match(n)]
        if not hit:
            raise ConfigError(f"train.freeze: {name!r} matches no parameter of the model (use {', '.join(PARTS)} "
                              f"or a name prefix such as backbone.backbone.dark2)")
        for p in hit:
            frozen += p.requires_grad
            p.requires_grad = False
    bn = 0
    for cell_name, cell in model.cells_and_names():
        if isinstance(cell, BatchNorm2d) and any(selector(str(name))(cell_name) for name in names):
            cell.frozen = True
            bn += 1
    return frozen, bn
