"""Category lists of the video instance segmentation benchmarks and the class maps between
taxonomies, written out in Python as facts.

Each category list is ``[{"id": json category id, "name": str}, ...]`` in json id order, i.e. the
order of the contiguous ids (contiguous id = position in the list). They are written out here so
that dataset metadata is known at registration time, before (or without) reading any json file.

A *taxonomy* names a category list ("ytvis_2019", "ytvis_2021", "ovis", "coco",
"openimages", "synthvis", "synthvis_images", "synthvis_msd"); a registered dataset says which one
it uses in its metadata (``MetadataCatalog.get(name).taxonomy``, set by ``builtin.py``). A
:class:`ClassMap` links the taxonomy of a video set (the model's classes) to the taxonomy of
another training source, class by class, by the source's own category ids and names: COCO category
ids, OpenImages MIDs. A source class that no map entry names is *auxiliary* (paper Sec. 3.2,
Algorithm 1). When a source is mixed into training (:mod:`vis_d2.data.mixing`) its own category
list is checked against the map (:meth:`ClassMap.check_source`): a mapped class the source lacks
is an error listing the closest names.

Where the facts come from:

* YouTube-VIS 2019 / 2021 lists: the official jsons' "categories" (also in
  ``shared/ytvis_categories.json`` of this project's workspace).
* COCO 2017 ids and names: the "categories" of ``instances_train2017.json``, as detectron2's
  ``detectron2/data/datasets/builtin_meta.py`` (``COCO_CATEGORIES``) and google/automl's
  ``efficientdet/g3doc/coco_ids.yaml`` list them; ``tests/test_msd_data.py`` checks the maps
  against detectron2's list.
* OpenImages MIDs and display names: the 600 boxable classes of ``class-descriptions-boxable.csv``
  (voxel51/fiftyone's ``fiftyone/utils/openimages.py`` reads that V5 file for V6 and V7), as
  tensorflow/models ``research/object_detection/data/oid_v4_label_map.pbtxt`` lists them; which
  class is a kind of which: the official ``bbox_labels_600_hierarchy.json``. OpenImages boxes
  carry the leaf-most class only (a brown bear is "Brown bear", not "Bear"), so a YouTube-VIS
  class maps to the OpenImages class of its name *and* that class's subclasses in the hierarchy,
  except subclasses that are a YouTube-VIS class of their own (Duck, Parrot, Shark, Panda) or
  another thing (Teddy bear, a toy under Bear).
"""
import difflib
from dataclasses import dataclass, field
from typing import Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

