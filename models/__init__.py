"""Detector implementations (scikit-learn API; torch only where needed)."""
