"""Every path and file format mfspark touches: rating inputs, factor Parquet, model metadata."""
