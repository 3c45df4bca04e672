"""Datasets: training sets (synthetic, image folder + list, insightface RecordIO) and verification sets."""
