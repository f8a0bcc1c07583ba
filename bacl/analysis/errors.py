"""Errors of the analysis: inputs that cannot be analysed, each message naming the file."""

from __future__ import annotations

from ..errors import BaclError


class AnalysisInputError(BaclError, ValueError):
    """A metrics, detections or checkpoint file whose content the analysis cannot use."""


class MissingStatisticsError(BaclError, KeyError):
    """A checkpoint without the statistics asked for (FCBL's or FHM's): the run trained
    without them."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0]) if self.args else ""
