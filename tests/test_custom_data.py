"""Own data on a shipped recipe: COCO class names and count come from the JSON (the demo
recipe's ``data.classes`` does not refuse a 2-class COCO set), VOC's ``data.classes`` must
match ``model.num_classes``, and a class count that does not fit the data stops before training."""
import pytest

from mindyolox import load_config
from mindyolox.predict.predictor import class_names_for
from mindyolox.errors import ConfigError

from .test_package import CLASSES, make_coco, make_voc


def test_coco_data_on_the_demo_recipe_takes_names_from_the_json(tmp_path):
    make_coco(tmp_path / "my_coco")
    overrides = [f"data.data_dir={tmp_path / 'my_coco'}", "model.num_classes=2",
                 "data.train_ann=annotations/train.json", "data.train_images=images/train",
                 "data.val_ann=annotations/val.json", "data.val_images=images/val"]
    cfg = load_config("demo/yolox-nano-demo", overrides)   # its six data.classes no longer refuse it
    assert len(cfg.data.classes) == 6 and class_names_for(cfg) == CLASSES
    # a COCO recipe without data.classes: the JSON's names too (by sorted category id)
    assert class_names_for(load_config("custom/yolox-nano-cpu", overrides)) == CLASSES
    # data.classes that fit num_classes name the classes for predict/export
    assert class_names_for(load_config("custom/yolox-nano-cpu", overrides + ["data.classes=[a,b]"])) == ("a", "b")


def test_voc_classes_must_match_num_classes():
    with pytest.raises(ConfigError, match=r"'data.classes' lists 2 names but model.num_classes is 3"):
        load_config("custom/yolox-nano-cpu", ["data.format=voc", "model.num_classes=3", "data.classes=[cat,dog]"])


def test_a_class_count_that_does_not_fit_the_data_stops_before_training(tmp_path):
    from mindyolox.training.builder import build_training
    from mindyolox.options import resolve_options
    make_voc(tmp_path / "my_voc")
    cfg = load_config("custom/yolox-nano-cpu", ["data.format=voc", f"data.data_dir={tmp_path / 'my_voc'}",
                                                "data.val_split=test", "data.num_workers=0"])  # 80: forgot it
    with pytest.raises(ConfigError, match=r"has 20 classes but model.num_classes is 80: set model.num_classes=20"):
        build_training(cfg, resolve_options(cfg), evaluate=False)
