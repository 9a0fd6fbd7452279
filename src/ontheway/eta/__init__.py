"""Delivery-time prediction: the estimate in legs, its route-based baseline, a learned
correction (LightGBM quantile models per region) with a 10-90 % window, and the estimate made
again at assignment, at pickup and after each re-route.

``features`` (pure): the stages, the baseline's legs and the features a model reads.
``model`` (pure): training, prediction and the model file. ``registry``: model files on
disk, versioned. ``facts``: what the database knows at prediction time. ``estimator``: one
estimate, baseline + model. ``consumer``: the ETA worker's re-estimation. ``learn``: the
``ontheway eta train | evaluate`` commands.
"""
