"""The distributed ALS on Spark: the ratings packed by block (``blocks``), one half-step
(``halfstep``), the training loop (``loop``), resuming a stored run (``resume``) and the
test error of a fit (``score``)."""
