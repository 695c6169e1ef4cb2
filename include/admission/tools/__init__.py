"""Tools around the product: the demo region and its websites, the scaled region generator, the benchmark."""
