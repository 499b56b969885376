"""The prediction API. Imports neither Dagster nor the asset modules: it reads the production pointer,
the model files and the online feature snapshot exported for it, so it starts fast and shares no state
with pipeline runs."""
