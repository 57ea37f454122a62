"""The inference core: model loading and precision, the dynamic batcher, dataset-faithful preprocessing."""
