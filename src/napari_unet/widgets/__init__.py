"""napari widgets: thin Qt front-ends that run core functions in workers and show layers."""
