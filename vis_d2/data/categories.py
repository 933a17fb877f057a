"""Category lists of the video instance segmentation benchmarks, written out in Python.

Each list is ``[{"id": json category id, "name": str}, ...]`` in json id order, i.e. the order
of the contiguous ids (contiguous id = position in the list). They are written out here so that
dataset metadata is known at registration time, before (or without) reading any json file.
"""

__all__ = [
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "YTVIS_2021_TO_COCO",
    "OVIS_CATEGORIES",
]


def _numbered(names):
    """``[{"id": 1, "name": names[0]}, {"id": 2, ...}, ...]``: the benchmarks number their
    categories 1..N in list order."""
    return [{"id": i, "name": name} for i, name in enumerate(names, start=1)]


# YouTube-VIS 2019: 40 categories.
YTVIS_2019_CATEGORIES = _numbered([
    "person", "giant_panda", "lizard", "parrot", "skateboard", "sedan", "ape", "dog", "snake",
    "monkey", "hand", "rabbit", "duck", "cat", "cow", "fish", "train", "horse", "turtle",
    "bear", "motorbike", "giraffe", "leopard", "fox", "deer", "owl", "surfboard", "airplane",
    "truck", "zebra", "tiger", "elephant", "snowboard", "boat", "shark", "mouse", "frog",
    "eagle", "earless_seal", "tennis_racket",
])

# YouTube-VIS 2021: 40 categories, numbered alphabetically. Against 2019 it drops ape, eagle,
# hand, owl, sedan and adds bird, car, flying_disc, squirrel, whale, so 2019 and 2021 ids differ.
# YouTube-VIS 2022 uses the 2021 categories.
YTVIS_2021_CATEGORIES = _numbered([
    "airplane", "bear", "bird", "boat", "car", "cat", "cow", "deer", "dog", "duck",
    "earless_seal", "elephant", "fish", "flying_disc", "fox", "frog", "giant_panda", "giraffe",
    "horse", "leopard", "lizard", "monkey", "motorbike", "mouse", "parrot", "person", "rabbit",
    "shark", "skateboard", "snake", "snowboard", "squirrel", "surfboard", "tennis_racket",
    "tiger", "train", "truck", "turtle", "whale", "zebra",
])

# YouTube-VIS 2021 category name -> (COCO 2017 category id, COCO category name), for the 21
# categories that name the same thing in both sets (used to add COCO images of these categories
# to video training, "multi-source data"). The seed paper counts 22 shared categories; the 22nd
# is most likely "mouse", which is NOT mapped on purpose: in YouTube-VIS it is the animal, in
# COCO (id 74) it is the computer mouse, so the names clash but the things differ.
YTVIS_2021_TO_COCO = {
    "airplane": (5, "airplane"),
    "bear": (23, "bear"),
    "bird": (16, "bird"),
    "boat": (9, "boat"),
    "car": (3, "car"),
    "cat": (17, "cat"),
    "cow": (21, "cow"),
    "dog": (18, "dog"),
    "elephant": (22, "elephant"),
    "flying_disc": (34, "frisbee"),
    "giraffe": (25, "giraffe"),
    "horse": (19, "horse"),
    "motorbike": (4, "motorcycle"),
    "person": (1, "person"),
    "skateboard": (41, "skateboard"),
    "snowboard": (36, "snowboard"),
    "surfboard": (42, "surfboard"),
    "tennis_racket": (43, "tennis racket"),
    "train": (7, "train"),
    "truck": (8, "truck"),
    "zebra": (24, "zebra"),
}

# OVIS (Occluded Video Instance Segmentation): 25 categories. "Vehical" is spelled as in the
# official annotation files; keep it so names match the json.
OVIS_CATEGORIES = _numbered([
    "Person", "Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra",
    "Giraffe", "Poultry", "Giant_panda", "Lizard", "Parrot", "Monkey", "Rabbit", "Tiger",
    "Fish", "Turtle", "Bicycle", "Motorcycle", "Airplane", "Boat", "Vehical",
])
