"""StyleGAN2: generator, discriminator, training, checkpoint import, perceptual loss, projection, paths."""
