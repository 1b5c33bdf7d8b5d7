"""Data: the OXnet-COCO format, image reading, registration, mappers and loaders."""
