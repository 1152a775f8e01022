"""Sans-I/O core of the exchange standard: framing, canonical messages, XML codec, signature profile."""
