"""Reading Calibre libraries: metadata.db, book files and covers, plus the demo library writer."""
