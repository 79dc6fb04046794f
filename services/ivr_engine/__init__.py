"""ivr_engine: versioned menu trees, IVR sessions and satisfaction surveys (port 8003)."""
