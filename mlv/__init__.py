"""mlv: a data-versioning pipeline engine for machine-learning teams."""

__version__ = "0.1.0"
