"""`gitml init`: the templates of a project's framework files and the code that writes them."""
