"""Model training (TensorFlow imported lazily, only in the train extra)."""
