"""xraymodel: the ResNet-50 chest X-ray classifier tool chain (TensorFlow imported lazily)."""
