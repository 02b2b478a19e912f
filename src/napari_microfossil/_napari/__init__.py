"""The napari layer: thin wrappers that call the engine. napari imports these lazily."""
