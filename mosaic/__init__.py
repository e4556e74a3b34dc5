"""mosaic: which semantic attributes does a person re-identification model rely on?"""

__version__ = "0.1.0"
