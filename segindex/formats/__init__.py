"""File formats read and written by segindex.

coco         COCO masks: instance JSON (RLE or polygons) and panoptic PNG + JSON, read into a
             ``MaskSet`` (ground truth, predictions, the given-masks segmenters' source)
frame_ref    ``"<video path>#frame=<index>"``: one video frame named like a file
youtube_vis  YouTube-VIS video instance segmentation: videos, categories and tracks with one
             COCO RLE (or ``None``) per annotated frame; datasets and result lists
"""
