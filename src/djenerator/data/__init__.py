"""Datasets: prepare a folder of audio into clips, and read them back memory-mapped."""
