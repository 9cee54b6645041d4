import pytest
import torch
import torch.nn.functional as F
from eval_toy import toy_pipeline, vec

from clipforge.eval import linear_probe, retrieval
from clipforge.eval.datasets import ListImages, RetrievalData

E = torch.eye(4)


def test_retrieval_exact_recall_with_several_captions():
    # image 0 has two captions; its second caption is closest to it. Image 2's caption points at image 1.
    texts = {"cat far": vec(0, 0, 0, 1), "cat near": vec(1, 0.1, 0, 0), "dog": vec(0, 1, 0, 0), "fox": vec(0, 1, 0.4, 0)}
    pipe = toy_pipeline(texts)
    images = [vec(1, 0, 0, 0), vec(0, 1, 0, 0), vec(0, 0.5, 1, 0)]
    data = RetrievalData(ListImages(images), [["cat far", "cat near"], ["dog"], ["fox"]], "toy")
    res = retrieval.evaluate(pipe, data)
    # image ranks: img0 best own caption "cat near" rank 0; img1 "dog" rank 0; img2: "fox" (0.2+0.4)/n vs others.
    assert res.image_ranks.tolist() == [0, 0, 0]
    # text queries: "cat far" -> all images score 0: tie, image 0 first -> rank 0; "cat near" -> img0 rank 0;
    # "dog" -> img1 rank 0; "fox" -> img1 scores 1/|fox|, img2 (0.5+0.4)/(|fox||img2|): img1 wins -> rank 1.
    assert res.text_ranks.tolist() == [0, 0, 0, 1]
    m = res.metrics()
    assert m["image_to_text_R@1"] == 1.0
    assert m["text_to_image_R@1"] == pytest.approx(3 / 4)
    assert m["text_to_image_R@5"] == 1.0
    assert m["n_images"] == 3 and m["n_texts"] == 4
    assert res.positives.tolist() == [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert res.top_images(3, k=2) == [1, 2]
    assert res.top_texts(0, k=2) == [1, 0]  # "cat near", then three captions tied at 0: lowest index first


def _brute_force(img, txt, pos):
    image_ranks = []
    for i in range(len(img)):
        order = torch.sort(txt @ img[i], descending=True, stable=True).indices.tolist()
        image_ranks.append(min(order.index(t) for t in range(len(txt)) if pos[t, i]))
    text_ranks = []
    for t in range(len(txt)):
        order = torch.sort(img @ txt[t], descending=True, stable=True).indices.tolist()
        text_ranks.append(min(order.index(i) for i in range(len(img)) if pos[t, i]))
    return image_ranks, text_ranks


def test_rank_matches_equals_brute_force_sort_with_many_ties(monkeypatch):
    monkeypatch.setattr(retrieval, "QUERY_CHUNK", 7)  # exercise the chunking
    g = torch.Generator().manual_seed(0)
    img = torch.randint(-1, 2, (20, 3), generator=g).float()  # few distinct values: many exact ties
    txt = torch.randint(-1, 2, (45, 3), generator=g).float()
    pos = torch.rand(45, 20, generator=g) < 0.08  # some texts describe several images
    pos[torch.arange(20), torch.arange(20)] = True
    pos[torch.arange(20, 45), torch.randint(0, 20, (25,), generator=g)] = True
    image_ranks, text_ranks = retrieval.rank_matches(img, txt, pos)
    expected_i, expected_t = _brute_force(img, txt, pos)
    assert image_ranks.tolist() == expected_i
    assert text_ranks.tolist() == expected_t


def test_shared_caption_is_one_query_with_every_image_it_describes():
    pipe = toy_pipeline({"hand": vec(1, 0, 0, 0), "dark hand": vec(1, 1, 0, 0), "light hand": vec(1, -1, 0, 0)})
    images = [vec(1, 0.5, 0, 0), vec(1, -0.5, 0, 0)]
    data = RetrievalData(ListImages(images), [["hand", "dark hand"], ["hand", "light hand"]], "toy")
    res = retrieval.evaluate(pipe, data)
    assert res.texts == ["hand", "dark hand", "light hand"]
    assert res.positives.tolist() == [[True, True], [True, False], [False, True]]
    # "hand" ties between its two images: either is correct, so rank 0 (not 1 for the second copy).
    assert res.text_ranks.tolist() == [0, 0, 0]
    assert res.metrics()["n_texts"] == 3


def test_rank_matches_needs_a_caption_per_image():
    with pytest.raises(ValueError, match="at least one caption"):
        retrieval.rank_matches(torch.eye(3), torch.eye(3)[:2], torch.eye(3, dtype=torch.bool)[:2])


def _blobs(n_per_class, generator, spread=0.3):
    centers = torch.tensor([[3.0, 0, 0, 1], [0, 3.0, 0, 1], [0, 0, 3.0, 1]])
    x = centers.repeat_interleave(n_per_class, 0) + spread * torch.randn(3 * n_per_class, 4, generator=generator)
    return x, torch.arange(3).repeat_interleave(n_per_class)


def test_linear_probe_separable_features_reach_full_accuracy():
    g = torch.Generator().manual_seed(1)
    train_x, train_y = _blobs(30, g)
    test_x, test_y = _blobs(20, g)
    sweep = (1e-4, 1e-2, 1.0, 100.0)
    res = linear_probe.probe(train_x, train_y, test_x, test_y, num_classes=3, l2_sweep=sweep, max_iter=50)
    assert res.accuracy == 1.0
    assert res.n_train == 90 and res.n_test == 60
    assert set(res.val_accuracy) == set(sweep)
    # All strengths separate these blobs: the tie goes to the strongest regularization that still reaches it.
    best = max(res.val_accuracy.values())
    assert res.l2 == max(l2 for l2, a in res.val_accuracy.items() if a == best)


def test_linear_probe_fit_reaches_the_optimum_and_l2_shrinks_weights():
    g = torch.Generator().manual_seed(2)
    x, y = _blobs(20, g, spread=1.5)  # overlapping: a finite optimum
    weak = linear_probe.fit_logistic(x, y, 3, l2=1e-3, max_iter=500)
    strong = linear_probe.fit_logistic(x, y, 3, l2=1.0, max_iter=500)
    assert strong.weight.norm() < weak.weight.norm()
    w = weak.weight.clone().requires_grad_(True)
    b = weak.bias.clone().requires_grad_(True)
    loss = linear_probe.objective(linear_probe.LogisticModel(weak.mean, weak.std, w, b), x, y, 1e-3)
    grad_w, grad_b = torch.autograd.grad(loss, [w, b])
    assert grad_w.abs().max() < 1e-6 and grad_b.abs().max() < 1e-6


def test_linear_probe_chance_on_random_labels():
    g = torch.Generator().manual_seed(3)
    x = F.normalize(torch.randn(400, 8, generator=g), dim=1)
    y = torch.randint(0, 2, (400,), generator=g)
    res = linear_probe.probe(x[:300], y[:300], x[300:], y[300:], 2, l2_sweep=(1e-2, 1.0), max_iter=50)
    assert 0.3 < res.accuracy < 0.7
