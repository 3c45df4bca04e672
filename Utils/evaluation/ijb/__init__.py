"""IJB-B / IJB-C evaluation: image features -> template pooling -> 1:1 verification and 1:N search.

    features.py   image + flip embeddings of the aligned loose crops, cached on disk; the per-image feature rule
    templates.py  the named pooling variants (insightface eval_ijbc's media-then-template pooling first)
    verify11.py   template-pair cosine in bounded chunks; TAR at FAR 1e-6 .. 1e-1 and the ROC
    search1n.py   open-set search of each gallery (the benchmark's definition) and insightface's closed-set variant
    reports.py    the printed tables, JSON, CSV and PNG files;  cli.py  IJB_Evaluation.py's command line
"""
