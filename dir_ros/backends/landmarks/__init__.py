"""The landmark backend: front-end landmarks fitted with the hand model, placed in metres, held size, two hands coupled."""
