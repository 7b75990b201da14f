"""Generic helpers: crash-safe file writes (:mod:`.fileio`) and the files
installed with the package (:mod:`.package_files`)."""
