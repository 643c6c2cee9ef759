"""Controls: pose (mediapipe, OpenPose drawing), edges and pose templates for ControlNets."""
