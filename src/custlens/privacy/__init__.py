"""custlens.privacy: detect personal data, then mask, pseudonymize and encrypt it before storage."""

from custlens.privacy.recognizers import PiiDetection, detect_column, detect_value
from custlens.privacy.scan import scan_frame, scan_warehouse
from custlens.privacy.transforms import decrypt, encrypt, mask, normalize, protect_values, pseudonymize

__all__ = ["PiiDetection", "decrypt", "detect_column", "detect_value", "encrypt", "mask", "normalize",
           "protect_values", "pseudonymize", "scan_frame", "scan_warehouse"]
