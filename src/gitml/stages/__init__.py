"""One thin module per dvc.yaml stage, named like the stage: parse paths, call the library."""
