"""The bench on a machine with more cores: pack a bundle here, unpack and run it there."""
