"""Prediction: a :class:`Predictor` for checkpoints, pretrained names and exported models
(:mod:`.predictor`), run over images, folders, glob patterns and videos with what it writes
(:mod:`.run`, :mod:`.sources`, :mod:`.video`, :mod:`.save`), and every deployment format measured side
by side (:mod:`.benchmark`)."""

from fcos.data.images import IMAGE_SUFFIXES, read_image
from fcos.predict.predictor import DetectorAdapter, ImageLike, Predictor, to_tensor
from fcos.predict.run import PredictInputError, list_images, predict_source

__all__ = [
    "IMAGE_SUFFIXES",
    "DetectorAdapter",
    "ImageLike",
    "PredictInputError",
    "Predictor",
    "list_images",
    "predict_source",
    "read_image",
    "to_tensor",
]
