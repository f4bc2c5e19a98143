"""edge: the device-side keyword runtime. numpy, onnxruntime and sounddevice only; never torch."""

from edge.detect import Detection, DetectorSettings, Step
from edge.errors import EdgeError
from edge.multi import MultiRecognizer
from edge.runtime import Recognizer

__all__ = ["Detection", "DetectorSettings", "EdgeError", "MultiRecognizer", "Recognizer", "Step"]
