"""edge: the device-side keyword runtime. numpy, onnxruntime and sounddevice only; never torch."""

from edge.detect import Detection, DetectorSettings, Step
from edge.errors import EdgeError
from edge.runtime import MultiRecognizer, Recognizer

__all__ = ["Detection", "DetectorSettings", "EdgeError", "MultiRecognizer", "Recognizer", "Step"]
