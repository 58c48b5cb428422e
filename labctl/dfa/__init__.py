"""Direct feedback alignment: networks, datasets, digital and photonic feedback, the tile schedule and the
photonic engine that computes ``B_l e`` on the weight banks."""
