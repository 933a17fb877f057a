"""YTVISEvaluator round trip: a temporary dataset registered in DatasetCatalog/MetadataCatalog,
reset() / process() / evaluate(), results.json / results.zip and the metrics."""
import json
import logging
import os
import zipfile

import numpy as np
import pycocotools.mask as mask_util
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import DatasetEvaluator

from vis_d2.evaluation import YTVISEvaluator, YTVISFormatError

H, W = 16, 20
# json category ids 3 and 7 <-> contiguous 0 and 1: the evaluator must map them back.
CATEGORIES = [{"id": 3, "name": "cat"}, {"id": 7, "name": "dog"}]


def rect(y0, y1, x0, x1, as_bytes=False):
    m = np.zeros((H, W), np.uint8)
    m[y0:y1, x0:x1] = 1
    rle = mask_util.encode(np.asfortranarray(m))
    if not as_bytes:
        rle["counts"] = rle["counts"].decode("ascii")
    return rle


DOG = [rect(0, 6, 0, 6), rect(1, 7, 0, 6), rect(2, 8, 1, 7)]   # video 1, 3 frames
CAT = [rect(8, 16, 10, 20), None]                               # video 2, 2 frames


def gt_dataset(with_annotations=True):
    data = {
        "videos": [
            {"id": 1, "height": H, "width": W, "length": 3,
             "file_names": [f"a/{i}.jpg" for i in range(3)]},
            {"id": 2, "height": H, "width": W, "length": 2,
             "file_names": [f"b/{i}.jpg" for i in range(2)]},
        ],
        "categories": CATEGORIES,
    }
    if with_annotations:
        data["annotations"] = [
            {"id": 1, "video_id": 1, "category_id": 7, "iscrowd": 0, "segmentations": DOG,
             "areas": [36, 36, 36]},
            {"id": 2, "video_id": 2, "category_id": 3, "iscrowd": 0, "segmentations": CAT,
             "areas": [80, None]},
        ]
    return data


@pytest.fixture
def dataset(tmp_path):
    """Registers 'ytvis_eval_test' (and 'ytvis_eval_test_nogt'); removes them afterwards."""
    names = []

    def register(has_gt=True):
        name = "ytvis_eval_test" + ("" if has_gt else "_nogt")
        json_file = tmp_path / f"{name}.json"
        json_file.write_text(json.dumps(gt_dataset(with_annotations=has_gt)))
        records = [{"video_id": 1, "length": 3, "height": H, "width": W, "has_gt": has_gt},
                   {"video_id": 2, "length": 2, "height": H, "width": W, "has_gt": has_gt}]
        DatasetCatalog.register(name, lambda: records)
        MetadataCatalog.get(name).set(
            thing_classes=["cat", "dog"], thing_dataset_id_to_contiguous_id={3: 0, 7: 1},
            json_file=str(json_file), image_root=str(tmp_path), evaluator_type="ytvis",
            has_gt=has_gt)
        names.append(name)
        return name

    yield register
    for name in names:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def model_outputs():
    """Per video, the tracker's predictions (contiguous ids; one RLE with bytes counts)."""
    dog = {"video_id": 1, "category_id": 1, "score": np.float32(0.875),
           "segmentations": [DOG[0], rect(1, 7, 0, 6, as_bytes=True), DOG[2]]}
    cat = {"video_id": 2, "category_id": 0, "score": 0.5, "segmentations": list(CAT)}
    false_dog = {"video_id": 2, "category_id": 1, "score": 0.95,
                 "segmentations": [rect(0, 4, 0, 4), rect(0, 4, 0, 4)]}
    return [[dog], [false_dog, cat]]


def test_round_trip(dataset, tmp_path):
    name = dataset(has_gt=True)
    out_dir = tmp_path / "out"
    evaluator = YTVISEvaluator(name, output_dir=str(out_dir))
    assert isinstance(evaluator, DatasetEvaluator)
    videos = DatasetCatalog.get(name)

    # A first round whose predictions must not leak into the second.
    evaluator.reset()
    evaluator.process(videos[:1], [[]])
    evaluator.reset()
    outputs = model_outputs()
    for video, preds in zip(videos, outputs):
        evaluator.process([video], [preds])
    results = evaluator.evaluate()

    # dog: the false dog of video 2 (0.95) comes before the true one (0.875): precision 1/2
    # at recall 1 -> AP 0.5 at every threshold; cat: AP 1. Mean over categories: 0.75.
    # Every object is found (recall 1), also with one prediction per video and category.
    segm = results["segm"]
    assert list(segm) == ["AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10"]
    assert segm["AP"] == pytest.approx(0.75, abs=1e-9)  # fractions, not percent
    assert segm["AP50"] == pytest.approx(0.75, abs=1e-9)
    assert segm["APs"] == pytest.approx(0.75, abs=1e-9)
    assert segm["APm"] == -1 and segm["APl"] == -1
    assert segm["AR1"] == pytest.approx(1.0) and segm["AR10"] == pytest.approx(1.0)

    written = json.loads((out_dir / "results.json").read_text())
    assert len(written) == 3
    # json category ids, str counts, video by video and best first.
    assert [(p["video_id"], p["category_id"], p["score"]) for p in written] == [
        (1, 7, 0.875), (2, 7, 0.95), (2, 3, 0.5)]
    assert written[0]["segmentations"][1] == {"size": [H, W], "counts": DOG[1]["counts"]}
    assert written[2]["segmentations"][1] is None
    with zipfile.ZipFile(out_dir / "results.zip") as zf:
        assert zf.namelist() == ["results.json"]
        assert zf.read("results.json") == (out_dir / "results.json").read_bytes()
    assert sorted(os.listdir(out_dir)) == ["results.json", "results.zip"]  # no temp files left
    # The model's outputs are left untouched.
    assert outputs[0][0]["category_id"] == 1
    assert isinstance(outputs[0][0]["segmentations"][1]["counts"], bytes)


