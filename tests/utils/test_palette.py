"""One palette for every class-coloured view (oxnet.utils.palette)."""

from oxnet.data.visualize import class_colors
from oxnet.utils.palette import CLASS_PALETTE, class_palette, class_rgb


def test_distinct_colours_for_any_number_of_classes_and_the_same_everywhere():
    nine = class_palette(9)
    assert len(set(nine)) == 9 and nine[:3] == ["#E69F00", "#56B4E9", "#009E73"]  # Okabe & Ito first
    many = class_palette(40)
    assert len(set(many)) == 40 and many[:16] == list(CLASS_PALETTE) and many[:9] == nine
    assert class_rgb(2)[0] == (0xE6 / 255, 0x9F / 255, 0.0)
    assert class_colors(9) == class_rgb(9)  # the Visualizer's colours are the palette's
