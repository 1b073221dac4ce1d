"""The scoring core (:mod:`.core`: ``score(stages, items) -> BatchResult``, no file I/O) and its
stages: the emotion model and timeline windows (:mod:`.emotion`), transcripts
(:mod:`.transcripts`), features and trained heads (:mod:`.annotations`)."""
from .annotations import FeaturesStage, HeadsStage, feature_fields
from .core import Batch, BatchResult, Scored, Stage, StageFailure, base_row, fields_of, score, settings_of
from .emotion import EmotionStage, TimelineStage, prediction_columns
from .transcripts import AsrStage, transcribe_items

__all__ = ["AsrStage", "Batch", "BatchResult", "EmotionStage", "FeaturesStage", "HeadsStage", "Scored", "Stage",
           "StageFailure", "TimelineStage", "base_row", "feature_fields", "fields_of", "prediction_columns", "score",
           "settings_of", "transcribe_items"]
