"""File formats read and written by segindex beyond COCO images.

youtube_vis  YouTube-VIS video instance segmentation: videos, categories and tracks with one
             COCO RLE (or ``None``) per annotated frame; datasets and result lists
"""
