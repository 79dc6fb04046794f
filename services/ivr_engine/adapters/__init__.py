"""What the IVR engine talks to besides the bus and its tables."""
