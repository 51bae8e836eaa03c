"""Serving and batch scoring: the HTTP app (`app`), batch files (`batch`), input checks (`inputs`).

Start here: `bundle.load_served_model` loads and verifies a model directory,
`batch.score_file` scores a CSV or Parquet file, `app.create_app` builds the FastAPI app.
"""
