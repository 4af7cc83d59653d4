"""POST /predict and the health routes: admission (API key, draining, body deadline), the
prediction handler, and `classify`, the one path from a `PredictInput` to an answer that
the Open Inference Protocol shares.
"""

from service.predict.admission import admit, admit_headers, body_before
from service.predict.auth import check_api_key
from service.predict.classification import classify
from service.predict.routes import is_prediction_path, router

__all__ = [
    "admit",
    "admit_headers",
    "body_before",
    "check_api_key",
    "classify",
    "is_prediction_path",
    "router",
]
