"""The charts out of the app for slides: each as PNG (2x: 1920x1080) and SVG with text a projector
shows (``figures.py``), and a clip of the training as GIF or MP4 (``clip.py``). Both draw through
plotly's own export, kaleido, which drives a Chromium: Debian's, at ``CHROMIUM`` (kaleido's browser
library reads ``BROWSER_PATH``), so nothing is downloaded."""
