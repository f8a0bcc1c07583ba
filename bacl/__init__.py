"""bacl: balanced classification for long-tailed object detection (BACL, IEEE TMM 2023)."""

__version__ = "0.1.0"
