"""The API's routes, one module per resource; ``httpapi.app`` mounts them."""
