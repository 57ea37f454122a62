"""Fashion-MNIST training: data, the study's architectures, training, reports, export."""
