"""``TrackerSettings``: the tracker's settings without a yacs config.

Field ``x`` is ``MODEL.VIS.TRACKER.X`` with the same defaults; ``TrackerSettings.from_config``
is the one place that reads ``MODEL.VIS.TRACKER`` (``OnlineTracker.from_config`` goes through it).
"""
import dataclasses
from typing import Mapping, Tuple, Union

from .frame_detections import TrackingInputError
from .online_tracker import OnlineTracker

__all__ = ["TrackerSettings", "tracker_settings"]


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    """Everything video inference needs to know about tracking, without a yacs config.

    Field ``x`` is ``MODEL.VIS.TRACKER.X`` (``max_dets_per_frame`` is ``MAX_DETS_PER_FRAME``),
    with the same defaults; see :class:`vis_d2.tracking.OnlineTracker` for their meaning.
    In a LazyConfig: ``tracker = L(TrackerSettings)(bitrack=True, label_voting=True)``.
    """

    match_coeffs: Tuple[float, float, float] = (1.0, 2.0, 10.0)
    distance_weight: float = 0.0
    score_thresh: float = 0.05
    max_age: int = 10
    momentum: float = 0.0
    label_voting: bool = False
    label_voting_weight: float = 0.0
    label_vote_score_weighted: bool = True
    bitrack: bool = False
    bitrack_iou_thresh: float = 0.5
    max_dets_per_frame: int = 20
    score_coverage_exp: float = 0.0
    track_nms_thresh: float = 0.0

    def __post_init__(self):
        # A list from a YAML/LazyConfig becomes a tuple, so the settings stay hashable.
        object.__setattr__(self, "match_coeffs", tuple(float(x) for x in self.match_coeffs))
        if not self.score_coverage_exp >= 0:
            raise TrackingInputError(
                f"TrackerSettings: score_coverage_exp (MODEL.VIS.TRACKER.SCORE_COVERAGE_EXP) "
                f"must be >= 0, got {self.score_coverage_exp}")
        if not 0.0 <= self.track_nms_thresh < 1.0:
            raise TrackingInputError(
                f"TrackerSettings: track_nms_thresh (MODEL.VIS.TRACKER.TRACK_NMS_THRESH) "
                f"must be in [0, 1), got {self.track_nms_thresh}")

    @classmethod
    def from_config(cls, cfg) -> "TrackerSettings":
        """The settings of a detectron2 config holding ``MODEL.VIS.TRACKER``."""
        try:
            t = cfg.MODEL.VIS.TRACKER
        except AttributeError:
            raise TrackingInputError(
                "TrackerSettings.from_config: the config has no MODEL.VIS.TRACKER; "
                "call vis_d2.config.add_vis_config(cfg) first") from None
        return cls(
            match_coeffs=tuple(t.MATCH_COEFFS),
            distance_weight=float(t.DISTANCE_WEIGHT),
            score_thresh=float(t.SCORE_THRESH),
            max_age=int(t.MAX_AGE),
            momentum=float(t.MOMENTUM),
            label_voting=bool(t.LABEL_VOTING),
            label_voting_weight=float(t.LABEL_VOTING_WEIGHT),
            label_vote_score_weighted=bool(t.LABEL_VOTE_SCORE_WEIGHTED),
            bitrack=bool(t.BITRACK),
            bitrack_iou_thresh=float(t.BITRACK_IOU_THRESH),
            max_dets_per_frame=int(t.MAX_DETS_PER_FRAME),
            score_coverage_exp=float(t.SCORE_COVERAGE_EXP),
            track_nms_thresh=float(t.TRACK_NMS_THRESH),
        )

    def build_tracker(self) -> OnlineTracker:
        """The :class:`OnlineTracker` these settings describe (as ``OnlineTracker.from_config``)."""
        return OnlineTracker(
            match_coeffs=self.match_coeffs,
            distance_weight=self.distance_weight,
            score_thresh=self.score_thresh,
            max_age=self.max_age,
            momentum=self.momentum,
            label_voting=self.label_voting,
            label_voting_weight=self.label_voting_weight,
            label_vote_score_weighted=self.label_vote_score_weighted,
            max_dets=self.max_dets_per_frame,
        )


def tracker_settings(cfg_or_settings: Union[object, TrackerSettings, Mapping]) -> TrackerSettings:
    """A :class:`TrackerSettings` from a detectron2 config (``MODEL.VIS.TRACKER``), a
    TrackerSettings (returned as is) or a mapping of its fields (dict / omegaconf DictConfig).

    Raises:
        TypeError: anything else; ValueError: a mapping with a key that is not a field.
    """
    if isinstance(cfg_or_settings, TrackerSettings):
        return cfg_or_settings
    if hasattr(cfg_or_settings, "MODEL"):  # a CfgNode is also a Mapping: check it first
        return TrackerSettings.from_config(cfg_or_settings)
    if isinstance(cfg_or_settings, Mapping):
        fields = {f.name for f in dataclasses.fields(TrackerSettings)}
        unknown = sorted(set(cfg_or_settings) - fields)
        if unknown:
            raise ValueError(f"tracker settings: unknown key(s) {unknown}; the keys are "
                             f"{sorted(fields)}")
        return TrackerSettings(**dict(cfg_or_settings))
    raise TypeError(
        f"expected a detectron2 config with MODEL.VIS.TRACKER, a TrackerSettings or a dict of "
        f"its fields, got {type(cfg_or_settings).__name__}")
