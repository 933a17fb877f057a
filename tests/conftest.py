"""Fixtures shared by the test modules."""
import copy

import pytest

# vis_d2.data first: it imports detectron2 without the FutureWarnings detectron2's import prints.
from vis_d2.data.synthetic import SynthConfig, generate  # isort: skip

from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """A DETECTRON2_DATASETS root holding a tiny synthvis (3 train / 2 val videos of 4-6 frames)."""
    root = tmp_path_factory.mktemp("datasets")
    generate(str(root / "synthvis"), train_videos=3, val_videos=2, seed=5, image_set_size=0,
             config=SynthConfig(length_range=(4, 6)))
    return root


@pytest.fixture
def restore_catalogs():
    """Snapshot and restore the catalogs, since register_all_ytvis(tmp root) replaces entries."""
    # Copies of the Metadata objects: a registration may set attributes on an existing one.
    saved_d, saved_m = dict(DatasetCatalog), {k: copy.copy(v) for k, v in MetadataCatalog.items()}
    yield
    DatasetCatalog.clear()
    DatasetCatalog.update(saved_d)
    MetadataCatalog.clear()
    MetadataCatalog.update(saved_m)