__all__ = [
    "YTVIS_2019_CATEGORIES",
    "YTVIS_2021_CATEGORIES",
    "YTVIS_2021_TO_COCO",
    "YTVIS_2019_TO_COCO",
    "YTVIS_2021_TO_OPENIMAGES",
    "YTVIS_2019_TO_OPENIMAGES",
    "OVIS_CATEGORIES",
    "ClassMap",
    "AUX",
    "register_class_map",
    "get_class_map",
    "class_maps",
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
# categories that name the same thing in both sets. The seed paper counts 22 shared categories
# (and "the remaining 58 classes from COCO"); its 22nd can only be "mouse", the one more name the
# two lists share: in YouTube-VIS it is the animal, in COCO (id 74) the computer mouse. 21 is
# right: "mouse" is NOT mapped, COCO's mouse is one of the 59 auxiliary COCO classes.
# COCO's "bird" also holds ducks and parrots, which YouTube-VIS 2021 names apart; it maps to
# "bird" (COCO has no finer label).
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

# YouTube-VIS 2019 -> COCO 2017: the 18 pairs of the 2021 map whose YouTube-VIS class 2019 has
# (2019 has no bird, car or flying_disc). Not mapped: "sedan" (COCO's "car" is every car, not one
# body style) and "mouse" (see above); COCO's car, bird and frisbee are auxiliary for 2019.
YTVIS_2019_TO_COCO = {
    k: v for k, v in YTVIS_2021_TO_COCO.items() if k not in ("bird", "car", "flying_disc")
}

# The OpenImages classes (MID, display name) of the YouTube-VIS classes shared with them; see the
# module docstring for the sources and the subclass rule.
_OI_BIRDS = (  # Bird and its subclasses in the hierarchy, Duck and Parrot apart
    ("/m/015p6", "Bird"), ("/m/012074", "Magpie"), ("/m/01dy8n", "Woodpecker"),
    ("/m/01f8m5", "Blue jay"), ("/m/05n4y", "Ostrich"), ("/m/05z6w", "Penguin"),
    ("/m/06j2d", "Raven"), ("/m/09b5t", "Chicken"), ("/m/09csl", "Eagle"), ("/m/09d5_", "Owl"),
    ("/m/0ccs93", "Canary"), ("/m/0dbvp", "Goose"), ("/m/0dftk", "Swan"), ("/m/0f6wt", "Falcon"),
    ("/m/0h23m", "Sparrow"), ("/m/0jly1", "Turkey"),
)
_OI_SHARED = {
    "airplane": (("/m/0cmf2", "Airplane"),),
    # Teddy bear (/m/0kmg4) is a toy; Panda is giant_panda.
    "bear": (("/m/01dws", "Bear"), ("/m/01dxs", "Brown bear"), ("/m/0633h", "Polar bear")),
    "boat": (("/m/019jd", "Boat"), ("/m/01btn", "Barge"), ("/m/02068x", "Gondola"),
             ("/m/0ph39", "Canoe")),
    "car": (("/m/0k4j", "Car"), ("/m/01lcw4", "Limousine"), ("/m/0h2r6", "Van")),
    "cat": (("/m/01yrx", "Cat"),),
    "cow": (("/m/01xq0k1", "Cattle"),),
    "deer": (("/m/09kx5", "Deer"),),
    "dog": (("/m/0bt9lr", "Dog"),),
    "duck": (("/m/09ddx", "Duck"),),
    # Harbor seals are true seals (Phocidae, the earless seals); Sea lion (/m/0gd36) is an eared
    # seal and is not mapped.
    "earless_seal": (("/m/02l8p9", "Harbor seal"),),
    "elephant": (("/m/0bwd_0j", "Elephant"),),
    "fish": (("/m/0ch_cf", "Fish"), ("/m/03fj2", "Goldfish"), ("/m/0m53l", "Rays and skates"),
             ("/m/0nybt", "Seahorse")),
    "flying_disc": (("/m/02wmf", "Flying disc"),),
    "fox": (("/m/0306r", "Fox"),),
    "frog": (("/m/09ld4", "Frog"),),
    "giant_panda": (("/m/03bj1", "Panda"),),
    "giraffe": (("/m/03bk1", "Giraffe"),),
    "horse": (("/m/03k3r", "Horse"),),
    "leopard": (("/m/0c29q", "Leopard"),),
    "lizard": (("/m/04m9y", "Lizard"),),
    "monkey": (("/m/08pbxl", "Monkey"),),
    "motorbike": (("/m/04_sv", "Motorcycle"),),
    # OpenImages' "Mouse" is the animal (a Mammal in the hierarchy); the computer mouse is
    # "Computer mouse" (/m/020lf).
    "mouse": (("/m/04rmv", "Mouse"),),
    "parrot": (("/m/0gv1x", "Parrot"),),
    "person": (("/m/01g317", "Person"), ("/m/04yx4", "Man"), ("/m/03bt1vf", "Woman"),
               ("/m/01bl7v", "Boy"), ("/m/05r655", "Girl")),
    "rabbit": (("/m/06mf6", "Rabbit"),),
    "shark": (("/m/0by6g", "Shark"),),
    "skateboard": (("/m/06_fw", "Skateboard"),),
    "snake": (("/m/078jl", "Snake"),),
    "snowboard": (("/m/06__v", "Snowboard"),),
    "squirrel": (("/m/071qp", "Squirrel"),),
    "surfboard": (("/m/019w40", "Surfboard"),),
    "tennis_racket": (("/m/0h8my_4", "Tennis racket"),),
    "tiger": (("/m/07dm6", "Tiger"),),
    "train": (("/m/07jdr", "Train"),),
    "truck": (("/m/07r04", "Truck"),),
    "turtle": (("/m/09dzg", "Turtle"), ("/m/011k07", "Tortoise"), ("/m/0120dh", "Sea turtle")),
    "whale": (("/m/084zz", "Whale"),),
    "zebra": (("/m/0898b", "Zebra"),),
}

# YouTube-VIS 2021 name -> OpenImages classes: all 40 classes have a counterpart.
YTVIS_2021_TO_OPENIMAGES = dict(_OI_SHARED, bird=_OI_BIRDS)

# YouTube-VIS 2019 name -> OpenImages classes: 38 of 40. 2019 names eagle, owl and hand apart and
# has no bird, car, flying_disc, squirrel or whale; OpenImages has no ape, and its "Car" is every
# car, not the sedan body style. The birds other than duck, parrot, eagle and owl are auxiliary.
YTVIS_2019_TO_OPENIMAGES = dict(
    {k: v for k, v in _OI_SHARED.items() if k not in ("car", "flying_disc", "squirrel", "whale")},
    eagle=(("/m/09csl", "Eagle"),),
    owl=(("/m/09d5_", "Owl"),),
    hand=(("/m/0k65p", "Human hand"),),
)

# The synthetic benchmark (vis_d2.data.synthetic): its image set uses the video set's names and
# ids; its second source ("synthvis_msd") names the video shapes otherwise and has ids of its own.
SYNTHVIS_TO_SYNTHVIS_IMAGES = {
    "circle": (1, "circle"), "square": (2, "square"), "triangle": (3, "triangle"),
    "star": (4, "star"),
}
SYNTHVIS_TO_SYNTHVIS_MSD = {
    "circle": (11, "disc"), "square": (13, "block"), "triangle": (15, "wedge"),
    "star": (17, "pentagram"),
}

# A source class that no map entry names: an auxiliary object (category id C, "aux": True).
AUX = -1


def _closest(name: str, names: Sequence[str], n: int = 5) -> List[str]:
    return difflib.get_close_matches(name, list(names), n=n, cutoff=0.5)


@dataclass(frozen=True)
class ClassMap:
    """
    Which classes of a source taxonomy are which classes of a video taxonomy.

    Attributes:
        target: the video set's taxonomy, e.g. "ytvis_2021" (the model's classes).
        source: the other source's taxonomy, e.g. "coco".
        pairs: target class name -> the source classes ``((source id, source name), ...)`` that
            are that class; source ids are the dataset's own category ids (COCO json ids,
            OpenImages MIDs), the keys of its ``thing_dataset_id_to_contiguous_id``. A value
            ``(id, name)`` is read as one pair.
        id_kind: what a source id is, for messages ("COCO category id", "OpenImages MID").
    """

    target: str
    source: str
    pairs: Mapping[str, Tuple[Tuple[Hashable, str], ...]]
    id_kind: str = "category id"
    _by_source_id: Dict[Hashable, Tuple[str, str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        pairs, by_id = {}, {}
        for target_name, value in self.pairs.items():
            entries = (value,) if len(value) == 2 and isinstance(value[1], str) else tuple(value)
            for sid, sname in entries:
                if sid in by_id:
                    raise ValueError(
                        f"class map {self.target} <- {self.source}: {self.id_kind} {sid!r} "
                        f"('{sname}') is mapped to both '{by_id[sid][0]}' and '{target_name}'")
                by_id[sid] = (target_name, sname)
            pairs[target_name] = entries
        object.__setattr__(self, "pairs", pairs)
        object.__setattr__(self, "_by_source_id", by_id)

    @property
    def source_ids(self) -> List[Hashable]:
        """The source ids the map names, in map order."""
        return list(self._by_source_id)

    def check_target(self, target_classes: Sequence[str], dataset: str) -> None:
        """
        Raise ValueError when a target class of the map is not one of ``target_classes`` (the
        ``thing_classes`` of the video set ``dataset``), listing the closest names.
        """
        missing = [t for t in self.pairs if t not in target_classes]
        if missing:
            t = missing[0]
            raise ValueError(
                f"class map {self.target} <- {self.source} maps onto class '{t}', which training "
                f"set '{dataset}' (taxonomy {self.target}) does not have; closest names: "
                f"{_closest(t, target_classes)}"
                + (f" ({len(missing)} such classes: {missing})" if len(missing) > 1 else "")
            )

    def check_source(self, thing_classes: Sequence[str], id_to_contiguous: Mapping,
                     dataset: str, where: str = "") -> None:
        """
        Raise ValueError when a source class of the map is not in the source's category list:
        its id is absent, or it names another class. The message names the dataset (and
        ``where``, e.g. its json or csv), the map entry and the closest names of the source.

        Args:
            thing_classes: the source's class names, in contiguous order.
            id_to_contiguous: the source's ``thing_dataset_id_to_contiguous_id``.
        """
        where = f" ({where})" if where else ""
        for sid, (target_name, sname) in self._by_source_id.items():
            idx = id_to_contiguous.get(sid)
            have = thing_classes[idx] if idx is not None and 0 <= idx < len(thing_classes) \
                else None
            if have == sname:
                continue
            found = (f"its {self.id_kind} {sid!r} is '{have}'" if have is not None
                     else f"it has no {self.id_kind} {sid!r}")
            raise ValueError(
                f"training set '{dataset}'{where}: the class map {self.target} <- {self.source} "
                f"maps '{target_name}' to {self.id_kind} {sid!r} '{sname}', but {found}; "
                f"closest names in its category list: {_closest(sname, thing_classes)}"
            )

    def contiguous(self, target_classes: Sequence[str], id_to_contiguous: Mapping
                   ) -> Dict[int, int]:
        """
        ``{source contiguous id: target contiguous id}`` for every mapped source class (after
        :meth:`check_source`); source classes absent from the result are auxiliary.
        """
        index = {c: i for i, c in enumerate(target_classes)}
        return {int(id_to_contiguous[sid]): index[t] for sid, (t, _) in self._by_source_id.items()}


_CLASS_MAPS: Dict[Tuple[str, str], ClassMap] = {}


def register_class_map(class_map: ClassMap, replace: bool = False) -> ClassMap:
    """
    Make ``class_map`` the map from its source taxonomy to its target taxonomy (a user's own
    sources register theirs here). Registering another map for the same pair is an error unless
    ``replace``.
    """
    key = (class_map.target, class_map.source)
    old = _CLASS_MAPS.get(key)
    if old is not None and old != class_map and not replace:
        raise ValueError(f"a class map {key[0]} <- {key[1]} is already registered; pass "
                         "replace=True to replace it")
    _CLASS_MAPS[key] = class_map
    return class_map


def get_class_map(target: Optional[str], source: Optional[str]) -> Optional[ClassMap]:
    """The registered map from taxonomy ``source`` to taxonomy ``target``, or None."""
    return _CLASS_MAPS.get((target, source))


def class_maps() -> List[ClassMap]:
    """Every registered class map."""
    return list(_CLASS_MAPS.values())


for _target, _source, _pairs, _kind in (
    ("ytvis_2021", "coco", YTVIS_2021_TO_COCO, "COCO category id"),
    ("ytvis_2019", "coco", YTVIS_2019_TO_COCO, "COCO category id"),
    ("ytvis_2021", "openimages", YTVIS_2021_TO_OPENIMAGES, "OpenImages MID"),
    ("ytvis_2019", "openimages", YTVIS_2019_TO_OPENIMAGES, "OpenImages MID"),
    ("synthvis", "synthvis_images", SYNTHVIS_TO_SYNTHVIS_IMAGES, "category id"),
    ("synthvis", "synthvis_msd", SYNTHVIS_TO_SYNTHVIS_MSD, "category id"),
):
    register_class_map(ClassMap(_target, _source, _pairs, _kind))


# OVIS (Occluded Video Instance Segmentation): 25 categories. "Vehical" is spelled as in the
# official annotation files; keep it so names match the json.
OVIS_CATEGORIES = _numbered([
    "Person", "Bird", "Cat", "Dog", "Horse", "Sheep", "Cow", "Elephant", "Bear", "Zebra",
    "Giraffe", "Poultry", "Giant_panda", "Lizard", "Parrot", "Monkey", "Rabbit", "Tiger",
    "Fish", "Turtle", "Bicycle", "Motorcycle", "Airplane", "Boat", "Vehical",
])
