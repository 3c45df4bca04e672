"""The evaluation suite: embeddings, the benchmark protocols, their reports and the command lines of the
*_Evaluation.py scripts.

    features.py            image + flip embeddings (no_grad, eval mode, autocast)
    verification.py        10-fold protocols, TAR@FAR, AUC, EER (pure numpy); verify.py runs a model through them
    identification.py      closed-set rank-1 / CMC (pure numpy)
    megaface_search.py     the bounded-memory probe x distractor search; megaface_metrics.py its CMC and TAR@FAR
    search_precision.py    the low-precision filter's choice and rounding model
    ijb/                   IJB-B / IJB-C: template pooling, 1:1 in chunks, open- and closed-set 1:N, its command line
    matio.py, feature_cache.py, reports.py, plots.py
    cli.py                 what every command line shares (flags, model loading, the one error path)
    *_cli.py               one per script
"""
