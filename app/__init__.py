"""garment-sorter inference service: FastAPI app around the exported Fashion-MNIST SavedModel."""
