"""Configuration: compose conf/ into params.yaml and read it back as typed params."""
