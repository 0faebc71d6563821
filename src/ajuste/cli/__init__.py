"""The command line: a thin layer that turns flags into settings and calls the library."""
