"""The staged pipeline: capture → flows → features → train / inspect → report, one folder per stage."""
