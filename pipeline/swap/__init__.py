"""Face swap: the shared-encoder autoencoder, its training data and losses, conversion of aligned faces."""
