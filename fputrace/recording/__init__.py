"""Recording files: the kill-safe, self-describing event stream of SPEC 6 (see ``format``)."""
from .reader import Recording, open_recording
from .writer import RecordingWriter

__all__ = ["Recording", "RecordingWriter", "open_recording"]
