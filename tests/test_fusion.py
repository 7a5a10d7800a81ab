"""trainer/models/fusion.py: the gate, its range, its gradient, and what it mixes."""

from __future__ import annotations

import pytest
import torch

from trainer.models import MODELS
from trainer.models.fusion import MIXES, Fusion, mixture_logit
from trainer.models.layers import check_hyperparameters

N_SCENES = 5
SPEC = {"n_dense": 6, "id_fields": ["user_id", "item_id"], "id_cardinalities": [50, 40],
        "n_scenes": N_SCENES,
        "blocks": {"text_user": 9, "text_item": 9, "fb_user": 17, "fb_item": 17}}


def batch(n: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {"ids": torch.stack([torch.randint(0, 50, (n,), generator=g),
                               torch.randint(0, 40, (n,), generator=g)], dim=1),
           "dense": torch.randn(n, 6, generator=g),
           "scene": torch.randint(0, N_SCENES, (n,), generator=g),
           "label": torch.randint(0, 2, (n,), generator=g).float(),
           "hist_user": torch.randint(0, 3, (n,), generator=g),
           "hist_item": torch.randint(0, 3, (n,), generator=g)}
    out.update({name: torch.randn(n, w, generator=g) for name, w in SPEC["blocks"].items()})
    return out


def own_logit(logits, b):
    return logits.gather(1, b["scene"].view(-1, 1)).squeeze(1)


def test_registry_builds_fusion_as_a_text_model():
    cls = MODELS["fusion"]
    assert cls is Fusion and cls.uses_text


def test_alpha_in_open_unit_interval_and_gets_gradient():
    torch.manual_seed(0)
    model = Fusion(SPEC)
    b = batch()
    logits, extras = model(b)
    alpha = extras["alpha"]
    assert logits.shape == (64, N_SCENES) and alpha.shape == (64,)
    assert ((alpha > 0) & (alpha < 1)).all()
    assert alpha.requires_grad
    loss = torch.nn.functional.binary_cross_entropy_with_logits(own_logit(logits, b), b["label"])
    loss.backward()
    # the loss reaches every gate parameter through alpha
    for p in model.gate.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert any(p.grad.abs().sum() > 0 for p in model.content.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.backbone.parameters())


def test_gate_mixes_backbone_and_content_logits():
    torch.manual_seed(0)
    model = Fusion(SPEC).eval()
    b = batch()
    last = model.gate[-1]
    with torch.no_grad():
        content = torch.cat([b[k] for k in model.vector_blocks]
                            + [b[u] * b[i] for u, i in model.pairs]
                            + [torch.nn.functional.cosine_similarity(b[u][:, :-1], b[i][:, :-1]).unsqueeze(1)
                               for u, i in model.pairs]
                            + [model.cold[k][b[key]] for k, key in enumerate(("hist_user", "hist_item"))], dim=1)
        torch.testing.assert_close(model.content_input(b), content)
        content_logit = model.content.shared(content).squeeze(-1)
        backbone_logit = model.backbone(b)
        last.bias.fill_(30.0)   # alpha -> 1: the content tower alone
        last.weight.zero_()
        torch.testing.assert_close(model(b)[0], content_logit, atol=1e-5, rtol=1e-5)
        last.bias.fill_(-30.0)  # alpha -> 0: the MMoE backbone alone
        torch.testing.assert_close(model(b)[0], backbone_logit, atol=1e-5, rtol=1e-5)
        last.bias.zero_()       # alpha = 1/2: the average
        torch.testing.assert_close(model(b)[0], (content_logit + backbone_logit) / 2)


def test_residual_mix_adds_alpha_times_content_to_the_backbone():
    torch.manual_seed(0)
    model = Fusion(SPEC, mix="residual").eval()
    b = batch()
    with torch.no_grad():
        logits, _ = model(b)
        content_logit = model.content.shared(model.content_input(b)).squeeze(-1)
        alpha = torch.sigmoid(model.gate(model.content_input(b)))
        torch.testing.assert_close(logits, model.backbone(b) + alpha * content_logit)
    with pytest.raises(ValueError, match="mix must be one of"):
        Fusion(SPEC, mix="average")


def test_probability_mix_is_a_mixture_of_the_two_click_probabilities():
    torch.manual_seed(0)
    model = Fusion(SPEC, mix="probability").eval()
    b = batch()
    last = model.gate[-1]
    with torch.no_grad():
        content = model.content_input(b)
        content_logit = model.content.shared(content).squeeze(-1).double()
        backbone_logit = model.backbone(b).double()
        alpha = torch.sigmoid(model.gate(content)).double()
        p = (1 - alpha) * torch.sigmoid(backbone_logit) + alpha * torch.sigmoid(content_logit)
        logits, extras = model(b)
        torch.testing.assert_close(logits.double(), torch.logit(p), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(extras["alpha"].double(), alpha.gather(1, b["scene"].view(-1, 1)).squeeze(1))
        last.weight.zero_()
        last.bias.fill_(30.0)   # alpha -> 1: the content tower alone
        torch.testing.assert_close(model(b)[0].double(), content_logit, atol=1e-4, rtol=1e-4)
        last.bias.fill_(-30.0)  # alpha -> 0: the MMoE backbone alone
        torch.testing.assert_close(model(b)[0].double(), backbone_logit, atol=1e-4, rtol=1e-4)
        last.bias.zero_()
        model.content_on.fill_(0.0)  # the content guard: the backbone exactly, alpha 0
        logits, extras = model(b)
        torch.testing.assert_close(logits, model.backbone(b), atol=0, rtol=0)
        assert (extras["alpha"] == 0).all()


@pytest.mark.parametrize("mix", MIXES)
def test_forward_mixes_the_sides_it_reports(mix):
    """`sides` (what bench/fusion_sides.py scores alone) is what `forward` mixes, in every mix."""
    torch.manual_seed(0)
    model = Fusion(SPEC, mix=mix).eval()
    b = batch()
    with torch.no_grad():
        model.cold_bias.normal_()  # alpha varies from row to row
        backbone, content, gate = (x.double() for x in model.sides(b))
        alpha = torch.sigmoid(gate)
        want = {"convex": (1 - alpha) * backbone + alpha * content,
                "residual": backbone + alpha * content,
                "probability": torch.logit((1 - alpha) * torch.sigmoid(backbone) + alpha * torch.sigmoid(content))}[mix]
        torch.testing.assert_close(model(b)[0].double(), want, atol=1e-5, rtol=1e-5)


def test_mixture_logit_stays_finite_where_a_probability_would_round_to_0_or_1():
    backbone = torch.tensor([-200.0, 200.0, -200.0, 3.0])
    content = torch.tensor([-210.0, 210.0, 200.0, -1.0])
    gate = torch.tensor([0.0, 0.0, -200.0, 1.0])
    got = mixture_logit(backbone, content, gate).double()
    # p = (e^-200 + e^-210) / 2: log p - log(1 - p) = -200 + log((1 + e^-10) / 2)
    half = torch.log(torch.tensor(0.5, dtype=torch.float64))
    want = torch.stack([-200 + torch.log1p(torch.exp(torch.tensor(-10.0, dtype=torch.float64))) + half,
                        200 - torch.log1p(torch.exp(torch.tensor(-10.0, dtype=torch.float64))) - half,
                        # alpha = e^-200: the content's p of about 1 adds e^-200 to the backbone's e^-200
                        -200 + torch.log(torch.tensor(2.0, dtype=torch.float64)),
                        torch.logit(torch.sigmoid(torch.tensor(-1.0)).double() * torch.sigmoid(torch.tensor(1.0)).double()
                                    + torch.sigmoid(torch.tensor(3.0)).double() * torch.sigmoid(torch.tensor(-1.0)).double())])
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-5)


def test_gate_reads_the_cold_buckets_directly():
    """The per-bucket bias moves alpha of the rows of that bucket, and of no other rows."""
    torch.manual_seed(0)
    model = Fusion(SPEC).eval()
    b = batch(n=256)
    with torch.no_grad():
        before = model(b)[1]["alpha"]
        model.cold_bias[:, 0].fill_(3.0)  # every row whose item has no history
        after = model(b)[1]["alpha"]
    new_item = b["hist_item"] == 0
    assert (after[new_item] > before[new_item] + 0.2).all()
    torch.testing.assert_close(after[~new_item], before[~new_item])
    assert "cold_bias" in dict(model.named_parameters())


def test_learns_from_text_blocks():
    """Labels depend on the item text only; ids and dense features are noise."""
    torch.manual_seed(0)
    model = Fusion(SPEC, expert_dims=[16], tower_dims=[8], content_dims=[16])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)

    def labelled(seed):
        b = batch(n=256, seed=seed)
        b["label"] = (b["text_item"][:, 0] + b["text_item"][:, 1] > 0).float()
        return b

    for step in range(80):
        b = labelled(step + 1)
        logits, _ = model(b)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(own_logit(logits, b), b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = labelled(1000)
    model.eval()  # no content dropout when scoring
    with torch.no_grad():
        logits, extras = model(test)
    accuracy = ((own_logit(logits, test) > 0).float() == test["label"]).float().mean().item()
    assert accuracy > 0.85
    assert ((extras["alpha"] > 0) & (extras["alpha"] < 1)).all()


def test_needs_text_blocks():
    with pytest.raises(ValueError, match="text blocks .* or tokens"):
        Fusion({**SPEC, "blocks": {}})


def test_unknown_hyperparameter_is_an_error():
    with pytest.raises(TypeError, match="n_expert"):  # the knobs are the signature's
        Fusion(SPEC, n_expert=3)
    with pytest.raises(ValueError, match="no hyperparameter n_expert"):  # what `fit --hp` says
        check_hyperparameters(Fusion, "fusion", {"n_expert": 3})
