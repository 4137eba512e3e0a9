"""After the backend: smoothing over frames and RGB-D depth placement."""
