"""Containers: the Compose/Swarm file writer (`khop compose`), the image and its entrypoint."""
