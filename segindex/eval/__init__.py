"""Where quality is measured: ground truth in, metrics and reports out.

    coco          read COCO instance / panoptic masks (ground truth or predictions), match files
    segmentation  mask IoU, semantic IoU/Dice/accuracy, boundary F and Boundary IoU, PQ/SQ/RQ
    retrieval     recall@k, AP, nDCG; text->region, image->region, whole-image vs region, ANN
                  (image_retrieval: image queries by class and by source instance, chance mAP)
    report        JSON + Markdown report with PNG plots (matplotlib, Agg)
    makeset       seeded copy-paste composites written as COCO panoptic + instance ground truth
                  (cutouts: source instances, distractors, backgrounds; augment: per paste)
    makeset_video seeded clips of moving cut-outs (FFV1) with YouTube-VIS ground truth
    makeset_scenes seeded colour-shape composites with per-paste masks and scene queries whose
                  relevant images come from brute-force relations (makeset_scenes_video: clips
                  of coloured tracks with known spans, queries over time)
    scenes        compositional search (Index.search_scenes) vs whole-image and single-region
                  baselines: mAP, precision@k, recall@k per query type
    tracking      video tracking: DAVIS J/F/J&F per object, HOTA, IDF1, ID switches; trackers
                  compared on ground-truth masks (tracking_metrics: the MOT metrics;
                  tracking_report: JSON + Markdown)

Heavy imports (matplotlib, torch) happen inside the functions that need them.
"""
