"""Reading a Label Studio labelling config: which brush control paints crack masks on which
Image. Three shapes are served:

- `<BrushLabels>` over an `<Image>` (the classic segmentation template);
- `<Brush>` with a `<Labels>` over the same `<Image>` (newer templates): Label Studio stores a
  labelled stroke as one merged result (`from_name` the Labels control, type `brushlabels`)
  or as a `brush` result plus a `labels` result sharing the region id;
- `<Brush>` alone: every stroke is a crack.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree


class LabelConfigError(ValueError):
    """A config the backend cannot serve; str() says what to change."""


@dataclass(frozen=True)
class BrushTarget:
    """Predictions are written as `result_type` results of control `from_name` on image
    `to_name`, whose URL is the task's `data[image_key]`. `crack_label` is the label that
    marks cracks (None for a `<Brush>` without labels); `brush_controls` are the controls
    whose results carry brush RLEs."""

    from_name: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]
    crack_label: str | None
    result_type: str  # "brushlabels" or "brush"
    brush_controls: frozenset[str]


def choose_crack_label(labels: tuple[str, ...], wanted: str | None) -> str:
    """`wanted` (CRACKAL_LABEL) when given; else the only label; else the one label whose
    name says crack. Anything else is ambiguous and refused."""
    if wanted:
        if wanted not in labels:
            raise LabelConfigError(
                f"CRACKAL_LABEL={wanted!r} is not a label of the brush control {list(labels)}"
            )
        return wanted
    if len(labels) == 1:
        return labels[0]
    cracks = [lb for lb in labels if "crack" in lb.lower()]
    if len(cracks) == 1:
        return cracks[0]
    raise LabelConfigError(
        f"cannot tell which of the labels {list(labels)} marks cracks: set CRACKAL_LABEL"
    )


def parse_brush_target(config: str, crack_label: str | None = None) -> BrushTarget:
    """The first brush control whose toName is an Image object of the config."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise LabelConfigError(f"label config is not valid XML: {exc}") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter("Image") if el.get("name")}

    def image_key(to_name: str) -> str:
        value = images[to_name]
        if not value.startswith("$") or len(value) < 2:
            raise LabelConfigError(f"Image {to_name!r} value {value!r} is not a $data key")
        return value[1:]

    def label_values(control: ElementTree.Element) -> tuple[str, ...]:
        return tuple(lb.get("value") for lb in control.iter("Label") if lb.get("value"))

    for control in root.iter("BrushLabels"):
        to_name, name = control.get("toName", ""), control.get("name", "")
        if to_name in images and name:
            labels = label_values(control)
            if not labels:
                raise LabelConfigError(f"BrushLabels {name!r} has no Label values")
            chosen = choose_crack_label(labels, crack_label)
            return BrushTarget(
                name, to_name, image_key(to_name), labels, chosen, "brushlabels",
                frozenset({name}),
            )  # fmt: skip
    for control in root.iter("Brush"):
        to_name, name = control.get("toName", ""), control.get("name", "")
        if to_name not in images or not name:
            continue
        tagged = [lb for lb in root.iter("Labels") if to_name in lb.get("toName", "").split(",")]
        if not tagged:
            return BrushTarget(
                name, to_name, image_key(to_name), (), None, "brush", frozenset({name})
            )
        labels_control = tagged[0]
        labels = label_values(labels_control)
        if not labels:
            raise LabelConfigError(f"Labels {labels_control.get('name')!r} has no Label values")
        chosen = choose_crack_label(labels, crack_label)
        lname = labels_control.get("name", "")
        return BrushTarget(
            lname, to_name, image_key(to_name), labels, chosen, "brushlabels",
            frozenset({name, lname}),
        )  # fmt: skip
    raise LabelConfigError(
        "label config has no <BrushLabels> or <Brush> control painting an <Image>: crackal "
        'predicts crack masks and needs e.g. <Image name="image" value="$image"/> '
        '<BrushLabels name="tag" toName="image"><Label value="crack"/></BrushLabels>'
    )