def test_split_without_ground_truth_only_writes(dataset, tmp_path, caplog):
    name = dataset(has_gt=False)
    evaluator = YTVISEvaluator(name, output_dir=str(tmp_path / "test_out"), distributed=False)
    evaluator.reset()
    evaluator.process(DatasetCatalog.get(name), model_outputs())
    with caplog.at_level(logging.INFO, logger="vis_d2.evaluation.evaluator"):
        assert evaluator.evaluate() == {}
    assert "has no ground truth" in caplog.text
    written = json.loads((tmp_path / "test_out" / "results.json").read_text())
    assert sorted(p["category_id"] for p in written) == [3, 7, 7]
    with zipfile.ZipFile(tmp_path / "test_out" / "results.zip") as zf:
        assert json.loads(zf.read("results.json")) == written


def test_no_output_dir_still_scores(dataset):
    name = dataset(has_gt=True)
    evaluator = YTVISEvaluator(name)
    evaluator.reset()
    evaluator.process(DatasetCatalog.get(name), [[], []])
    # Nothing predicted: AP 0 (there is ground truth), not an error.
    assert evaluator.evaluate()["segm"]["AP"] == 0.0


def test_bad_predictions_are_reported(dataset):
    name = dataset(has_gt=True)
    evaluator = YTVISEvaluator(name)
    videos = DatasetCatalog.get(name)
    short = {"video_id": 1, "category_id": 1, "score": 0.5, "segmentations": DOG[:2]}
    with pytest.raises(YTVISFormatError, match=r"video 1, prediction #0.*2 entries.*3 frames"):
        evaluator.process(videos[:1], [[short]])
    unknown = {"video_id": 2, "category_id": 2, "score": 0.5, "segmentations": list(CAT)}
    with pytest.raises(YTVISFormatError, match=r"video 2, prediction #0: category_id 2 is not"):
        evaluator.process(videos[1:], [[unknown]])
    wrong_video = {"video_id": 1, "category_id": 0, "score": 0.5, "segmentations": list(CAT)}
    with pytest.raises(YTVISFormatError, match="has video_id 1"):
        evaluator.process(videos[1:], [[wrong_video]])
    with pytest.raises(ValueError, match="2 inputs but 1 outputs"):
        evaluator.process(videos, [[]])


def test_unknown_dataset_metadata():
    with pytest.raises(KeyError, match="thing_dataset_id_to_contiguous_id"):
        YTVISEvaluator("ytvis_eval_test_not_registered")
    MetadataCatalog.remove("ytvis_eval_test_not_registered")


def test_gathers_predictions_of_all_processes(dataset, tmp_path, monkeypatch):
    """Two processes, simulated: each saw one video; the main one scores both."""
    from vis_d2.evaluation import evaluator as evaluator_module

    name = dataset(has_gt=True)
    videos = DatasetCatalog.get(name)
    outputs = model_outputs()
    other = YTVISEvaluator(name, distributed=False)
    other.process(videos[1:], outputs[1:])
    calls = []
    monkeypatch.setattr(evaluator_module.comm, "synchronize", lambda: calls.append("sync"))
    monkeypatch.setattr(evaluator_module.comm, "gather",
                        lambda data, dst=0: [data, other._predictions])

    monkeypatch.setattr(evaluator_module.comm, "is_main_process", lambda: False)
    worker = YTVISEvaluator(name, output_dir=str(tmp_path / "w"))
    worker.process(videos[:1], outputs[:1])
    assert worker.evaluate() == {} and not (tmp_path / "w").exists()

    monkeypatch.setattr(evaluator_module.comm, "is_main_process", lambda: True)
    main = YTVISEvaluator(name, output_dir=str(tmp_path / "m"))
    main.process(videos[:1], outputs[:1])
    assert main.evaluate()["segm"]["AP"] == pytest.approx(0.75, abs=1e-9)
    assert calls == ["sync", "sync"]
    assert len(json.loads((tmp_path / "m" / "results.json").read_text())) == 3
