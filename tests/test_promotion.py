"""Which adapted version serves a project: judged on its newest labels held out, with the
base validation set as a guard (a tolerance, not a veto)."""

import numpy as np
import pytest

from training.fit import Judged, Promotion, _decide, allowed_loss, held_out_count


def judged(
    val=0.70, parent_val=0.72, held=0.40, parent_held=0.30, images=1, guard=0.03, margin=0.0
):
    return Judged(
        val=val,
        parent_val=parent_val,
        held_out=held,
        parent_held_out=parent_held,
        held_out_images=images,
        guard=guard,
        margin=margin,
    )


def test_better_on_the_held_out_labels_within_the_guard_is_promoted():
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged())
    assert promoted and "held out, 0.4000 vs v1's 0.3000" in reason


def test_worse_on_the_held_out_labels_keeps_the_parent():
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged(held=0.25))
    assert not promoted and reason.startswith("kept v1") and "margin" not in reason


def test_a_loss_within_the_margin_on_one_image_is_promoted_and_said_so():
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged(held=0.26, margin=0.05))
    assert promoted and "lower by at most the margin 0.05" in reason
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged(held=0.24, margin=0.05))
    assert not promoted and "lower by more than the margin 0.05" in reason


def test_the_margin_shrinks_with_the_square_root_of_the_held_out_images():
    four = judged(held=0.27, images=4, margin=0.05)  # 0.03 lower; 0.05 / 2 = 0.025 allowed
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", four)
    assert not promoted and "margin 0.025" in reason
    assert _decide(Promotion.IF_BETTER, "v1", judged(held=0.28, images=4, margin=0.05))[0]


@pytest.mark.parametrize("held, parent_held", [(0.70, 0.80), (0.20, 0.30)])
def test_a_loss_of_exactly_the_margin_is_promoted(held, parent_held):
    assert _decide(
        Promotion.IF_BETTER, "v1", judged(held=held, parent_held=parent_held, margin=0.1)
    )[0]


def test_three_held_out_images_allow_the_rounded_margin_and_say_so():
    assert allowed_loss(0.1, 3) == 0.0577
    below = judged(held=0.30 - 0.05772, images=3, margin=0.1)
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", below)
    assert not promoted and "by more than the margin 0.0577" in reason
    assert _decide(Promotion.IF_BETTER, "v1", judged(held=0.30 - 0.0577, images=3, margin=0.1))[0]


@pytest.mark.parametrize("held, parent_held", [(float("nan"), 0.3), (0.4, float("nan"))])
def test_a_held_out_score_that_is_not_a_number_keeps_the_parent(held, parent_held):
    odd = judged(held=held, parent_held=parent_held, margin=0.1)
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", odd)
    assert not promoted and "not a number" in reason


@pytest.mark.parametrize("margin", [-0.1, float("nan"), float("inf")])
def test_a_margin_no_rule_can_use_is_refused(margin):
    with pytest.raises(ValueError, match="margin"):
        judged(margin=margin)


def test_the_margin_does_not_lift_the_validation_guard():
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged(val=0.60, held=0.29, margin=0.05))
    assert not promoted and "fell by more than 0.03" in reason


def test_a_collapse_on_the_base_validation_set_keeps_the_parent():
    promoted, reason = _decide(Promotion.IF_BETTER, "v1", judged(val=0.60))
    assert not promoted and "fell by more than 0.03" in reason


def test_with_nothing_held_out_the_margin_does_not_loosen_the_guard():
    alone = judged(val=0.68, held=None, parent_held=None, images=0, margin=0.1)
    assert not _decide(Promotion.IF_BETTER, "v1", alone)[0]  # 0.04 below, guard 0.03


def test_with_nothing_held_out_the_guard_decides():
    one = judged(held=None, parent_held=None, images=0)
    assert _decide(Promotion.IF_BETTER, "v1", one)[0]  # 0.70 is within 0.03 of 0.72
    assert "nothing held out" in _decide(Promotion.IF_BETTER, "v1", one)[1]
    assert not _decide(Promotion.IF_BETTER, "v1", judged(val=0.6, held=None, parent_held=None))[0]
    strict = judged(held=None, parent_held=None, guard=0.0)  # crackal train --from: no loss
    assert not _decide(Promotion.IF_BETTER, "v1", strict)[0]


@pytest.mark.parametrize("policy, expected", [("always", True), ("never", False)])
def test_always_and_never_ignore_the_scores(policy, expected):
    assert _decide(Promotion(policy), "v1", judged(held=0.0))[0] is expected


@pytest.mark.parametrize("labels, held", [(0, 0), (1, 0), (2, 1), (3, 1), (8, 2), (40, 10)])
def test_the_newest_quarter_is_held_out_once_there_are_two(labels, held):
    assert held_out_count(labels) == held


