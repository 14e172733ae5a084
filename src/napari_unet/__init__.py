"""napari-unet: interactive U-Net segmentation for microscopy images in napari."""

__version__ = "0.1.0"
