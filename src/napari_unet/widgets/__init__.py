"""napari widgets: thin Qt front-ends that gather inputs, run core functions in workers, show layers."""
