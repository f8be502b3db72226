"""Generators that are not flows: the Deep Fourier Machines generator (`dfm.py`)."""
