import math

import pytest
import torch
import torch.nn.functional as F
from eval_toy import toy_pipeline, vec

from clipforge.errors import UserError
from clipforge.eval import zeroshot
from clipforge.eval.datasets import ClassificationData, ListImages
from clipforge.eval.templates import fill, get_templates

E = torch.eye(4)


def _data(classnames, images, labels):
    return ClassificationData(list(classnames), ListImages(images), list(labels), "toy")


def test_exact_top1_top5_per_class_and_confusion():
    pipe = toy_pipeline({"a photo of a cat.": E[0], "a photo of a dog.": E[1], "a photo of a fox.": E[2]})
    images = [vec(1, 0.1, 0, 0), vec(0.9, 0.2, 0, 0), vec(0.2, 1, 0, 0), vec(0, 0.5, 1, 0), vec(0, 0.2, 0.1, 0)]
    labels = [0, 1, 1, 2, 2]  # predictions: 0, 0, 1, 2, 1
    res = zeroshot.evaluate(pipe, _data(["cat", "dog", "fox"], images, labels), ["a photo of a {}."])
    m = res.metrics()
    assert m["top1"] == pytest.approx(3 / 5)
    assert m["top5"] == 1.0  # only 3 classes: top-5 is top-3
    assert m["mean_per_class"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)
    assert m["n_images"] == 5 and m["n_classes"] == 3
    assert res.confusion().tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1]]
    assert res.per_class_accuracy() == [1.0, 0.5, 0.5]


def test_top5_counts_rank_five_not_six():
    names = [f"c{i}" for i in range(7)]
    table = {f"{c}": torch.eye(7)[i] for i, c in enumerate(names)}
    pipe = toy_pipeline(table)
    # image scores decrease with class index: class i has rank i.
    image = torch.tensor([7.0, 6, 5, 4, 3, 2, 1])
    res = zeroshot.evaluate(pipe, _data(names, [image] * 7, range(7)), ["{}"])
    assert res.metrics()["top5"] == pytest.approx(5 / 7)
    assert res.metrics()["top1"] == pytest.approx(1 / 7)


def test_templates_are_averaged_after_normalization():
    # cat's two prompts have very different norms: averaging raw vectors would point along x.
    pipe = toy_pipeline({"a cat": vec(10, 0, 0), "the cat": vec(0, 1, 0), "a dog": vec(0, 0, 1), "the dog": vec(0, 0, 2)})
    w = zeroshot.class_embeddings(pipe, ["cat", "dog"], ["a {}", "the {c}"])
    assert torch.allclose(w[0], vec(1, 1, 0) / math.sqrt(2))
    assert torch.allclose(w[1], vec(0, 0, 1))
    assert torch.allclose(w.norm(dim=1), torch.ones(2))
    # An image nearer y than x: right only if the prompts were normalized before averaging.
    image = F.normalize(vec(0.3, 1, 0.9), dim=0)
    res = zeroshot.evaluate(pipe, _data(["cat", "dog"], [image], [0]), ["a {}", "the {c}"])
    assert res.metrics()["top1"] == 1.0


def test_ties_go_to_the_lower_class_index():
    pipe = toy_pipeline({"a": E[0], "b": E[1], "c": E[2]})
    tie = vec(1, 1, 0, 0)  # equal scores for a and b
    res = zeroshot.evaluate(pipe, _data(["a", "b", "c"], [tie, tie], [0, 1]), ["{}"])
    assert res.predictions.tolist() == [0, 0]
    assert res.metrics()["top1"] == 0.5
    # Listing b first makes b win the same tie.
    res = zeroshot.evaluate(pipe, _data(["b", "a", "c"], [tie], [0]), ["{}"])
    assert res.predictions.tolist() == [0]
    assert res.ranking[0].tolist() == [0, 1, 2]


def test_class_without_images_is_a_candidate_but_not_in_the_mean():
    pipe = toy_pipeline({"a": E[0], "b": E[1], "empty": E[2]})
    images = [vec(1, 0, 0, 0), vec(0, 0, 1, 0), vec(0, 1, 0, 0)]  # the second is predicted "empty"
    res = zeroshot.evaluate(pipe, _data(["a", "b", "empty"], images, [0, 0, 1]), ["{}"])
    m = res.metrics()
    assert m["top1"] == pytest.approx(2 / 3)
    assert m["mean_per_class"] == pytest.approx((0.5 + 1.0) / 2)
    assert res.per_class_accuracy() == [0.5, 1.0, None]
    assert res.confusion()[0].tolist() == [1, 0, 1]


def test_hook_matches_evaluate_embeds_texts_once_and_restores_mode():
    table = {f"a photo of a {c}.": E[i] for i, c in enumerate("abcd")}
    pipe = toy_pipeline(table)
    images = [vec(1, 0.5, 0, 0), vec(0, 1, 0, 0), vec(0, 0, 0.2, 1), vec(0.1, 0, 1, 0.5)]
    labels = [0, 1, 2, 2]
    expected = zeroshot.evaluate(pipe, _data("abcd", images, labels), ["a photo of a {}."]).metrics()
    hook = zeroshot.make_zeroshot_hook(list("abcd"), images, labels, prefix="zs/")
    pipe.model.train()
    pipe.model.text_calls = 0
    out = hook(pipe)
    assert pipe.model.training
    assert pipe.model.text_calls == 1  # all class prompts in one batch, once per evaluation
    assert out == {"zs/top1": expected["top1"], "zs/top5": expected["top5"], "zs/mean_per_class": expected["mean_per_class"]}
    assert out["zs/top1"] == 0.75
    # A model change between calls shows up (nothing stale is cached but the preprocessed pixels).
    pipe.model.text_table[0] = E[3]
    assert hook(pipe)["zs/top1"] == 0.5


def test_template_sets():
    openai = get_templates("openai")
    assert len(openai) == 80 and len(set(openai)) == 80
    assert "a photo of a {}." in openai and all("{}" in t for t in openai)
    short = get_templates("short")
    assert len(short) == 7 and set(short) <= set(openai)
    assert get_templates("single") == ("a photo of a {}.",)
    assert fill("a {c} with {braces}", "x") == "a x with {braces}"
    assert fill("a photo of a {}.", "T-shirt/top") == "a photo of a T-shirt/top."


def test_custom_template_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("# my prompts\na drawing of a {}.\n\nan emoji of {c}\n")
    assert get_templates(str(path)) == ("a drawing of a {}.", "an emoji of {c}")
    path.write_text("no placeholder here\n")
    with pytest.raises(UserError, match="placeholder"):
        get_templates(str(path))
    with pytest.raises(UserError, match="unknown template set"):
        get_templates(str(tmp_path / "missing.txt"))
