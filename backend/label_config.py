"""Reading a Label Studio labelling config: which BrushLabels control paints which Image."""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree import ElementTree


class LabelConfigError(ValueError):
    """A config the backend cannot serve (not XML, or no BrushLabels over an Image)."""


@dataclass(frozen=True)
class BrushTarget:
    """`from_name` paints masks labelled `labels` on the image object `to_name`, whose URL is
    the task's `data[image_key]`."""

    from_name: str
    to_name: str
    image_key: str
    labels: tuple[str, ...]

    @property
    def crack_label(self) -> str:
        """The label predictions use: one whose name says crack, else the first."""
        for label in self.labels:
            if "crack" in label.lower():
                return label
        return self.labels[0]


def parse_brush_target(config: str) -> BrushTarget:
    """The first BrushLabels control whose toName is an Image object of the config."""
    try:
        root = ElementTree.fromstring(config)
    except ElementTree.ParseError as exc:
        raise LabelConfigError(f"label config is not valid XML: {exc}") from None
    images = {el.get("name"): el.get("value", "") for el in root.iter("Image") if el.get("name")}
    for control in root.iter("BrushLabels"):
        to_name = control.get("toName", "")
        from_name = control.get("name", "")
        if to_name in images and from_name:
            value = images[to_name]
            if not value.startswith("$") or len(value) < 2:
                raise LabelConfigError(f"Image {to_name!r} value {value!r} is not a $data key")
            labels = tuple(lb.get("value") for lb in control.iter("Label") if lb.get("value"))
            if not labels:
                raise LabelConfigError(f"BrushLabels {from_name!r} has no Label values")
            return BrushTarget(from_name, to_name, value[1:], labels)
    raise LabelConfigError(
        "label config has no <BrushLabels> control painting an <Image>: crackal predicts "
        'crack masks and needs e.g. <Image name="image" value="$image"/> '
        '<BrushLabels name="tag" toName="image"><Label value="crack"/></BrushLabels>'
    )
