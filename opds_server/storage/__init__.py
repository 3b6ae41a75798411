"""Book files, covers, thumbnails and comic pages: where bytes come from."""