def test_fit_version_judges_with_the_margin_it_is_given(crack_data, tmp_path):
    """A held-out label drawn as the parent's own mask (its ODS there is 1): any change
    loses on it, so the margin alone decides whether the candidate serves."""
    import torch

    from tests.conftest import registry_with_an_untrained_model
    from training.data import Loaded, find_samples, load
    from training.fit import fit_version
    from training.predict import predict_probs
    from training.train import TrainConfig

    torch.manual_seed(0)  # the untrained decoder's weights: the same whatever ran before
    registry = registry_with_an_untrained_model(tmp_path)
    parent = registry.load("current")
    samples = find_samples(crack_data / "cfd")
    train_items, (held,) = load(samples[:2]), load(samples[2:3])
    probs = predict_probs(parent.model, held.image, parent.encoder)
    mask = probs > parent.threshold  # 0.5, on the grid: the parent's ODS there is 1
    assert 0 < mask.mean() < 1  # neither empty nor everything: a change must cost pixels
    judge = [Loaded(held.sample, held.image, mask)]
    config = TrainConfig.adapt(steps=2, batch_size=2, crop=64)
    outcomes = {
        margin: fit_version(registry, train_items, parent="current", config=config,
                            promote="if-better", progress=False, judge=judge, margin=margin)
        for margin in (0.0, 1.0)
    }  # fmt: skip
    assert outcomes[0.0].meta["metrics"]["held_out"]["parent_ods"] > 0.999
    assert all(o.meta["metrics"]["held_out"]["ods"] < 0.999 for o in outcomes.values())
    assert not outcomes[0.0].promoted and "kept" in outcomes[0.0].reason
    assert outcomes[1.0].promoted and "lower by at most the margin 1.0" in outcomes[1.0].reason
    with pytest.raises(ValueError, match="margin"):
        fit_version(registry, train_items, parent="current", judge=judge, margin=-1.0)


def test_fit_version_hands_back_the_counts_it_measured(crack_data, tmp_path):
    """The per-image counts a fit measured on the way (the new version's on the labelled
    and held-out images, the parent's on the held-out ones) are those of the registered
    weights: the threshold refit uses them instead of predicting the images again."""
    import torch

    from tests.conftest import registry_with_an_untrained_model
    from training.data import find_samples, load
    from training.evaluate import evaluate
    from training.fit import fit_version
    from training.metrics import COUNT_FIELDS
    from training.train import TrainConfig

    torch.manual_seed(0)
    registry = registry_with_an_untrained_model(tmp_path)
    parent = registry.resolve("current")
    items = load(find_samples(crack_data / "cfd")[:3])
    labels, judge = items[:2], items[2:]
    config = TrainConfig.adapt(steps=2, batch_size=2, crop=64)
    outcome = fit_version(registry, labels, parent="current", config=config, promote="if-better",
                          progress=False, judge=judge, margin=1.0,
                          also_evaluate={"labelled": labels})  # fmt: skip
    assert set(outcome.counts) == {parent, outcome.version}
    assert set(outcome.counts[parent]) == {i.sample.image for i in judge}
    assert set(outcome.counts[outcome.version]) == {i.sample.image for i in items}
    for version in (parent, outcome.version):
        loaded = registry.load(version)
        known = outcome.counts[version]
        measured = [i for i in items if i.sample.image in known]
        fresh = evaluate(loaded.model, loaded.encoder, measured)
        for path, row in fresh.per_image().items():
            for field in COUNT_FIELDS:
                assert np.array_equal(getattr(known[path], field), getattr(row, field))
    held = judge[0].sample.image  # the two versions' counts differ: neither stands for both
    assert not np.array_equal(
        outcome.counts[parent][held].fp, outcome.counts[outcome.version][held].fp
    )


def test_a_judge_image_the_parent_trained_on_does_not_promote(crack_data, tmp_path):
    """Held-out labels test a candidate against its parent only if the parent (and its
    ancestors) never trained on their images: the retrain picks them for the version
    serving when it reads the line; if the line serves another by the time training starts
    (a rollback meanwhile) and that one trained on them, the candidate is registered but
    not promoted. Other judges, and "always", are not affected."""
    import torch

    from tests.conftest import registry_with_an_untrained_model
    from training.data import find_samples, load
    from training.fit import fit_version
    from training.train import TrainConfig

    torch.manual_seed(0)
    registry = registry_with_an_untrained_model(tmp_path)
    items = load(find_samples(crack_data / "cfd")[:3])
    config = TrainConfig.adapt(steps=1, batch_size=2, crop=64)

    def fit(train, judge, promote="if-better"):
        return fit_version(registry, train, parent="current", config=config, promote=promote,
                           progress=False, judge=judge, margin=1.0)  # fmt: skip

    assert fit(items[:2], [items[2]], promote="always").promoted  # trains on items 0 and 1
    child = fit(items[:1], [items[2]])
    assert child.promoted and registry.resolve("current") == child.version
    seen = fit(items[:1], [items[1], items[2]])  # items[1] trained the parent's parent
    assert not seen.promoted and "1 of its 2 held-out label(s)" in seen.reason
    assert registry.resolve("current") == child.version
    assert fit(items[:1], [items[1]], promote="always").promoted  # "always" does not judge
