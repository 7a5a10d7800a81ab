"""Slim PyTorch trainer for multi-scene CTR: `python -m trainer fit|evaluate|predict`."""
