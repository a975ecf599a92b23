"""TrainWatch node agent: samples a training node and posts the samples to a TrainWatch server."""

__version__ = "0.1.0"
