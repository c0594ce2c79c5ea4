"""The one Python package of the platform: settings, the shared kernel and the four service apps."""
