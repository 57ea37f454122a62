"""The train/serve contract: what training/ writes and app/ reads, written down once.

Class names, the SavedModel signature and its input, ``metadata.json`` (a pydantic model: export
writes it, the service validates it), the version layout and the default season map. Nothing
here imports TensorFlow, ``app`` or ``training``; both sides import this package.
"""
