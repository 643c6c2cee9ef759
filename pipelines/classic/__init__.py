"""The embedded classic engine: OpenCV + mediapipe, no downloaded weights."""
